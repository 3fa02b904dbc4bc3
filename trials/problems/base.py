"""The Problem interface: what a trial trains on.

A Problem bundles data, a model factory (shared trunk + one head per task), per-task
training losses, per-task metrics with names and directions, and, where known, the exact
Pareto front. Everything here is plain PyTorch so a trial can run without Ray or MLflow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from trials.models import MultiTaskModel

Direction = Literal["min", "max"]
Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class MetricSpec:
    """One evaluated quantity of a model, e.g. ``left_loss`` (min) or ``left_acc`` (max)."""

    name: str
    direction: Direction


@dataclass(frozen=True)
class ExactFront:
    """An analytic Pareto front in minimization form.

    ``sample(n)`` returns ``n`` points on the front, shape ``(n, T)``; ``hypervolumes`` maps a
    reference point to the front's exact hypervolume there (a sampled front's HV is always
    below it, so tests compare against these numbers, never against a sample).
    """

    sample: Callable[[int], np.ndarray]
    hypervolumes: dict[tuple[float, ...], float]


@dataclass
class Batch:
    """One training or evaluation batch: model inputs and one target tensor per task."""

    inputs: Tensor
    targets: tuple[Tensor, ...]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.inputs.to(device), tuple(t.to(device) for t in self.targets))


class Problem(ABC):
    """A multi-task learning problem.

    Subclasses set ``name``, ``task_names``, ``metrics`` and ``default_objectives`` (names
    from ``metrics`` that a search optimizes unless its config says otherwise), and may set
    ``exact_front`` when the objectives' Pareto front is known analytically (the objectives
    are then the ``default_objectives``).
    """

    name: str
    task_names: tuple[str, ...]
    metrics: tuple[MetricSpec, ...]
    default_objectives: tuple[str, ...]
    # The HV reference point for ``default_objectives`` in their own directions (e.g. 0.0 for
    # a maximized accuracy), when the problem has a natural one; a search config may override.
    default_reference_point: tuple[float, ...] | None = None
    exact_front: ExactFront | None = None

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def metric(self, name: str) -> MetricSpec:
        for spec in self.metrics:
            if spec.name == name:
                return spec
        allowed = ", ".join(m.name for m in self.metrics)
        raise ValueError(f"problem '{self.name}': unknown metric '{name}'; allowed: {allowed}")

    @abstractmethod
    def make_model(self) -> MultiTaskModel:
        """A freshly initialized model; initialization draws from torch's global RNG, which
        the training loop seeds, so the same seed gives the same initial weights."""

    @abstractmethod
    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of training batches (on the CPU), shuffled only with ``generator``, so
        the loop can reproduce any epoch's data order from its seed."""

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """How many batches ``train_batches`` yields."""

    @abstractmethod
    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        """Per-task training losses, shape ``(T,)``, differentiable w.r.t. the model."""

    @abstractmethod
    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        """Every metric in ``metrics`` on ``split`` (``val`` during a search, ``test`` for reports)."""

    # -- serving (optional): what a registered model needs besides the weights ---------------------

    def example_inputs(self, n: int) -> Tensor:
        """Up to ``n`` model inputs, for a served model's signature and input example.

        Problems with a validation split override this to take them from it. The default takes the
        first batch of a training epoch in a fixed order (generator seed 0), which works for any
        problem but may be smaller than ``n``. An empty tensor means the model takes no input
        (the synthetic problems, whose model is the decision vector itself): nothing to serve.
        """
        batch = next(iter(self.train_batches(torch.Generator().manual_seed(0))), None)
        return torch.empty(0) if batch is None else batch.inputs[:n]

    def network_recipe(self) -> tuple[str, dict[str, Any]] | None:
        """How to build :meth:`make_model`'s network without this problem's data: an importable
        ``'module:function'`` and its keyword arguments.

        A served model rebuilds its network where the training data may be absent. ``None`` (the
        default) means "build the problem itself, then call make_model()": right for problems whose
        construction is cheap and needs no files (generated data); override it when building the
        problem loads a dataset.
        """
        return None
