"""Plug-in problems that fail on purpose, for the failure-handling tests.

``diverging``: two quadratics f1 = ‖x − 1‖²/n, f2 = ‖x + 1‖²/n with n = 4. Equal weights give a
curvature of 0.5 per coordinate, so plain SGD diverges for lr > 4 (lr 10: x ← −4·x every step),
and a trial with a large learning rate fails the
way a real diverging run does — NaN/inf losses (``mode="nan"``) or an exception from user code
once the parameters blow up (``mode="raise"``) — while trials with a small rate train normally.

``overfitting``: the plug-in example's two regression tasks (examples/plugin_problem.py), whose training
targets turn wrong after ``good_epochs`` epochs (shifted by ``shift``): the validation errors fall, then
rise, so a model's best epoch is an earlier one — what the front must keep (tests/unit/front/test_front_epochs.py).
It counts its epochs itself (train_batches calls), so a trial resumed from a checkpoint counts again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from examples.plugin_problem import TwoTaskRegression
from trials.models import MultiTaskModel, ParameterVector
from trials.problems.base import Batch, MetricSpec, Problem, Split


class Diverging(Problem):
    name = "diverging"
    task_names = ("f1", "f2")
    metrics = (MetricSpec("f1", "min"), MetricSpec("f2", "min"))
    default_objectives = ("f1", "f2")
    default_reference_point = (10.0, 10.0)

    def __init__(self, mode: str = "nan", n: int = 4, steps_per_epoch: int = 200) -> None:
        if mode not in ("nan", "raise"):
            raise ValueError(f"problem 'diverging': `mode` must be nan or raise, found {mode!r}")
        self.mode, self.n, self._steps = mode, n, steps_per_epoch

    def make_model(self) -> MultiTaskModel:
        return MultiTaskModel(ParameterVector(torch.rand(self.n) * 0.1), [nn.Identity(), nn.Identity()])

    def steps_per_epoch(self) -> int:
        return self._steps

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        for _ in range(self._steps):
            yield Batch(torch.empty(0), ())

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        x = outputs[0]
        if self.mode == "raise" and bool(x.abs().max() > 1e3):
            raise RuntimeError("simulated crash in user code: parameters exploded")
        return torch.stack([((x - 1) ** 2).mean(), ((x + 1) ** 2).mean()])

    @torch.no_grad()
    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        losses = self.task_losses(model(torch.empty(0)), Batch(torch.empty(0), ()))
        return {"f1": float(losses[0]), "f2": float(losses[1])}


def diverging(**kwargs: object) -> Diverging:
    return Diverging(**kwargs)  # type: ignore[arg-type]


class Overfitting(TwoTaskRegression):
    name = "overfitting"

    def __init__(self, good_epochs: int = 2, shift: float = 3.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.good_epochs, self.shift, self.epochs_seen = good_epochs, shift, 0

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        self.epochs_seen += 1
        wrong = self.epochs_seen > self.good_epochs
        for batch in super().train_batches(generator):
            yield Batch(batch.inputs, tuple(t + self.shift for t in batch.targets)) if wrong else batch


def overfitting(**kwargs: object) -> Overfitting:
    return Overfitting(**kwargs)
