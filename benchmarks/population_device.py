"""A population's training step on one device: K members one after the other against one batched computation.

    .venv/bin/python benchmarks/population_device.py                  # the device auto picks (cuda when there is one)
    .venv/bin/python benchmarks/population_device.py --device cpu --steps 20

For K = 1, 4, 8, 16 it times MT2O's step (linear scalarizations, periodic transfer ε0 = 0.3 every step so the
transfer's cost is in, Adam) on Multi-MNIST's LeNet with a batch of 256 composites, once with
`population.execution: sequential` and once `batched` (trials/batched.py), and prints a markdown table of
ms per step and images per second (K members × batch images per step), and each step's cost relative to one
model's step. Issue 10's goal: on a GPU, K = 8 batched ≤ 2× one model's step. The last lines say which device
gave the numbers and, where there is no GPU, that only CPU numbers could be measured.

Timing: warm-up steps first (cuDNN autotuning, allocator), then the median of `--repeats` rounds of `--steps`
steps each, with the device synchronized around every round (CUDA runs asynchronously: without it the clock
would stop before the work does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from trials.loop import resolve_device  # noqa: E402
from trials.population import Population  # noqa: E402
from trials.problems import Batch, make_problem  # noqa: E402
from trials.spec import OptimizerSpec, PopulationSpec, TransferSpec, TrialSpec  # noqa: E402

BATCH = 256  # the quickstart's batch size
SIZES = (1, 4, 8, 16)
# 2 048 composites: enough for one batch and small enough to build in a second from the offline data.
PROBLEM_ARGS = {"n_train": 2048, "n_val": 256, "n_test": 256, "batch_size": BATCH}


def _population(problem, size: int, execution: str, device: torch.device) -> Population:
    spec = TrialSpec(
        problem="multi_mnist",
        problem_args=PROBLEM_ARGS,
        solver="linear",
        epochs=1000,  # keeps the transfer's ε from decaying over the timed steps
        population=PopulationSpec(size=size, execution=execution, transfer=TransferSpec(eps0=0.3, period=1)),
        optimizer=OptimizerSpec(name="adam", lr=1e-3),
        device=str(device),
    )
    torch.manual_seed(0)
    return Population(problem, spec, device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(population: Population, batch: Batch, steps: int, repeats: int, warmup: int) -> float:
    """Median seconds per step."""
    device = population.device
    for _ in range(warmup):
        population.train_step(batch)
    rounds = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            population.train_step(batch)
        _synchronize(device)
        rounds.append((time.perf_counter() - start) / steps)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="population sizes K (default 1,4,8,16)")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed round (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is reported (default 3)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    sizes = [int(k) for k in args.sizes.split(",")]
    torch.set_num_threads(torch.get_num_threads())  # all of the machine's threads, as a trial with the GPU has
    problem = make_problem("multi_mnist", PROBLEM_ARGS)
    batch = next(iter(problem.train_batches(torch.Generator().manual_seed(0)))).to(device)

    rows: list[tuple[int, str, float]] = []
    for size in sizes:
        for execution in ("sequential", "batched") if size > 1 else ("sequential",):
            population = _population(problem, size, execution, device)
            seconds = time_steps(population, batch, args.steps, args.repeats, args.warmup)
            rows.append((size, execution, seconds))
            print(f"K={size:<3} {execution:<10} {seconds * 1e3:8.2f} ms/step", file=sys.stderr, flush=True)

    one_model = next(s for k, e, s in rows if k == 1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n| K | execution | ms/step | images/s | × one model's step |  ({name}, torch {torch.__version__})")
    print("|---|---|---|---|---|")
    for size, execution, seconds in rows:
        images = size * BATCH / seconds
        print(f"| {size} | {execution} | {seconds * 1e3:.2f} | {images:,.0f} | {seconds / one_model:.2f} |")
    for size in sizes:
        pair = {e: s for k, e, s in rows if k == size}
        if "batched" in pair:
            print(f"K={size}: batched ÷ sequential = {pair['batched'] / pair['sequential']:.2f}")
    if 8 in sizes:
        best8 = min(s for k, _, s in rows if k == 8)
        print(f"K=8's fastest step ÷ one model's step = {best8 / one_model:.2f} (goal on a GPU: <= 2)")
    if device.type != "cuda":
        print("no GPU was available: these are CPU numbers only, where `execution: auto` stays sequential")


if __name__ == "__main__":
    main()
