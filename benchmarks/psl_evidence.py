"""Pareto set learning (``population.psl``): which conditioning and scalarization, measured; and PSL against one
equal-weight model at the same model-epochs.

For each problem and setting one trial trains (trials.loop, CPU, one thread) and its N = 11 points' validation HV
(the problem's default reference point) and the ends of the front they span (each objective's range over the
points) are printed as a table row. Usage::

    .venv/bin/python benchmarks/psl_evidence.py defaults       # conditioning x solver on toy2d, zdt1, multi_mnist
    .venv/bin/python benchmarks/psl_evidence.py versus_single  # PSL vs one equal-weight model, multi_mnist
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import torch

from pareto_search.pareto import hypervolume
from trials.loop import Trainer
from trials.problems import Problem, make_problem
from trials.spec import TrialSpec

MULTI_MNIST = {"n_train": 2_000, "n_val": 500, "n_test": 500}
# (problem, args, epochs, lr): the small budgets of the comparison; the synthetic problems' lr as in their tests.
PROBLEMS: list[tuple[str, dict[str, Any], int, float]] = [
    ("toy2d", {}, 6, 0.02),
    ("zdt1", {}, 6, 0.02),
    ("multi_mnist", MULTI_MNIST, 10, 1e-3),
]
_problems: dict[str, Problem] = {}


def run(problem: str, args: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    if problem not in _problems:
        _problems[problem] = make_problem(problem, args)
    prob = _problems[problem]
    trial = TrialSpec.from_dict({"problem": problem, "problem_args": args, **spec})
    start = time.perf_counter()
    trainer = Trainer(trial, problem=prob, num_threads=1)
    trainer.run()
    seconds = time.perf_counter() - start
    names = prob.default_objectives
    signs = np.array([1.0 if prob.metric(n).direction == "min" else -1.0 for n in names])
    values = np.array([[m.metrics[n] for n in names] for m in trainer.history[-1].members])
    reference = np.array(prob.default_reference_point)
    hv = hypervolume(values * signs, reference * signs).value
    return {
        "hv": hv,
        "ranges": [(float(values[:, j].min()), float(values[:, j].max())) for j in range(len(names))],
        "model_epochs": trainer.model_epochs,
        "seconds": seconds,
    }


def row(label: str, result: dict[str, Any]) -> str:
    ranges = " ".join(f"[{lo:.3f}, {hi:.3f}]" for lo, hi in result["ranges"])
    return f"| {label} | {result['hv']:.4f} | {ranges} | {result['model_epochs']} | {result['seconds']:.0f} s |"


def defaults() -> None:
    print("| problem / conditioning / solver | HV (val) | objective ranges over the points | model-epochs | time |")
    print("|---|---|---|---|---|")
    for problem, args, epochs, lr in PROBLEMS:
        for solver in ("linear", "tchebycheff"):
            for conditioning in ("lowrank", "hyper", "film"):
                spec = {
                    "solver": solver,
                    "epochs": epochs,
                    "optimizer": {"lr": lr},
                    "population": {"psl": {"conditioning": conditioning}},
                }
                print(row(f"{problem} / {conditioning} / {solver}", run(problem, args, spec)), flush=True)


def versus_single() -> None:
    """Multi-MNIST: PSL (P = 4 drawn preferences, 10 epochs = 40 model-epochs) against one equal-weight model
    trained 40 epochs (the same model-epochs) and 10 epochs; 3 seeds."""
    print("| multi_mnist setting | seed | HV (val) | left_acc, right_acc range | model-epochs | time |")
    print("|---|---|---|---|---|---|")
    for seed in (0, 1, 2):
        for label, spec in (
            ("psl lowrank tchebycheff", {"solver": "tchebycheff", "epochs": 10, "population": {"psl": {}}}),
            ("psl film linear", {"solver": "linear", "epochs": 10, "population": {"psl": {"conditioning": "film"}}}),
            ("one model, equal weights, 40 epochs", {"solver": "linear", "epochs": 40}),
            ("one model, equal weights, 10 epochs", {"solver": "linear", "epochs": 10}),
        ):
            result = run("multi_mnist", MULTI_MNIST, {**spec, "seed": seed, "optimizer": {"lr": 1e-3}})
            print(row(f"{label} | {seed}", result), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"defaults": defaults, "versus_single": versus_single}[sys.argv[1] if len(sys.argv) > 1 else "defaults"]()
