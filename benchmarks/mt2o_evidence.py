"""MT2O's evidence: its transfer rules against independent scalarizations, PMTL, EPO and single-model methods,
HV against epochs over several seeds, on the conflicting Multi-* datasets and a multi-target regression.

    .venv/bin/python benchmarks/mt2o_evidence.py                              # the default grid (see --help)
    .venv/bin/python benchmarks/mt2o_evidence.py --datasets multi_fashion_mnist --sizes full \\
        --variants independent,periodic-0.3,mtgd-a30 --epochs 6                 # full training size
    .venv/bin/python benchmarks/mt2o_evidence.py --quick                      # a minute: the machinery only

Every run: K = 5 members (preferences: the quarter circle) or one model, Adam 3e-3, the same data, initialization
and batch order per seed; HV of the validation objectives at the problem's reference point, evaluated at every
epoch (epoch 0 = the shared initialization). Per dataset and size, the target is 98 % of the best final mean HV
of any variant; per variant and seed: the epochs to reach it (interpolated between the bracketing evaluations;
"never" within the budget) and the normalized area under the HV curve (mean over epochs 1..E of HV ÷ the best
final mean HV). A difference between two variants "exceeds the seed spread" when their means differ by more than
the sum of their standard deviations over seeds.

Runs are cached by (dataset, size, variant, seed, epochs) in <out>/runs.jsonl: a rerun with more variants or seeds
computes only what is missing. Writes <out>/summary-<sizes>-<epochs>ep.md (the tables),
<out>/<dataset>_<size>_hv.png (mean ± std curves) and logs them to MLflow (experiment `mt2o-evidence`;
--tracking-uri, default a sqlite file in <out>).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trials.spec import OptimizerSpec, PopulationSpec, TransferSpec, TrialSpec  # noqa: E402

ADAM = OptimizerSpec(name="adam", lr=3e-3)  # the common optimizer of benchmarks/methods.py (measured there)
K = 5
TARGET = 0.98
FULL = "full"
# problem name -> (problem, args at a size); "full" is everything the offline data holds for training.
DATASETS: dict[str, str] = {
    "multi_mnist": "multi_mnist",
    "multi_fashion": "multi_fashion",
    "multi_fashion_mnist": "multi_fashion_mnist",
    # MMoE-style two-task regression with conflicting targets (task correlation −0.5): docs/problems.md,
    # "Synthetic regression with a controllable task correlation"
    "regression": "examples.plugin_problem:make",
}
# "full": the usual training size of the Multi-* benchmarks (60k composites, Sener & Koltun 2018; offline the
# MNIST side draws them from ~8k base digits) and 20k samples of the regression.
FULL_N_TRAIN = {"multi_mnist": 60_000, "multi_fashion": 60_000, "multi_fashion_mnist": 60_000, "regression": 20_000}


@dataclass(frozen=True)
class Variant:
    name: str
    solver: str = "linear"
    size: int = K
    transfer: TransferSpec = field(default_factory=lambda: TransferSpec(eps0=0.0))
    family: str = "mt2o"  # mt2o (a transfer rule), control (ε0 = 0), finite-set, single

    def spec(self, problem: str, args: dict[str, Any], epochs: int, seed: int) -> TrialSpec:
        return TrialSpec(
            problem=problem,
            problem_args=args,
            solver=self.solver,
            population=PopulationSpec(size=self.size, transfer=self.transfer),
            optimizer=ADAM,
            epochs=epochs,
            seed=seed,
        )


def variants() -> dict[str, Variant]:
    table = [
        Variant("independent", family="control"),
        Variant("periodic-0.3", transfer=TransferSpec(eps0=0.3)),  # the reconstruction's default
        Variant("periodic-0.1", transfer=TransferSpec(eps0=0.1)),
        Variant("periodic-0.3-beneficial", transfer=TransferSpec(eps0=0.3, mode="beneficial")),
        Variant("mtgd-a1", transfer=TransferSpec(rule="mtgd", alpha=1.0)),  # the code's α; w ≈ 1.5e-3 at Adam 3e-3
        Variant("mtgd-a10", transfer=TransferSpec(rule="mtgd", alpha=10.0)),
        Variant("mtgd-a30", transfer=TransferSpec(rule="mtgd", alpha=30.0)),
        Variant("mtgd-a30-all", transfer=TransferSpec(rule="mtgd", alpha=30.0, scope="all")),
        Variant("mtgd-a30-beneficial", transfer=TransferSpec(rule="mtgd", alpha=30.0, mode="beneficial")),
        Variant("pmtl", solver="pmtl", family="finite-set"),
        Variant("epo", solver="epo", family="finite-set"),
        Variant("linear-single", size=1, family="single"),
        Variant("pcgrad-single", solver="pcgrad", size=1, family="single"),
    ]
    return {v.name: v for v in table}


def problem_args(dataset: str, size: str) -> dict[str, Any]:
    n_train = FULL_N_TRAIN[dataset] if size == FULL else int(size)
    if dataset == "regression":
        return {"n_train": n_train, "correlation": -0.5}
    return {"n_train": n_train, "n_val": 1_000, "n_test": 1_000}


# -- one run (in a worker process) ----------------------------------------------------------------------------


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from pareto_search.front.pareto import Front, FrontPoint, Objective
    from trials.loop import Trainer
    from trials.problems import make_problem

    torch.set_num_threads(1)
    variant = variants()[job["variant"]]
    problem = make_problem(DATASETS[job["dataset"]], problem_args(job["dataset"], job["size"]))
    objectives = tuple(Objective(n, problem.metric(n).direction) for n in problem.default_objectives)
    ref = tuple(problem.default_reference_point)

    def hv(members: Sequence[dict[str, float]]) -> float:
        points = tuple(FrontPoint(str(i), tuple(m[o.name] for o in objectives)) for i, m in enumerate(members))
        return Front(objectives, points).hypervolume(ref).value

    spec = variant.spec(problem.name, problem_args(job["dataset"], job["size"]), job["epochs"], job["seed"])
    started = time.perf_counter()
    record = {**job, "hv": [], "seconds": [], "error": None}
    try:
        trainer = Trainer(spec, problem=problem, num_threads=1)
        record["hv"].append(hv(trainer.evaluate("val")))
        record["seconds"].append(0.0)
        while not trainer.done:
            report = trainer.train_epoch()
            record["hv"].append(hv([m.metrics for m in report.members]))
            record["seconds"].append(record["seconds"][-1] + report.train_seconds)
    except Exception as exc:  # a failing run is recorded, the others go on
        record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    record["wall_s"] = time.perf_counter() - started
    return record


# -- cache ----------------------------------------------------------------------------------------------------


def _key(job: dict[str, Any]) -> tuple:
    return (job["dataset"], str(job["size"]), job["variant"], int(job["seed"]), int(job["epochs"]))


def load_cache(path: Path) -> dict[tuple, dict[str, Any]]:
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {_key(r): r for r in records if r.get("error") is None}


# -- statistics -----------------------------------------------------------------------------------------------


def crossing(hv: Sequence[float], target: float) -> float:
    """Epochs to reach ``target``, interpolated between the bracketing evaluations; inf if never."""
    for e, value in enumerate(hv):
        if math.isfinite(value) and value >= target:
            if e > 0 and hv[e] > hv[e - 1]:
                return e - 1 + (target - hv[e - 1]) / (hv[e] - hv[e - 1])
            return float(e)
    return math.inf


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    if any(math.isinf(v) for v in values):
        return math.inf, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class Summary:
    variant: str
    family: str
    seeds: int
    final: tuple[float, float]
    to_target: tuple[float, float]
    auc: tuple[float, float]
    curve_mean: list[float]
    curve_std: list[float]
    never: int  # seeds that never reached the target


def summarize(runs: dict[str, list[dict[str, Any]]], table: dict[str, Variant]) -> tuple[float, list[Summary]]:
    """Per seed, the target is 98 % of the best final HV of any variant on that seed (a paired comparison: the
    seeds' data order and initialization move every variant's HV together); returns the mean target too."""
    seeds = sorted({r["seed"] for rs in runs.values() for r in rs})
    best = {s: max(r["hv"][-1] for rs in runs.values() for r in rs if r["seed"] == s) for s in seeds}
    out = []
    for name, rs in runs.items():
        if not rs:
            continue
        epochs = min(len(r["hv"]) for r in rs)
        curves = {r["seed"]: r["hv"][:epochs] for r in rs}
        crossings = [crossing(c, TARGET * best[s]) for s, c in curves.items()]
        reached = [c for c in crossings if math.isfinite(c)]
        aucs = [statistics.fmean(c[1:]) / best[s] for s, c in curves.items()]
        values = list(curves.values())
        out.append(
            Summary(
                name,
                table[name].family,
                len(rs),
                mean_std([c[-1] for c in values]),
                mean_std(crossings),
                mean_std(aucs),
                [statistics.fmean(c[e] for c in values) for e in range(epochs)],
                [statistics.stdev(c[e] for c in values) if len(values) > 1 else 0.0 for e in range(epochs)],
                len(crossings) - len(reached),
            )
        )
    return TARGET * statistics.fmean(best.values()), out


def beyond_spread(a: tuple[float, float], b: tuple[float, float]) -> bool:
    if not (math.isfinite(a[0]) and math.isfinite(b[0])):
        return math.isfinite(a[0]) != math.isfinite(b[0])  # one reached the target, the other never did
    return abs(a[0] - b[0]) > (a[1] or 0.0) + (b[1] or 0.0)


def _pm(value: tuple[float, float], spec: str = ".3f") -> str:
    if math.isinf(value[0]):
        return "never"
    return f"{value[0]:{spec}} ± {value[1]:{spec}}"


def table_lines(dataset: str, size: str, epochs: int, target: float, rows: list[Summary]) -> list[str]:
    lines = [
        f"### {dataset}, n_train {problem_args(dataset, size)['n_train']}, {epochs} epochs",
        "",
        f"target: per seed, {TARGET:g} × the best final HV of any variant on that seed (mean {target:.4f})",
        "",
        "| variant | seeds | final HV | epochs to target | normalized AUC |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.to_target[0], -r.auc[0])):
        never = f" ({r.never} never)" if r.never else ""
        lines.append(
            f"| {r.variant} | {r.seeds} | {_pm(r.final, '.4f')} | {_pm(r.to_target, '.2f')}{never} | {_pm(r.auc)} |"
        )
    lines.append("")
    lines += verdict_lines(rows)
    lines.append("")
    return lines


def verdict_lines(rows: list[Summary]) -> list[str]:
    """Each MT2O rule against the control (ε0 = 0) and the best non-MT2O method, in epochs to target."""
    by_name = {r.variant: r for r in rows}
    others = [r for r in rows if r.family != "mt2o"]
    if not others:
        return []
    next_best = min(others, key=lambda r: (r.to_target[0], -r.auc[0]))
    lines = [f"next-best non-MT2O: {next_best.variant} ({_pm(next_best.to_target, '.2f')} epochs)"]
    control = by_name.get("independent")
    for r in sorted((r for r in rows if r.family == "mt2o"), key=lambda r: (r.to_target[0], -r.auc[0])):
        parts = []
        comparisons = [next_best] + ([control] if control is not None and control is not next_best else [])
        for other in comparisons:
            noise = "beyond" if beyond_spread(r.to_target, other.to_target) else "within"
            if math.isfinite(r.to_target[0]) and math.isfinite(other.to_target[0]):
                parts.append(f"÷ {other.variant} = {r.to_target[0] / other.to_target[0]:.2f} ({noise} seed spread)")
            else:
                mine, theirs = (_pm(v.to_target, ".2f") for v in (r, other))
                parts.append(f"{mine} vs {other.variant} {theirs} ({noise} seed spread)")
        lines.append(f"- {r.variant}: epochs to target {'; '.join(parts)}")
    return lines


# -- plots and MLflow -----------------------------------------------------------------------------------------


def plot(dataset: str, size: str, rows: list[Summary], target: float, out: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5.5))
    ax = fig.add_subplot()
    colors = colormaps["tab20"]
    for i, r in enumerate(sorted(rows, key=lambda r: r.variant)):
        x = list(range(len(r.curve_mean)))
        style = "-" if r.family == "mt2o" else "--"
        ax.plot(x, r.curve_mean, style, color=colors(i % 20), label=f"{r.variant} ({r.seeds} seeds)", linewidth=1.4)
        low = [m - s for m, s in zip(r.curve_mean, r.curve_std, strict=True)]
        high = [m + s for m, s in zip(r.curve_mean, r.curve_std, strict=True)]
        ax.fill_between(x, low, high, color=colors(i % 20), alpha=0.12)
    ax.axhline(target, color="black", linewidth=0.8, linestyle=":", label=f"target {target:.4f}")
    finals = [r.curve_mean[-1] for r in rows]
    ax.set_ylim(min(finals) * 0.85, max(finals) * 1.02)  # where the target is crossed; earlier epochs lie below
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation hypervolume (mean ± std over seeds)")
    ax.set_title(f"{dataset}, n_train {problem_args(dataset, size)['n_train']}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(left=0.08, right=0.74)
    path = out / f"{dataset}_{size}_hv.png"
    fig.savefig(path, dpi=110)
    return path


def log_to_mlflow(uri: str, args: argparse.Namespace, files: list[Path]) -> None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("mt2o-evidence")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("mt2o-evidence")
    run = client.create_run(experiment_id, run_name="mt2o-evidence " + time.strftime("%Y-%m-%d %H:%M"))
    client.log_param(run.info.run_id, "command", " ".join(sys.argv))
    client.log_param(run.info.run_id, "seeds", args.seeds)
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)


# -- main -----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="multi_mnist,multi_fashion,multi_fashion_mnist,regression")
    parser.add_argument("--sizes", default="6000", help=f"comma-separated n_train values or '{FULL}'")
    parser.add_argument("--variants", default=",".join(variants()), help="comma-separated; --list shows them")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)), help="one torch thread each")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mt2o")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: sqlite in --out)")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny data, 2 epochs, 2 seeds, 3 variants")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.sizes, args.seeds, args.epochs = "regression", "2000", "0,1", 2
        args.variants = "independent,periodic-0.3,mtgd-a30"
        args.out = args.out / "quick"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    table = variants()
    if args.list:
        for v in table.values():
            print(f"{v.name:<26} {v.family:<11} solver {v.solver}, K={v.size}, transfer {v.transfer}")
        return 0
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in table]
    if unknown:
        print(f"--variants: unknown {unknown}; allowed: {', '.join(table)}", file=sys.stderr)
        return 2
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in datasets if d not in DATASETS]
    if bad:
        print(f"--datasets: unknown {bad}; allowed: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "runs.jsonl"
    cache = load_cache(cache_path)
    jobs = [
        {"dataset": d, "size": s, "variant": v, "seed": seed, "epochs": args.epochs}
        for d in datasets
        for s in sizes
        for seed in seeds
        for v in chosen
    ]
    todo = [j for j in jobs if _key(j) not in cache]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} cached, {len(todo)} to do on {args.workers} workers", flush=True)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool, cache_path.open("a") as sink:
        pending = {pool.submit(run_one, job): job for job in todo}
        for done in futures.as_completed(pending):
            record = done.result()
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            if record["error"] is None:
                cache[_key(record)] = record
            status = record["error"] or f"final HV {record['hv'][-1]:.4f}"
            print(
                f"[{time.perf_counter() - started:7.0f} s] {record['dataset']} {record['size']} {record['variant']} "
                f"seed {record['seed']}: {status} ({record['wall_s']:.0f} s)",
                flush=True,
            )
    lines = [f"# MT2O evidence ({time.strftime('%Y-%m-%d')})", "", f"command: `{' '.join(sys.argv)}`", ""]
    files = []
    for dataset in datasets:
        for size in sizes:
            runs = {
                v: [cache[key] for seed in seeds if (key := (dataset, size, v, seed, args.epochs)) in cache]
                for v in chosen
            }
            if not any(runs.values()):
                continue
            target, rows = summarize(runs, table)
            lines += table_lines(dataset, size, args.epochs, target, rows)
            files.append(plot(dataset, size, rows, target, args.out))
    summary = args.out / f"summary-{'-'.join(sizes)}-{args.epochs}ep.md"  # one per grid: reruns of others keep theirs
    summary.write_text("\n".join(lines))
    files.append(summary)
    print("\n".join(lines))
    if not args.no_mlflow:
        log_to_mlflow(args.tracking_uri or f"sqlite:///{args.out / 'mlflow.db'}", args, files)
    print(f"written: {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
