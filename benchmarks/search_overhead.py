"""Search benchmark: orchestration overhead and multi-objective early stopping, side by side.

    .venv/bin/python benchmarks/search_overhead.py [--trials 16] [--epochs 9] [--steps 100]

Runs the same 16-trial toy2d search twice on one embedded Ray, with the same seeds and
sampled hyperparameters: once with FIFO (every trial runs all epochs) and once with the Pareto
ASHA scheduler. Reports, for each,

- orchestration overhead = search wall time ÷ (Σ trial compute ÷ parallel slots): 1.0 would
  mean Ray, MLflow and the front bookkeeping cost nothing;
- total trial compute (seconds and epochs) and the final global HV;

and the early-stopping ratios (compute saved, HV kept), then where the time outside training goes (measured
in this process, which is the driver):

- trial start: from the driver starting a trial to its first result, less that result's own iteration time
  (worker process, imports, Tune's session) — and that first iteration beyond the epoch's training
  (config parse, problem build, data);
- per epoch in the worker: iteration time beyond the epoch's training (metrics, checkpoint write + checksum,
  Tune's copy into storage);
- in the driver: the search callback (MLflow writes, front file, HV) and Tune's experiment-state snapshots.

With --fixed: the fixed cost of one whole search instead (`pareto-search run` of 1 trial × 1 epoch by default, each
in a fresh process, --probe for a probed learning rate), split by phase — interpreter, imports, config, MLflow set-up,
ray.init, probe, Tune and the trial worker's start, the first trial beyond its training, later trials, Tune's end,
shutdown, exit — with medians over --repeats and the front (the same seeds give the same front):

    .venv/bin/python benchmarks/search_overhead.py --fixed --probe --repeats 3

Nothing is asserted: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Ray, MLflow and the search are imported where they are used: `--fixed` times their imports in a fresh process.

# What "before" and "after" mean in benchmarks/README.md: the settings of each row, all else equal.
SETTINGS: dict[str, dict] = {
    # A fresh worker per trial and a checkpoint per epoch (the MLflow writes stay on their thread: not a setting).
    "before": {"reuse_actors": False, "checkpoint_every": 1},
    "defaults": {},  # the shipped defaults
}


def _config(root: Path, name: str, scheduler: str, args: argparse.Namespace, settings: dict) -> dict:
    return {
        "name": name,
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": args.steps}},
        "reference_point": [1.0, 1.0],
        "epochs": args.epochs,
        "seed": 0,
        "solvers": [
            {
                "label": "mt2o",
                "solver": "tchebycheff",
                "solver_args": {"ideal": [0.0, 0.0]},
                "population": {"size": 5, "transfer": {"eps0": 0.3}},
                # Wide on purpose: slow learning rates give dominated trials for the scheduler to stop.
                "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-4, 5.0e-2]}, "schedule": "cosine"},
            }
        ],
        "search": {
            "algorithm": "random",
            "num_samples": args.trials,
            "max_failures": 0,
            "scheduler": {"name": scheduler, "grace_period": 1, "reduction_factor": 3},
            **settings,
        },
        "resources": {"cpus_per_trial": 1},
        "storage": str(root / "searches"),
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "experiment": "benchmark"},
    }


class Clock:
    """Driver-side timing of the callback hooks and Tune's state snapshots, and each trial's first result."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"callback": 0.0, "snapshot": 0.0}
        self.counts: dict[str, int] = {"callback": 0, "snapshot": 0}
        self.started: dict[str, float] = {}
        self.first_result: dict[str, tuple[float, dict]] = {}
        self.ended: dict[str, float] = {}
        self.begin = 0.0  # when run_search was called

    def timed(self, what: str, function):
        def wrapper(*a, **k):
            begin = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                self.seconds[what] += time.perf_counter() - begin
                self.counts[what] += 1

        return wrapper

    def install(self) -> list:
        from ray.tune.execution.tune_controller import TuneController

        from pareto_search.search.callback import SearchCallback

        undo = []
        for hook in ("on_trial_result", "on_trial_start", "on_trial_complete", "on_trial_error", "on_experiment_end"):
            original = getattr(SearchCallback, hook)
            setattr(SearchCallback, hook, self.timed("callback", original))
            undo.append((SearchCallback, hook, original))
        original_start, original_result = SearchCallback.on_trial_start, SearchCallback.on_trial_result

        def on_start(callback, iteration, trials, trial, **info):
            self.started.setdefault(trial.trial_id, time.perf_counter())
            return original_start(callback, iteration, trials, trial, **info)

        original_complete = SearchCallback.on_trial_complete

        def on_complete(callback, iteration, trials, trial, **info):
            self.ended[trial.trial_id] = time.perf_counter()
            return original_complete(callback, iteration, trials, trial, **info)

        SearchCallback.on_trial_complete = on_complete

        def on_result(callback, iteration, trials, trial, result, **info):
            self.first_result.setdefault(trial.trial_id, (time.perf_counter(), dict(result)))
            return original_result(callback, iteration, trials, trial, result, **info)

        SearchCallback.on_trial_start, SearchCallback.on_trial_result = on_start, on_result
        original_save = TuneController.save_to_dir
        TuneController.save_to_dir = self.timed("snapshot", original_save)
        undo.append((TuneController, "save_to_dir", original_save))
        return undo

    def breakdown(self, results: list[dict]) -> dict[str, float]:
        spawn = setup = 0.0
        for trial_id, (arrived, first) in self.first_result.items():
            if trial_id in self.started:
                spawn += arrived - self.started[trial_id] - first["time_this_iter_s"]
                setup += first["time_this_iter_s"] - first["epoch_seconds"]
        training = sum(r["epoch_seconds_total"] for r in results)
        worker_epoch = sum(r["time_total_s"] for r in results) - training - setup
        held = sum(self.ended[t] - self.started[t] for t in self.ended if t in self.started)
        waiting = held - sum(r["time_total_s"] for r in results) - spawn
        # The slots' idle time, split: before the first trial starts (plan, MLflow parent run, Tune's start-up),
        # after the last one ends (final front, plots, flushing MLflow), and in between (Tune starting the next
        # trial, and a slot left idle while the last trials finish).
        before_first = (min(self.started.values()) - self.begin) * self.slots if self.started else 0.0
        after_last = (self.begin + self.wall - max(self.ended.values())) * self.slots if self.ended else 0.0
        idle = self.wall * self.slots - held
        return {
            "training": training,
            "trial start": spawn,
            "trial setup": setup,
            "per-epoch in worker": worker_epoch,
            "trial waits on Tune": waiting,
            "slot idle: before first": before_first,
            "slot idle: after last": after_last,
            "slot idle: between": idle - before_first - after_last,
            "driver callback": self.seconds["callback"],
            "state snapshots": self.seconds["snapshot"],
            "snapshots": self.counts["snapshot"],
        }


def _run(root: Path, name: str, scheduler: str, args: argparse.Namespace, settings: dict) -> dict:
    from ray.tune import ExperimentAnalysis

    from pareto_search.config import parse_config
    from pareto_search.plan import make_plan
    from pareto_search.search.runner import run_search

    plan = make_plan(parse_config(_config(root, name, scheduler, args, settings)))
    clock = Clock()
    undo = clock.install()
    start = clock.begin = time.perf_counter()
    try:
        front = run_search(plan).front
    finally:
        wall = clock.wall = time.perf_counter() - start
        clock.slots = min(args.slots, args.trials)
        for owner, attribute, original in undo:
            setattr(owner, attribute, original)
    analysis = ExperimentAnalysis(str(plan.storage_dir))
    results = [dict(t.last_result) for t in analysis.trials]
    for trial, result in zip(analysis.trials, results, strict=True):  # the trial's pure training seconds, all epochs
        lines = (Path(trial.path) / "result.json").read_text().splitlines()
        result["epoch_seconds_total"] = sum(json.loads(line)["epoch_seconds"] for line in lines if line.strip())
    compute = sum(r.get("time_total_s", 0.0) for r in results)
    epochs = sum(r.get("training_iteration", 0) for r in results)
    slots = min(args.slots, args.trials)
    return {
        "wall": wall,
        "compute": compute,
        "epochs": epochs,
        "hv": front.hypervolume().value,
        "overhead": wall / (compute / slots),
        "points": len(front.front()),
        "slots": slots,
        "breakdown": clock.breakdown(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, help="default 16 (--fixed: 1)")
    parser.add_argument("--epochs", type=int, help="default 9 (--fixed: 1)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="parallel trials (1 CPU each)")
    parser.add_argument(
        "--settings",
        default="before,defaults",
        help=f"comma-separated rows, each a FIFO and a Pareto-ASHA search: {', '.join(SETTINGS)}, "
        "or reuse_actors=BOOL/checkpoint_every=N pairs joined by '+'",
    )
    parser.add_argument(
        "--fixed",
        action="store_true",
        help="instead: the fixed cost of a whole search, each in a fresh process, split by phase "
        "(--trials 1 --epochs 1 by default here; see fixed_cost())",
    )
    parser.add_argument("--probe", action="store_true", help="with --fixed: the learning rate probed (4 candidates)")
    parser.add_argument("--repeats", type=int, default=3, help="with --fixed: fresh searches; medians are printed")
    parser.add_argument(
        "--store",
        choices=("fresh", "shared"),
        default="fresh",
        help="with --fixed: each search its own new sqlite MLflow store (a first search), or one store "
        "that an untimed search created first (every later search of a user)",
    )
    parser.add_argument(
        "--code",
        type=Path,
        help="with --fixed: run the searches with the pareto_search/trials of this checkout (e.g. a "
        "`git worktree` of an older commit), to time before and after with one benchmark",
    )
    parser.add_argument("--fixed-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.trials_given, args.epochs_given = args.trials is not None, args.epochs is not None
    args.trials = 16 if args.trials is None else args.trials
    args.epochs = 9 if args.epochs is None else args.epochs
    if args.fixed_child:
        return _fixed_child(Path(args.fixed_child))
    if args.fixed:
        return fixed_cost(args)
    import ray

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.chdir(root)
        ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False)
        for label in args.settings.split(","):
            settings = SETTINGS[label] if label in SETTINGS else _parse_settings(label)
            for scheduler in ("fifo", "pareto_asha"):
                name = f"{label}-{scheduler}".replace("_", "-").replace("=", "-").replace("+", "-")
                rows[f"{label} {scheduler}"] = _run(root, name, scheduler, args, settings)
                print(f"ROW {label} {scheduler}: {rows[f'{label} {scheduler}']}", flush=True)
        ray.shutdown()
    print(
        f"\n{args.trials}-trial toy2d search (MT2O K=5, {args.epochs} epochs × {args.steps} steps), "
        f"{args.slots} parallel slots"
    )
    width = max(len(k) for k in rows) + 2
    print(
        f"{'settings, scheduler':<{width}}{'wall s':>9}{'compute s':>11}{'epochs':>8}{'overhead':>10}"
        f"{'global HV':>11}{'front':>7}"
    )
    for name, row in rows.items():
        print(
            f"{name:<{width}}{row['wall']:>9.1f}{row['compute']:>11.1f}{row['epochs']:>8d}{row['overhead']:>10.2f}"
            f"{row['hv']:>11.5f}{row['points']:>7d}"
        )
    print("\nwhere the time goes (seconds; trial start/setup/per-epoch summed over trials = slot-seconds)")
    names = list(next(iter(rows.values()))["breakdown"])
    cell = max(21, *(len(n) + 2 for n in names))  # every column keeps its name apart from the next
    print(f"{'settings, scheduler':<{width}}" + "".join(f"{n:>{cell}}" for n in names) + f"{'wall × slots':>14}")
    for name, row in rows.items():
        cells = "".join(f"{row['breakdown'][n]:>{cell}.1f}" for n in names)
        print(f"{name:<{width}}{cells}{row['wall'] * row['slots']:>14.1f}")
    for label in args.settings.split(","):
        fifo, asha = rows[f"{label} fifo"], rows[f"{label} pareto_asha"]
        print(
            f"{label}: early stopping compute ratio {asha['compute'] / fifo['compute']:.3f}, epochs ratio "
            f"{asha['epochs'] / fifo['epochs']:.3f}, HV ratio {asha['hv'] / fifo['hv']:.4f}"
        )
    first = args.settings.split(",")[0]
    for label in args.settings.split(",")[1:]:
        for scheduler in ("fifo", "pareto_asha"):
            a, b = rows[f"{first} {scheduler}"], rows[f"{label} {scheduler}"]
            print(
                f"{label} vs {first}, {scheduler}: wall ratio {b['wall'] / a['wall']:.3f}, "
                f"HV ratio {b['hv'] / a['hv']:.5f}"
            )


def _parse_settings(text: str) -> dict:
    settings: dict = {}
    for pair in text.split("+"):
        key, _, value = pair.partition("=")
        settings[key] = {"true": True, "false": False}.get(value.lower(), value)
        if key == "checkpoint_every":
            settings[key] = int(value)
    return settings


# --- The fixed cost of one search (--fixed) ---------------------------------------------------------------------
# A whole `pareto-search run` in a fresh process, as a user runs it: interpreter, imports, config, MLflow store,
# embedded Ray, the learning-rate probe, Tune, the trials, shutdown and exit. The child marks each phase's end on
# one clock; the parent times spawn to exit. Training (each epoch's `epoch_seconds`, and each probe candidate's
# epoch measured again in the parent) is taken out: what is left is what a search costs whatever it trains.
PHASES = (
    ("interpreter", "python start-up to the benchmark's first line"),
    ("imports", "pareto_search.cli, config, plan, search.runner (Ray, Tune, MLflow, torch)"),
    ("config + plan", "load_config (solver checks) and make_plan"),
    ("checks", "storage reachable, one trial fits this machine"),
    ("tracking set-up", "MLflow store (sqlite migrations on a fresh one), experiment, parent run"),
    ("plan save", "search.json"),
    ("ray.init", "the embedded local Ray"),
    ("probe", "learning-rate probe, wall (its training included)"),
    ("Tuner build", "tune.Tuner(...)"),
    ("Tune + worker start", "Tuner.fit to the first trial's start: Tune's start, the trial actor's process, imports"),
    ("first trial", "its start to its end, less its training: trial set-up, result, checkpoint"),
    ("later trials", "each later trial's start to end less training, and the gaps between trials"),
    ("Tune end", "last trial's end to Tuner.fit's return (experiment end: front files, plots, MLflow flush)"),
    ("after fit", "tags, end of the parent run"),
    ("shutdown", "release_ray (ray.shutdown)"),
    ("exit", "printing the front, interpreter exit (atexit handlers)"),
)


OVERLAPPED = ("checks", "tracking set-up", "plan save", "ray.init")


def _fixed_config(root: Path, args: argparse.Namespace, store: Path) -> dict:
    lr = {"probe": [1.0e-3, 1.0e-2]} if args.probe else 3.0e-3
    return {
        "name": root.name,
        "tracking": {"uri": f"sqlite:///{store}", "experiment": "fixed"},
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": args.steps}},
        "reference_point": [1.0, 1.0],
        "epochs": args.epochs,
        "seed": 0,
        "solvers": [
            {"label": "mt2o", "method": "mt2o", "population": {"size": 3}, "optimizer": {"name": "adam", "lr": lr}}
        ],
        "search": {
            "algorithm": "random",
            "num_samples": args.trials,
            "max_concurrent_trials": 1,
            "scheduler": {"name": "fifo"},
        },
        "resources": {"cpus_per_trial": 1},
        "storage": str(root / "searches"),
    }


def _fixed_child(spec_file: Path) -> None:
    """One search, as `pareto-search run CONFIG` runs it, with the end of each phase marked (perf_counter)."""
    marks: list[tuple[str, float]] = [("interpreter", time.perf_counter())]
    first_line = time.time()
    spec = json.loads(spec_file.read_text())

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter()))

    import pareto_search.cli as cli
    import pareto_search.config
    import pareto_search.plan  # noqa: F401
    from pareto_search.search import runner

    mark("imports")
    import ray.tune

    from pareto_search.search.callback import SearchCallback

    seen: dict[str, dict] = {}

    def wrap(owner, attribute, before=None, after=None):
        original = getattr(owner, attribute)

        def wrapper(*a, **k):
            if before:
                mark(before)
            try:
                return original(*a, **k)
            finally:
                if after:
                    mark(after)

        setattr(owner, attribute, wrapper)

    original_run_search = runner.run_search

    def run_search(*a, **k):
        mark("config + plan")
        outcome = original_run_search(*a, **k)
        mark("after fit")
        return outcome

    runner.run_search = run_search
    original_tracker = runner.SearchTracker

    def tracker(*a, **k):
        mark("checks")
        made = original_tracker(*a, **k)
        original_start = made.start_search

        def start_search(*sa, **sk):
            try:
                return original_start(*sa, **sk)
            finally:
                mark("tracking set-up")

        made.start_search = start_search
        return made

    runner.SearchTracker = tracker
    wrap(runner, "_init_ray", before="plan save", after="ray.init")
    wrap(runner, "run_probes", after="probe")
    original_tuner_init = ray.tune.Tuner.__init__

    def tuner_init(self, *a, **k):
        original_tuner_init(self, *a, **k)
        mark("Tuner build")

    ray.tune.Tuner.__init__ = tuner_init
    wrap(ray.tune.Tuner, "fit", after="fit")
    wrap(runner, "release_ray", after="shutdown")

    def on_start(callback, iteration, trials, trial, **info):
        seen.setdefault(trial.trial_id, {"start": time.perf_counter(), "training": 0.0})
        return original_start(callback, iteration, trials, trial, **info)

    def on_result(callback, iteration, trials, trial, result, **info):
        seen[trial.trial_id]["training"] += float(result.get("epoch_seconds", 0.0))
        return original_result(callback, iteration, trials, trial, result, **info)

    def on_complete(callback, iteration, trials, trial, **info):
        seen[trial.trial_id]["end"] = time.perf_counter()
        return original_complete(callback, iteration, trials, trial, **info)

    original_start, original_result = SearchCallback.on_trial_start, SearchCallback.on_trial_result
    original_complete = SearchCallback.on_trial_complete
    SearchCallback.on_trial_start, SearchCallback.on_trial_result = on_start, on_result
    SearchCallback.on_trial_complete = on_complete
    code = cli.main(["run", spec["config"]])
    mark("exit")
    data = {"code": code, "marks": marks, "trials": seen, "first_line": first_line, "last_line": time.time()}
    Path(spec["out"]).write_text(json.dumps(data))


def _fixed_split(data: dict, wall: float) -> dict[str, float]:
    """Seconds per phase (PHASES), and training, from one child's marks."""
    marks = dict(data["marks"])
    order = [name for name, _ in data["marks"]]
    times = [t for _, t in data["marks"]]
    split: dict[str, float] = {name: 0.0 for name, _ in PHASES}
    trials = sorted(data["trials"].values(), key=lambda t: t["start"])
    for previous, (name, at) in zip(times, data["marks"][1:], strict=False):
        if name != "fit":
            split[name] = split.get(name, 0.0) + at - previous
    # Tuner.fit, split by the trials' starts and ends
    fit_begin = marks["Tuner build"]
    fit_end = marks["fit"]
    training = sum(t["training"] for t in trials)
    if trials:
        split["Tune + worker start"] = trials[0]["start"] - fit_begin
        split["first trial"] = trials[0]["end"] - trials[0]["start"] - trials[0]["training"]
        split["later trials"] = trials[-1]["end"] - trials[0]["end"] - sum(t["training"] for t in trials[1:])
        split["Tune end"] = fit_end - trials[-1]["end"]
    split["after fit"] = marks["after fit"] - fit_end
    split["interpreter"] = data["interpreter_s"]
    split["exit"] = data["exit_s"] + marks["exit"] - marks["shutdown"]
    assert order[-1] == "exit"
    split["training"] = training
    return split


def _probe_training(root: Path, args: argparse.Namespace) -> float:
    """Σ of the probe candidates' one-epoch training, measured again here (warm, one thread each)."""
    from pareto_search.config import parse_config, probe_candidates
    from pareto_search.search.lr_probe import PROBE_EPOCHS, pending_probes, probe_spec
    from trials.loop import Trainer

    config = parse_config(_fixed_config(root, args, root / "probe-mlflow.db"))
    specs = [probe_spec(config, i, lr) for i, dist in pending_probes(config) for lr in probe_candidates(dist)]
    Trainer(specs[0], num_threads=1).train_epoch()  # warm-up: first-use imports
    total = 0.0
    for spec in specs:
        trainer = Trainer(spec, num_threads=1)
        for _ in range(PROBE_EPOCHS):
            report = trainer.train_epoch()
            total += report.train_seconds + report.eval_seconds
    return total


def fixed_cost(args: argparse.Namespace) -> None:
    args.trials = args.trials if args.trials_given else 1
    args.epochs = args.epochs if args.epochs_given else 1
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repo = (args.code or Path(__file__).resolve().parents[1]).resolve()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)}
        shared = root / "mlflow.db"
        if args.store == "shared":  # the store exists, as after a user's first search: created by a search not timed
            warm = root / "warm-up"
            warm.mkdir()
            (warm / "search.yaml").write_text(json.dumps(_fixed_config(warm, args, shared)))
            subprocess.run(
                [sys.executable, "-m", "pareto_search.cli", "run", str(warm / "search.yaml")],
                cwd=warm,
                env=env,
                capture_output=True,
                check=True,
            )
        for repeat in range(args.repeats):
            work = root / f"run{repeat}"
            work.mkdir()
            config = work / "search.yaml"
            store = shared if args.store == "shared" else work / "mlflow.db"
            config.write_text(json.dumps(_fixed_config(work, args, store)))  # JSON is YAML
            spec = work / "spec.json"
            spec.write_text(json.dumps({"config": str(config), "out": str(work / "marks.json")}))
            begin, spawned = time.perf_counter(), time.time()
            child = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--fixed-child", str(spec)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall, exited = time.perf_counter() - begin, time.time()
            if child.returncode != 0 or not (work / "marks.json").is_file():
                print(child.stdout[-3000:], child.stderr[-3000:], sep="\n")
                raise SystemExit(f"the search failed (exit {child.returncode})")
            data = json.loads((work / "marks.json").read_text())
            # the child's clock runs from its first line to cli.main's return; before and after, the parent's
            data["interpreter_s"], data["exit_s"] = data["first_line"] - spawned, exited - data["last_line"]
            split = _fixed_split(data, wall)
            lines = child.stdout.splitlines()  # the front's table is the last thing printed, after Tune's tables
            top = max(i for i, line in enumerate(lines) if line.startswith("trial ") and "member" in line)
            front = [line.split(None, 1)[1] for line in lines[top + 1 :] if line.strip()]  # without trial ids
            rows.append({"wall": wall, "split": split, "front": front})
            print(
                f"RUN {repeat}: wall {wall:.2f} s, " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()), flush=True
            )
        probe_training = _probe_training(root, args) if args.probe else 0.0
    print(
        f"\nfixed cost of a search: toy2d, {args.trials} trial(s) one at a time, {args.epochs} epoch(s) × "
        f"{args.steps} steps, MT2O K = 3{', lr probed (4 candidates)' if args.probe else ''}; "
        f"{len(rows)} fresh processes, {args.store} MLflow store, code {repo}, medians (s)"
    )
    for name, what in PHASES:
        values = [r["split"][name] for r in rows]
        print(f"  {name:<17}{statistics.median(values):>7.2f}   ({what})")
    # Their sum, comparable between code that opens the tracking store before Ray starts and code (`--code`) that
    # opens it beside Ray's start: there each mark ends its segment whichever finishes first.
    together = [sum(r["split"][n] for n in OVERLAPPED) for r in rows]
    print(
        f"  {' + '.join(OVERLAPPED)}: {statistics.median(together):.2f}   (the store's opening and Ray's start "
        "together)"
    )
    walls = [r["wall"] for r in rows]
    trained = [r["split"]["training"] + probe_training for r in rows]
    print(f"  {'wall':<17}{statistics.median(walls):>7.2f}")
    print(
        f"  {'training':<17}{statistics.median(trained):>7.2f}   (trials' epochs"
        f"{f' + probe candidates {probe_training:.2f}' if args.probe else ''})"
    )
    fixed = [w - t for w, t in zip(walls, trained, strict=True)]
    print(f"  {'wall - training':<17}{statistics.median(fixed):>7.2f}   (min {min(fixed):.2f}, max {max(fixed):.2f})")
    fronts = {tuple(r["front"]) for r in rows}
    print("front (the same in every run)" if len(fronts) == 1 else "FRONTS DIFFER between runs")
    print("\n".join(rows[0]["front"]))


if __name__ == "__main__":
    main()
