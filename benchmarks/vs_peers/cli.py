"""The command line: its arguments (with the protocols' defaults and refusals) and the run itself: plan the jobs,
run what the cache lacks (the pool beside or before Ray), then write the tables, plots and summary."""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import peer_stats

from . import REPO
from . import __doc__ as PACKAGE_DOC
from .budget import replay_hv
from .libmoon import libmoon_psl_worker, libmoon_worker, setup_libmoon_venv
from .methods import DEFAULT_METHODS, IN_SAMPLE_PROBLEMS, METHODS, PROBLEMS, PROTOCOLS
from .ray_runners import default_entry, quiet_tune, run_service, run_tune_asha, start_ray
from .report import headline, log_to_mlflow, plot, ratio_line, reviewer_lines, summarize, table_lines
from .runners import run_pool_job
from .runs import POOL_RUNNERS, _key, _objective_names, load_cache, plan_jobs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(PACKAGE_DOC or "").split("\n\n")[0])
    parser.add_argument(
        "--problems", default=None, help=f"comma-separated: {', '.join(PROBLEMS)} (default multi_mnist)"
    )
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated; --list shows them")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2)")
    parser.add_argument("--budget", type=int, default=None, help="model-epochs per method (default 10 x --epochs)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per model")
    parser.add_argument("--n-train", type=int, default=6000, help="training size of the Multi-* and related3")
    parser.add_argument("--lr-range", default=None, help="lo,hi (default: per problem, see PROBLEMS)")
    parser.add_argument(
        "--slots",
        type=int,
        default=1,  # every method on one slot, as on one GPU: equal resources (Optuna's loop runs one model at a time)
        help="Ray CPUs, 1 per trial: how many of the Ray-based methods' trials run side by side",
    )
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 2), help="pool for the peers")
    parser.add_argument(
        "--libmoon-python",
        default=os.environ.get("LIBMOON_PYTHON", ""),
        help="the LibMOON venv's interpreter (default $LIBMOON_PYTHON; see setup_libmoon_venv in libmoon.py): without "
        "it our EPO/PMTL stand in for LibMOON's and libmoon-psl is refused",
    )
    parser.add_argument(
        "--headline",
        default="mt2o-k3-fill-fifo",
        help="which of ours the last line reports (default: `method: mt2o` as the preset ships, lr given as a probe)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vs_peers")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: sqlite in --out)")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--no-cache", action="store_true", help="compute everything again (the cache is rewritten)")
    parser.add_argument(
        "--quick", action="store_true", help="zdt1, 3 seeds (or --seeds), all methods: the ratio line in < 3 min"
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="run the pool's peers beside the Ray-based methods (faster; wall times then share the cores)",
    )
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default=None,
        help="heldout: the problems, seeds 10-14, methods and lr range no default was chosen on, the default's "
        "digest frozen (results in <out>/heldout); in-sample: where the defaults were chosen",
    )
    args = parser.parse_args(argv)
    args.strict_digest = False
    if args.protocol is not None:
        protocol = PROTOCOLS[args.protocol]
        args.problems = args.problems or ",".join(protocol.problems)
        args.seeds = args.seeds or ",".join(str(s) for s in protocol.seeds)
        if protocol.methods and args.methods == ",".join(DEFAULT_METHODS):
            args.methods = ",".join(protocol.methods)
        if protocol.lr is not None and args.lr_range is None:
            args.lr_range = ",".join(str(v) for v in protocol.lr)
        if args.protocol == "heldout":
            args.out, args.strict_digest = args.out / "heldout", True
            args.headline = "mt2o-default" if args.headline == parser.get_default("headline") else args.headline
            in_sample_seeds = [s for s in args.seeds.split(",") if s.strip() and int(s) < min(protocol.seeds)]
            in_sample = [p for p in args.problems.split(",") if p.strip() in IN_SAMPLE_PROBLEMS]
            if in_sample_seeds or in_sample:
                parser.error(
                    f"--protocol heldout: {', '.join(in_sample + [f'seed {s}' for s in in_sample_seeds])} "
                    f"chose defaults (in sample); allowed: seeds >= {min(protocol.seeds)} and problems outside "
                    f"{', '.join(IN_SAMPLE_PROBLEMS)}"
                )
    given_seeds = args.seeds
    args.problems, args.seeds = args.problems or "multi_mnist", args.seeds or "0,1,2"
    if args.quick:  # --seeds still narrows it (the test suite runs one seed: the ratio line, not its statistics)
        args.problems, args.seeds, args.no_cache, args.overlap = "zdt1", given_seeds or "0,1,2", True, True
        # Each Ray-based run costs ~8 s of search set-up here whatever it trains: the quick check keeps the headline
        # (the preset as it ships, lr probed), the preset before its levers (mt2o-fifo: corners, lr drawn) and the
        # peers; LibMOON's PMTL (the weaker of its two on zdt1) stays out.
        args.methods = "optuna-tpe,optuna-nsga2,tune-asha,libmoon-epo,mt2o-fifo,mt2o-k3-fill-fifo"
        args.out = args.out / "quick"
    if args.budget is None:
        args.budget = 10 * args.epochs  # the example: 10 models of 5 epochs
    return args


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--libmoon-job":  # inside the LibMOON venv
        job = json.loads(sys.argv[2])
        worker = libmoon_psl_worker if job.get("solver") == "psl" else libmoon_worker
        print(json.dumps(worker(job)), flush=True)
        return 0
    args = parse_args(argv)
    if args.list:
        for m in METHODS.values():
            print(f"{m.name:<25} {m.family:<5} {m.what}")
        return 0
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = [p for p in problems if p not in PROBLEMS] + [
        m for m in args.methods.split(",") if m.strip() and m.strip() not in METHODS
    ]
    if unknown:
        print(f"unknown problem or method {unknown}; --list shows the methods; problems: {', '.join(PROBLEMS)}")
        return 2
    if args.headline not in METHODS or METHODS[args.headline].family != "ours":
        print(f"--headline must be one of ours: {', '.join(m for m in METHODS if METHODS[m].family == 'ours')}")
        return 2
    started = time.perf_counter()
    args.digest = peer_stats.defaults_digest(default_entry([0.0, 0.0]))  # the shape of the entry, not its range
    args.budget_digest = peer_stats.defaults_digest(default_entry([0.0, 0.0]), budget=True)
    args.commit = peer_stats.commit_of(REPO)
    print(f"default's digest {args.digest} (with a budget: {args.budget_digest}) at commit {args.commit}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "runs.jsonl"
    if args.no_cache and cache_path.exists():
        cache_path.unlink()
    cache = load_cache(cache_path)
    tracking_uri = args.tracking_uri or f"sqlite:///{args.out.resolve() / 'mlflow.db'}"
    libmoon_missing = setup_libmoon_venv(args.libmoon_python)
    print(f"LibMOON: {libmoon_missing or 'available at ' + args.libmoon_python}", flush=True)

    from trials.problems import make_problem

    built = {p: make_problem(p, PROBLEMS[p].args(args.n_train)) for p in problems}
    refused: list[str] = []
    all_jobs = {p: plan_jobs(args, p, built[p].num_tasks, libmoon_missing, refused) for p in problems}
    for line in refused:
        print(line, flush=True)
    todo = sum(_key(j) not in cache for jobs in all_jobs.values() for j in jobs)
    total = sum(len(j) for j in all_jobs.values())
    print(f"{total} runs, {total - todo} cached, {todo} to do", flush=True)

    ray_started = False
    with tempfile.TemporaryDirectory(prefix="vs-peers-") as folder, cache_path.open("a") as sink:
        storage = Path(folder)

        def keep(record: dict[str, Any], problem: Any) -> None:
            names = _objective_names(problem)
            if record["error"] is None:
                record["cum"] = [e["cum"] for e in record["events"]]
                directions = [problem.metric(n).direction for n in names]
                record["hv"] = replay_hv(record["events"], directions, problem.default_reference_point)
                cache[_key(record)] = record
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            status = record["error"] or f"HV {record['hv'][-1] if record['hv'] else 0:.4f} at {record['cum'][-1]} m-e"
            check = f", service HV {record['service_hv']:.4f}" if "service_hv" in record else ""
            print(
                f"[{time.perf_counter() - started:6.0f} s] {record['problem']} {record['method']} seed "
                f"{record['seed']}: {status}{check} ({record['wall_s']:.0f} s)",
                flush=True,
            )

        for problem_name in problems:
            problem = built[problem_name]
            jobs = [j for j in all_jobs[problem_name] if _key(j) not in cache]
            pool_jobs = [j for j in jobs if j["runner"] in POOL_RUNNERS]
            if not ray_started and any(j["runner"] in ("service", "tune-asha") for j in jobs):
                start_ray(args.slots)  # first: its start-up (~10-20 s) overlaps the pool's
                ray_started = True
            pool = futures.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
            pending = [pool.submit(run_pool_job, job) for job in pool_jobs]
            if not args.overlap:  # the peers first, alone on the cores; then the Ray-based methods
                for done in futures.as_completed(pending):
                    keep(done.result(), problem)
                pending = []
            for job in (j for j in jobs if j["runner"] in ("service", "tune-asha")):
                for done in [f for f in pending if f.done()]:  # --overlap: keep finished peers now, not at the end
                    keep(done.result(), problem)
                    pending.remove(done)
                begin = time.perf_counter()
                try:
                    with quiet_tune():
                        if job["runner"] == "service":
                            record = run_service(job, storage, tracking_uri, args.out / "searches.log")
                        else:
                            record = run_tune_asha(job, storage, problem)
                except Exception as exc:
                    record = {**job, "events": [], "slots": args.slots, "error": f"{type(exc).__name__}: {exc}"[:400]}
                record["wall_s"] = time.perf_counter() - begin
                keep(record, problem)
            for done in futures.as_completed(pending):  # --overlap: the peers ran beside the Ray-based methods
                keep(done.result(), problem)
            pool.shutdown()
        if ray_started:
            import ray

            ray.shutdown()

    lines = [f"## pareto_search vs peers ({time.strftime('%Y-%m-%d')})", "", f"command: `{' '.join(sys.argv)}`", ""]
    if libmoon_missing:
        lines += [f"LibMOON did not run: {libmoon_missing}; our EPO/PMTL stood in.", ""]
    lines += [f"{line}." for line in refused] + ([""] if refused else [])
    files: list[Path] = []
    metrics: dict[str, float] = {}
    last: tuple[float, str, str] | None = None
    for problem_name in problems:
        problem = built[problem_name]
        records: dict[str, list[dict[str, Any]]] = {}
        directions = [problem.metric(n).direction for n in _objective_names(problem)]
        for job in all_jobs[problem_name]:
            if _key(job) in cache:
                record = cache[_key(job)]
                # Replayed from the events every time: the curve follows the current front semantics (every model's
                # non-dominated epochs), whatever the record was written with.
                record["hv"] = replay_hv(record["events"], directions, problem.default_reference_point)
                records.setdefault(job["method"], []).append(record)
        if not records:
            continue
        ours = [METHODS[r["method"]] for rs in records.values() for r in rs if METHODS[r["method"]].family == "ours"]
        refusal = peer_stats.check_digests(
            [r for rs in records.values() for r in rs if r["method"] in {m.name for m in ours if not m.budget}],
            args.digest,
            args.strict_digest,
        ) or peer_stats.check_digests(
            [r for rs in records.values() for r in rs if r["method"] in {m.name for m in ours if m.budget}],
            args.budget_digest,
            args.strict_digest,
        )
        if refusal:
            print(f"vs_peers: {problem_name}: {refusal}", file=sys.stderr)
            return 2
        rows = summarize(records, args.budget)
        problem_args = PROBLEMS[problem_name].args(args.n_train)
        lines += table_lines(problem_name, problem_args, args.budget, args.epochs, args.slots, rows)
        lines += reviewer_lines(problem, records, rows, args.headline, args.budget)
        files.append(plot(problem_name, problem_args, args.budget, args.slots, rows, args.out))
        head = headline(rows)
        if head is not None:
            for name, (_, ratio) in head.ratios.items():
                metrics[f"{problem_name}.{name}.budget_ratio"] = ratio
            if args.headline in head.ratios:
                last = (head.ratios[args.headline][1], head.peer, problem_name)
    # Named by its problems too: one budget serves several problems, and each run must not overwrite another's.
    summary = args.out / f"summary-{'+'.join(problems)}-b{args.budget}-e{args.epochs}-s{args.slots}.md"
    summary.write_text("\n".join(lines))
    files.append(summary)
    print("\n".join(lines))
    if not args.no_mlflow:
        log_to_mlflow(tracking_uri, " ".join(sys.argv), metrics, files)
    print(f"written: {', '.join(str(f) for f in files)}; {time.perf_counter() - started:.0f} s")
    if last is not None:
        print(ratio_line(*last), flush=True)
    return 0
