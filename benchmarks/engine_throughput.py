"""Engine benchmark: Multi-MNIST LeNet training throughput, and an MT2O population (K=5)
against 5 independent single-model runs, measured side by side in one run.

    .venv/bin/python benchmarks/engine_throughput.py [--threads 2] [--repeats 3] [--n-train 10000]

Each measurement alternates population / independent runs `--repeats` times and reports the
median, so a noisy neighbour affects both sides alike. Prints a table; the numbers are the
point, nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trials.loop import Trainer
from trials.preferences import make_preferences
from trials.problems import make_problem
from trials.spec import OptimizerSpec, PopulationSpec, TransferSpec, TrialSpec


def _spec(size: int, preferences=None, eps0: float = 0.3) -> TrialSpec:
    return TrialSpec(
        problem="multi_mnist",
        solver="linear",
        population=PopulationSpec(size=size, preferences=preferences, transfer=TransferSpec(eps0=eps0)),
        optimizer=OptimizerSpec(name="adam", lr=3e-3),
        epochs=1,
        seed=0,
    )


def _train_seconds(spec: TrialSpec, problem, threads: int) -> float:
    trainer = Trainer(spec, problem=problem, num_threads=threads)
    start = time.perf_counter()
    trainer.train_epoch()
    return time.perf_counter() - start - trainer.history[-1].eval_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = make_problem("multi_mnist", {"n_train": args.n_train})
    prefs = make_preferences(2, args.size)

    _train_seconds(_spec(1), problem, args.threads)  # warm-up: allocator, kernels, page cache
    single, population, independent = [], [], []
    for _ in range(args.repeats):
        single.append(_train_seconds(_spec(1), problem, args.threads))
        population.append(_train_seconds(_spec(args.size), problem, args.threads))
        independent.append(
            sum(_train_seconds(_spec(1, preferences=(tuple(p.tolist()),)), problem, args.threads) for p in prefs)
        )
    s, p, i = (statistics.median(x) for x in (single, population, independent))
    n = args.n_train
    print(
        f"Multi-MNIST LeNet, {n} training images per epoch, torch threads {args.threads}, "
        f"median of {args.repeats} alternating repeats"
    )
    print(f"{'run':<38}{'seconds/epoch':>14}{'images/s':>12}")
    print(f"{'single model (equal weights)':<38}{s:>14.2f}{n / s:>12.0f}")
    print(f"{f'MT2O population K={args.size} (eps0=0.3)':<38}{p:>14.2f}{args.size * n / p:>12.0f}")
    print(f"{f'{args.size} independent single-model runs':<38}{i:>14.2f}{args.size * n / i:>12.0f}")
    print(f"time ratio population / independent runs: {p / i:.3f}  (1.0 = transfer and bookkeeping cost nothing)")
    print(f"time ratio population / single model:     {p / s:.3f}  (K = {args.size} is the expected cost)")


if __name__ == "__main__":
    main()
