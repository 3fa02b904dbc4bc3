"""Logic gates: the two-task toy of the task-tensioner paper (Nakamura, Wolf, Grassi,
Neurocomputing 2022; code tiemink/MTL_TaskTensioner, ``logic.json``).

Four inputs {0,1}², task 1 XOR with its targets scaled ×10 (so its loss and gradients dominate
by ~100×), task 2 AND. A shared Linear(2, 2) + sigmoid trunk, one Linear(2, 1) head per task,
MSE losses. XOR needs both hidden units, AND fits with almost any features: with equal
weighting the big XOR gradients decide the trunk and the question is whether both tasks still
reach a near-zero loss. The authors' setting: SGD lr 0.05 momentum 0.9, mini-batches of 2
(2 steps per epoch), at most 2500 epochs, converged below 1e-3.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel
from trials.problems.base import Batch, MetricSpec, Problem, Split

INPUTS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TRUTH = {"xor": (0.0, 1.0, 1.0, 0.0), "and": (0.0, 0.0, 0.0, 1.0), "or": (0.0, 1.0, 1.0, 1.0)}


class LogicGates(Problem):
    """Tasks are logic gates on two bits; ``scales`` multiplies each gate's targets (the paper's
    ``loss_scale``: XOR ×10). Every split is the four points (there is nothing to hold out)."""

    name = "logic_gates"

    def __init__(
        self, gates: Sequence[str] = ("xor", "and"), scales: Sequence[float] = (10.0, 1.0), batch_size: int = 2
    ) -> None:
        gates, scales = tuple(gates), tuple(float(s) for s in scales)
        prefix = "problem 'logic_gates': argument"
        if not gates or any(g not in TRUTH for g in gates):
            raise ValueError(f"{prefix} `gates` must name gates among {sorted(TRUTH)}, found {gates}")
        if len(scales) != len(gates):
            raise ValueError(f"{prefix} `scales` must have {len(gates)} values, found {scales}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 4:
            raise ValueError(f"{prefix} `batch_size` must be an integer in 1..4, found {batch_size!r}")
        self.task_names = gates
        self.metrics = tuple(MetricSpec(f"{g}_mse", "min") for g in gates)
        self.default_objectives = tuple(m.name for m in self.metrics)
        self.targets = torch.tensor([TRUTH[g] for g in gates]) * torch.tensor(scales)[:, None]  # (T, 4)
        self.batch_size = batch_size

    def make_model(self) -> MultiTaskModel:
        trunk = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())
        return MultiTaskModel(trunk, [nn.Linear(2, 1) for _ in self.task_names])

    def steps_per_epoch(self) -> int:
        return len(INPUTS) // self.batch_size

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(INPUTS), generator=generator)
        for i in range(self.steps_per_epoch()):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield Batch(INPUTS[idx], tuple(self.targets[t, idx] for t in range(self.num_tasks)))

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        return torch.stack([((o.squeeze(-1) - y) ** 2).mean() for o, y in zip(outputs, batch.targets, strict=True)])

    @torch.no_grad()
    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        batch = Batch(INPUTS, tuple(self.targets[t] for t in range(self.num_tasks))).to(device)
        losses = self.task_losses(model(batch.inputs), batch)
        return {m.name: float(v) for m, v in zip(self.metrics, losses, strict=True)}
