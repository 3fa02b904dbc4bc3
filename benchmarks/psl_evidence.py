"""Pareto set learning (``population.psl``): which conditioning and scalarization, measured; and PSL against one
equal-weight model at the same model-epochs.

For each problem and setting one trial trains (trials.loop, CPU, one thread) and its N = 11 points' validation HV
(the problem's default reference point) and the ends of the front they span (each objective's range over the
points) are printed as a table row. Usage::

    .venv/bin/python benchmarks/psl_evidence.py defaults       # conditioning x solver on toy2d, zdt1, multi_mnist
    .venv/bin/python benchmarks/psl_evidence.py versus_single  # PSL vs one equal-weight model, multi_mnist

Measured 2026-12-07 (``defaults``, before the defaults changed: Dirichlet concentration 1, constant lr; CPU under
load, so the times are only relative). ZDT1 with film leaves the box [0, 1]^n (film now refuses a decision-vector
trunk)::

    | problem / conditioning / solver | HV (val) | objective ranges over the points | model-epochs | time |
    |---|---|---|---|---|
    | toy2d / lowrank / linear | 0.0465 | [0.003, 0.984] [0.001, 0.977] | 24 | 6 s |
    | toy2d / hyper / linear | 0.0712 | [0.000, 0.986] [0.000, 0.987] | 24 | 4 s |
    | toy2d / film / linear | 0.1439 | [0.009, 0.972] [0.012, 0.990] | 24 | 2 s |
    | toy2d / lowrank / tchebycheff | 0.2942 | [0.001, 0.972] [0.011, 0.984] | 24 | 3 s |
    | toy2d / hyper / tchebycheff | 0.2765 | [0.000, 0.994] [0.002, 0.981] | 24 | 5 s |
    | toy2d / film / tchebycheff | 0.2680 | [0.008, 0.996] [0.011, 0.995] | 24 | 6 s |
    | zdt1 / lowrank / linear | 0.7692 | [0.000, 1.000] [0.000, 0.990] | 24 | 7 s |
    | zdt1 / hyper / linear | 0.7679 | [0.000, 0.999] [0.001, 0.998] | 24 | 8 s |
    | zdt1 / film / linear | 0.0000 | [75327.852, 78258.664] [-81702992.000, -78642064.000] | 24 | 7 s |
    | zdt1 / lowrank / tchebycheff | 0.8247 | [0.030, 0.894] [0.060, 0.849] | 24 | 5 s |
    | zdt1 / hyper / tchebycheff | 0.8134 | [0.009, 0.962] [0.034, 1.088] | 24 | 12 s |
    | zdt1 / film / tchebycheff | 0.0000 | [37580.227, 38593.621] [-79316152.000, -77227200.000] | 24 | 7 s |
    | multi_mnist / lowrank / linear | 0.5461 | [0.740, 0.742] [0.722, 0.736] | 40 | 311 s |
    | multi_mnist / hyper / linear | 0.7391 | [0.834, 0.860] [0.826, 0.860] | 40 | 594 s |
    | multi_mnist / film / linear | 0.5728 | [0.762, 0.772] [0.738, 0.742] | 40 | 196 s |
    | multi_mnist / lowrank / tchebycheff | 0.4787 | [0.698, 0.704] [0.672, 0.680] | 40 | 390 s |
    | multi_mnist / hyper / tchebycheff | 0.6740 | [0.758, 0.826] [0.794, 0.816] | 40 | 354 s |
    | multi_mnist / film / tchebycheff | 0.5226 | [0.706, 0.714] [0.728, 0.732] | 40 | 125 s |

``versus_single`` (the preset's defaults: hyper, linear, concentration 0.5; seed 2's 10-epoch row not run). Mean
HV over the 3 seeds: PSL 0.7403, one model at the same 40 model-epochs 0.7198 (PSL ahead on 2 of 3 seeds, the seed
spread as large as the gap); the PSL front's ends span 0.05-0.10 in left and 0.03-0.07 in right accuracy::

    | multi_mnist setting | seed | HV (val) | left_acc, right_acc range | model-epochs | time |
    |---|---|---|---|---|---|
    | psl (preset defaults) | 0 | 0.7580 | [0.834, 0.886] [0.814, 0.856] | 40 | 297 s |
    | one model, equal weights, 40 epochs | 0 | 0.7071 | [0.854, 0.854] [0.828, 0.828] | 40 | 214 s |
    | one model, equal weights, 10 epochs | 0 | 0.5227 | [0.718, 0.718] [0.728, 0.728] | 10 | 14 s |
    | psl (preset defaults) | 1 | 0.7104 | [0.768, 0.856] [0.758, 0.832] | 40 | 76 s |
    | one model, equal weights, 40 epochs | 1 | 0.7552 | [0.866, 0.866] [0.872, 0.872] | 40 | 55 s |
    | one model, equal weights, 10 epochs | 1 | 0.5927 | [0.784, 0.784] [0.756, 0.756] | 10 | 14 s |
    | psl (preset defaults) | 2 | 0.7526 | [0.790, 0.886] [0.822, 0.850] | 40 | 139 s |
    | one model, equal weights, 40 epochs | 2 | 0.6971 | [0.844, 0.844] [0.826, 0.826] | 40 | 103 s |
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import torch

from pareto_search.front.pareto import hypervolume
from trials.loop import Trainer
from trials.presets import PSL
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
    """Multi-MNIST: PSL at the preset's defaults (P = 4 drawn preferences, 10 epochs = 40 model-epochs) against one
    equal-weight model trained 40 epochs (the same model-epochs) and 10 epochs (the same wall epochs); 3 seeds."""
    print("| multi_mnist setting | seed | HV (val) | left_acc, right_acc range | model-epochs | time |")
    print("|---|---|---|---|---|---|")
    for seed in (0, 1, 2):
        for label, spec in (
            ("psl (preset defaults)", {"solver": PSL.solver, "epochs": 10, "population": PSL.population}),
            ("one model, equal weights, 40 epochs", {"solver": "linear", "epochs": 40}),
            ("one model, equal weights, 10 epochs", {"solver": "linear", "epochs": 10}),
        ):
            result = run("multi_mnist", MULTI_MNIST, {**spec, "seed": seed, "optimizer": {"lr": 1e-3}})
            print(row(f"{label} | {seed}", result), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"defaults": defaults, "versus_single": versus_single}[sys.argv[1] if len(sys.argv) > 1 else "defaults"]()
