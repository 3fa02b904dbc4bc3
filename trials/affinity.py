"""Lookahead inter-task affinity (TAG; Fifty et al. 2021, "Efficiently Identifying Task Groupings
for Multi-Task Learning", NeurIPS) and the probe that measures it during any run.

On one batch, step only the shared parameters along task i's gradient, θ_s' = θ_s − η·g_i (or the
optimizer's real next update for g_i), and see what happens to every task j's loss:

    Z(i→j) = 1 − L_j(θ_s', θ_j) / L_j(θ_s, θ_j)

Positive: i's step helps j; negative: it hurts j. For small η, Z(i→j) ≈ η⟨g_i, g_j⟩/L_j. The matrix
is stored with the *source* task as the row and the *target* as the column: ``Z[i, j] = Z(i→j)``.
The same lookahead with any direction c gives the per-task transference of IT-MTL (Fifty et al.
2020, "Measuring and Harnessing Transference in Multi-Task Learning"), see :func:`lookahead_gains`.

The :class:`AffinityProbe` measures Z every ``every`` steps for member 0 of the population, averages
it per epoch (the loop puts the epoch's T×T matrix in ``EpochReport.extra["affinity"]``) and the loop
sums the epoch averages over training for grouping (``extra["affinity_total"]``, TAG's integral over
training). It never changes the training itself: parameters are restored bitwise, batch-norm
buffers and the train/eval mode are restored, and the global RNG (dropout) is forked, so a run with
the probe gives bit-identical results to one without it (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from trials.gradients import task_gradients
from trials.lookahead import current_lr, optimizer_lookahead, sgd_lookahead, temporarily
from trials.models import MultiTaskModel
from trials.problems.base import Batch, Problem

Lookahead = Literal["optimizer", "sgd"]
LossesFn = Callable[[], Tensor]  # the (T,) losses on a fixed batch at the current parameters
StepFn = Callable[[Tensor], list[Tensor]]  # flat direction -> lookahead values of the shared parameters


def relative_gains(before: Tensor, after: Tensor) -> Tensor:
    """1 − after/before per task. A task whose loss is already 0 cannot be helped; it gets 0
    rather than ±inf so one perfectly fit task does not poison sums over training."""
    before, after = before.to(torch.float64), after.to(torch.float64)
    safe = torch.where(before > 0, before, torch.ones_like(before))
    return torch.where(before > 0, 1.0 - after / safe, torch.zeros_like(before))


def lookahead_gains(
    params: Sequence[nn.Parameter], direction: Tensor, losses_fn: LossesFn, step: StepFn, base: Tensor
) -> Tensor:
    """(T,) relative loss decrease of every task after the lookahead step along ``direction``
    from ``base`` (the losses at the current parameters); parameters are restored exactly."""
    with temporarily(params, step(direction)):
        after = losses_fn()
    return relative_gains(base, after)


def lookahead_affinity(params: Sequence[nn.Parameter], task_grads: Tensor, losses_fn: LossesFn, step: StepFn) -> Tensor:
    """The (T, T) float64 matrix Z[i, j] = Z(i→j) for flat per-task gradients ``task_grads`` (T, P)."""
    base = losses_fn()
    return torch.stack([lookahead_gains(params, g, losses_fn, step, base) for g in task_grads])


def step_function(kind: Lookahead, optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter]) -> StepFn:
    """How a direction becomes lookahead values: the optimizer's next update, or SGD at its current lr."""
    if kind == "optimizer":
        return lambda g: optimizer_lookahead(optimizer, params, g)
    lr = current_lr(optimizer, params[0])
    return lambda g: sgd_lookahead(params, g, lr)


@contextmanager
def isolated(model: nn.Module, device: torch.device) -> Iterator[Callable[[], None]]:
    """Run extra forward passes without leaving a trace: the global RNG is forked (restored on exit),
    buffers (batch-norm statistics) and the train/eval mode are restored. Yields a function that
    resets the RNG to its state at entry, so every forward pass draws the same dropout mask and
    loss differences come from the parameters only."""
    devices = [device] if device.type == "cuda" else []
    buffers = [b.detach().clone() for b in model.buffers()]
    training = model.training
    with torch.random.fork_rng(devices=devices):
        cpu_state = torch.get_rng_state()
        cuda_states = [torch.cuda.get_rng_state(d) for d in devices]

        def reset() -> None:
            torch.set_rng_state(cpu_state)
            for d, state in zip(devices, cuda_states, strict=True):
                torch.cuda.set_rng_state(state, d)

        try:
            yield reset
        finally:
            with torch.no_grad():
                for b, saved in zip(model.buffers(), buffers, strict=True):
                    b.copy_(saved)
            model.train(training)


def measure_affinity(
    model: MultiTaskModel,
    optimizer: torch.optim.Optimizer,
    problem: Problem,
    batch: Batch,
    lookahead: Lookahead = "optimizer",
) -> Tensor:
    """Z (T, T) of ``model`` on ``batch`` (already on the model's device), in training mode as the
    training step sees it; nothing about the model, the optimizer or the RNG changes."""
    shared = model.shared_parameters()
    if not shared:  # nothing shared, nothing transferred
        return torch.zeros(problem.num_tasks, problem.num_tasks, dtype=torch.float64)
    device = shared[0].device
    with isolated(model, device) as reset_rng:
        model.train()

        def losses_fn() -> Tensor:
            reset_rng()
            with torch.no_grad():
                return problem.task_losses(model(batch.inputs), batch).detach()

        reset_rng()
        grads = task_gradients(problem.task_losses(model(batch.inputs), batch), shared).detach()
        return lookahead_affinity(shared, grads, losses_fn, step_function(lookahead, optimizer, shared))


class AffinityProbe:
    """Measures member 0's affinity every ``every`` global steps and averages it per epoch.

    Member 0 only: TAG measures along one training trajectory, and all members start from one
    initialization and see the same batches; measuring every member would cost K× (T backward and
    T+1 forward passes per measurement each) for K matrices nobody groups by. For K = 1 it is the
    model. Steps are counted globally (``step % every == 0``), so with ``every`` larger than an
    epoch some epochs have no measurement and report none. The "optimizer" lookahead uses the
    member's torch optimizer, also for a solver that updates the parameters its own way
    (``Solver.step``, e.g. AdaTask).
    """

    def __init__(self, every: int, lookahead: Lookahead = "optimizer") -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`affinity_every` must be an integer >= 1 for a probe, found {every!r}")
        self.every = every
        self.lookahead: Lookahead = lookahead
        self._sum: Tensor | None = None
        self._count = 0

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def measure(
        self,
        model: MultiTaskModel,
        optimizer: torch.optim.Optimizer,
        problem: Problem,
        batch: Batch,
    ) -> Tensor:
        z = measure_affinity(model, optimizer, problem, batch, self.lookahead)
        self._sum = z if self._sum is None else self._sum + z
        self._count += 1
        return z

    def end_epoch(self) -> tuple[list[list[float]] | None, int]:
        """The epoch's mean matrix (None when nothing was measured) and how many measurements it averages."""
        mean = None if self._sum is None else (self._sum / self._count).tolist()
        count = self._count
        self._sum, self._count = None, 0
        return mean, count


def add_matrices(a: list[list[float]] | None, b: list[list[float]]) -> list[list[float]]:
    """Element-wise sum of two nested-list matrices (``a`` may be None: no total yet)."""
    if a is None:
        return [list(row) for row in b]
    return [[x + y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]
