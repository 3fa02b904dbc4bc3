"""Search benchmark: orchestration overhead and multi-objective early stopping, side by side.

    .venv/bin/python benchmarks/search_overhead.py [--trials 16] [--epochs 9] [--steps 100]

Runs the same 16-trial toy2d search twice on one embedded Ray, with the same seeds and
sampled hyperparameters: once with FIFO (every trial runs all epochs) and once with the Pareto
ASHA scheduler. Reports, for each,

- orchestration overhead = search wall time ÷ (Σ trial compute ÷ parallel slots): 1.0 would
  mean Ray, MLflow and the front bookkeeping cost nothing;
- total trial compute (seconds and epochs) and the final global HV;

and the early-stopping ratios (compute saved, HV kept). Nothing is asserted: it prints numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
from ray.tune import ExperimentAnalysis

from pareto_search.config import parse_config
from pareto_search.plan import make_plan
from pareto_search.search.runner import run_search


def _config(root: Path, name: str, scheduler: str, args: argparse.Namespace) -> dict:
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
                   "scheduler": {"name": scheduler, "grace_period": 1, "reduction_factor": 3}},
        "resources": {"cpus_per_trial": 1},
        "storage": str(root / "searches"),
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "experiment": "benchmark"},
    }


def _run(root: Path, name: str, scheduler: str, args: argparse.Namespace) -> dict:
    plan = make_plan(parse_config(_config(root, name, scheduler, args)))
    start = time.perf_counter()
    front = run_search(plan).front
    wall = time.perf_counter() - start
    analysis = ExperimentAnalysis(str(plan.storage_dir))
    results = [t.last_result for t in analysis.trials]
    compute = sum(r.get("time_total_s", 0.0) for r in results)
    epochs = sum(r.get("training_iteration", 0) for r in results)
    slots = min(args.slots, args.trials)
    return {"wall": wall, "compute": compute, "epochs": epochs, "hv": front.hypervolume().value,
            "overhead": wall / (compute / slots), "points": len(front.front())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="parallel trials (1 CPU each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.chdir(root)
        ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False)
        fifo = _run(root, "fifo", "fifo", args)
        asha = _run(root, "pareto-asha", "pareto_asha", args)
        ray.shutdown()
    print(f"\n{args.trials}-trial toy2d search (MT2O K=5, {args.epochs} epochs × {args.steps} steps), "
          f"{args.slots} parallel slots")
    print(f"{'scheduler':<14}{'wall s':>9}{'compute s':>11}{'epochs':>8}{'overhead':>10}{'global HV':>11}{'front':>7}")
    for name, row in (("fifo", fifo), ("pareto_asha", asha)):
        print(f"{name:<14}{row['wall']:>9.1f}{row['compute']:>11.1f}{row['epochs']:>8d}{row['overhead']:>10.2f}"
              f"{row['hv']:>11.5f}{row['points']:>7d}")
    print(f"early stopping: compute ratio {asha['compute'] / fifo['compute']:.3f}, epochs ratio "
          f"{asha['epochs'] / fifo['epochs']:.3f}, HV ratio {asha['hv'] / fifo['hv']:.4f} "
          f"(HV within 1 %: {abs(asha['hv'] / fifo['hv'] - 1) <= 0.01})")


if __name__ == "__main__":
    main()
