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

Nothing is asserted: it prints numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import ray
from ray.tune import ExperimentAnalysis
from ray.tune.execution.tune_controller import TuneController

from pareto_search.config import parse_config
from pareto_search.plan import make_plan
from pareto_search.search.callback import SearchCallback
from pareto_search.search.runner import run_search

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
        "solvers": [{
            "label": "mt2o",
            "solver": "tchebycheff",
            "solver_args": {"ideal": [0.0, 0.0]},
            "population": {"size": 5, "transfer": {"eps0": 0.3}},
            # Wide on purpose: slow learning rates give dominated trials for the scheduler to stop.
            "optimizer": {"name": "adam", "lr": {"loguniform": [1.0e-4, 5.0e-2]}, "schedule": "cosine"},
        }],
        "search": {"algorithm": "random", "num_samples": args.trials, "max_failures": 0,
                   "scheduler": {"name": scheduler, "grace_period": 1, "reduction_factor": 3}, **settings},
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
        return {"training": training, "trial start": spawn, "trial setup": setup, "per-epoch in worker": worker_epoch,
                "trial waits on Tune": waiting, "slot idle: before first": before_first,
                "slot idle: after last": after_last, "slot idle: between": idle - before_first - after_last,
                "driver callback": self.seconds["callback"], "state snapshots": self.seconds["snapshot"],
                "snapshots": self.counts["snapshot"]}


def _run(root: Path, name: str, scheduler: str, args: argparse.Namespace, settings: dict) -> dict:
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
    return {"wall": wall, "compute": compute, "epochs": epochs, "hv": front.hypervolume().value,
            "overhead": wall / (compute / slots), "points": len(front.front()), "slots": slots,
            "breakdown": clock.breakdown(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="parallel trials (1 CPU each)")
    parser.add_argument("--settings", default="before,defaults",
                        help=f"comma-separated rows, each a FIFO and a Pareto-ASHA search: {', '.join(SETTINGS)}, "
                             "or reuse_actors=BOOL/checkpoint_every=N pairs joined by '+'")
    args = parser.parse_args()
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
    print(f"\n{args.trials}-trial toy2d search (MT2O K=5, {args.epochs} epochs × {args.steps} steps), "
          f"{args.slots} parallel slots")
    width = max(len(k) for k in rows) + 2
    print(f"{'settings, scheduler':<{width}}{'wall s':>9}{'compute s':>11}{'epochs':>8}{'overhead':>10}"
          f"{'global HV':>11}{'front':>7}")
    for name, row in rows.items():
        print(f"{name:<{width}}{row['wall']:>9.1f}{row['compute']:>11.1f}{row['epochs']:>8d}{row['overhead']:>10.2f}"
              f"{row['hv']:>11.5f}{row['points']:>7d}")
    print("\nwhere the time goes (seconds; trial start/setup/per-epoch summed over trials = slot-seconds)")
    names = list(next(iter(rows.values()))["breakdown"])
    cell = max(21, *(len(n) + 2 for n in names))  # every column keeps its name apart from the next
    print(f"{'settings, scheduler':<{width}}" + "".join(f"{n:>{cell}}" for n in names) + f"{'wall × slots':>14}")
    for name, row in rows.items():
        cells = "".join(f"{row['breakdown'][n]:>{cell}.1f}" for n in names)
        print(f"{name:<{width}}{cells}{row['wall'] * row['slots']:>14.1f}")
    for label in args.settings.split(","):
        fifo, asha = rows[f"{label} fifo"], rows[f"{label} pareto_asha"]
        print(f"{label}: early stopping compute ratio {asha['compute'] / fifo['compute']:.3f}, epochs ratio "
              f"{asha['epochs'] / fifo['epochs']:.3f}, HV ratio {asha['hv'] / fifo['hv']:.4f}")
    first = args.settings.split(",")[0]
    for label in args.settings.split(",")[1:]:
        for scheduler in ("fifo", "pareto_asha"):
            a, b = rows[f"{first} {scheduler}"], rows[f"{label} {scheduler}"]
            print(f"{label} vs {first}, {scheduler}: wall ratio {b['wall'] / a['wall']:.3f}, "
                  f"HV ratio {b['hv'] / a['hv']:.5f}")


def _parse_settings(text: str) -> dict:
    settings: dict = {}
    for pair in text.split("+"):
        key, _, value = pair.partition("=")
        settings[key] = {"true": True, "false": False}.get(value.lower(), value)
        if key == "checkpoint_every":
            settings[key] = int(value)
    return settings


if __name__ == "__main__":
    main()
