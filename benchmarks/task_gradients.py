"""Per-task gradients of the shared parameters: one autograd pass per task (the loop) against one
vmapped pass over one-hot ``grad_outputs`` (``is_grads_batched``), on the Multi-MNIST LeNet
(a 256-image batch) and on the solver contract's toy regression.

    .venv/bin/python benchmarks/task_gradients.py [--threads 2] [--repeats 20] [--tasks 2]

Each timing is the median over ``--repeats`` of: forward, per-task gradients, then the solver's
final backward (what a step of a gradient-manipulation solver costs); the two routes alternate,
so a noisy neighbour hits both alike. Also checks that both routes agree (allclose 1e-6).
Without the offline Multi-MNIST data, a synthetic batch of 256 random 36×36 images goes through
the same model.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from trials.gradients import task_gradients, task_gradients_batched
from trials.models import MultiTaskModel, lenet_multitask
from trials.problems import make_problem
from trials.problems.base import Batch, Problem
from trials.testing.contract import ConflictingRegression

Route = Callable[[Tensor, list[torch.nn.Parameter]], Tensor]


def _multi_mnist(tasks: int) -> tuple[MultiTaskModel, Callable[[], Tensor], str]:
    try:
        problem: Problem = make_problem("multi_mnist", {"n_train": 2000})
        batch = next(iter(problem.train_batches(torch.Generator().manual_seed(0))))
        model = problem.make_model()
        source = "multi_mnist n_train=2000, batch 256"
        return model, lambda: problem.task_losses(model(batch.inputs), batch), source
    except (ValueError, OSError) as exc:  # data not installed: same model, synthetic images
        g = torch.Generator().manual_seed(0)
        x = torch.rand(256, 1, 36, 36, generator=g)
        ys = [torch.randint(0, 10, (256,), generator=g) for _ in range(tasks)]
        model = lenet_multitask(tasks)

        def losses() -> Tensor:
            outs = model(x)
            return torch.stack([torch.nn.functional.cross_entropy(o, y) for o, y in zip(outs, ys, strict=True)])

        return model, losses, f"synthetic 256×36×36 (multi_mnist unavailable: {exc})"


def _contract(tasks: int) -> tuple[MultiTaskModel, Callable[[], Tensor], str]:
    problem = ConflictingRegression(tasks)
    batch: Batch = next(iter(problem.train_batches(torch.Generator().manual_seed(0))))
    model = problem.make_model()
    return model, lambda: problem.task_losses(model(batch.inputs), batch), "contract toy, batch 32"


def _step_seconds(model: MultiTaskModel, losses_fn: Callable[[], Tensor], route: Route) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    losses = losses_fn()
    route(losses, model.shared_parameters())
    losses.sum().backward()  # the solver's final backward frees the retained graph
    return time.perf_counter() - start


def _compare(name: str, model: MultiTaskModel, losses_fn: Callable[[], Tensor], repeats: int) -> None:
    losses = losses_fn()
    shared = model.shared_parameters()
    looped = task_gradients(losses, shared)
    batched = task_gradients_batched(losses, shared)
    equal = torch.allclose(looped, batched, rtol=1e-6, atol=1e-6)
    max_diff = float((looped - batched).abs().max())
    routes: dict[str, Route] = {"loop": task_gradients, "batched": task_gradients_batched}
    for route in routes.values():  # warm-up: allocator, vmap tracing
        _step_seconds(model, losses_fn, route)
    times: dict[str, list[float]] = {k: [] for k in routes}
    for _ in range(repeats):
        for key, route in routes.items():
            times[key].append(_step_seconds(model, losses_fn, route))
    loop_ms = 1e3 * statistics.median(times["loop"])
    batched_ms = 1e3 * statistics.median(times["batched"])
    print(
        f"{name:55s} P={looped.shape[1]:6d}  loop {loop_ms:8.2f} ms  batched {batched_ms:8.2f} ms  "
        f"batched/loop {batched_ms / loop_ms:5.2f}  allclose(1e-6) {equal} (max |diff| {max_diff:.1e})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=2, help="tasks of the contract toy (Multi-MNIST has 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}, per step incl. forward")
    for make, tasks in ((_multi_mnist, 2), (_contract, args.tasks)):
        model, losses_fn, source = make(tasks)
        _compare(source, model, losses_fn, args.repeats)


if __name__ == "__main__":
    main()
