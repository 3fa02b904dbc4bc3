"""A plug-in problem: how a user brings their own multi-task problem to pareto_search.

Point a search at it with ``problem: examples.plugin_problem:make`` (any importable
``package.module:factory`` works); the search config's problem arguments are passed to
``make`` as keyword arguments.

The problem: two regression tasks whose relatedness is controlled by a correlation ``p``
(the synthetic benchmark of Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning
with Multi-gate Mixture-of-Experts", KDD, §3.2): orthonormal u1 ⟂ u2, w1 = c·u1,
w2 = c·(p·u1 + √(1 − p²)·u2), and y_k = w_kᵀx + Σ_i sin(α_i w_kᵀx + β_i) + noise. With p = 1 the
tasks agree; the lower p, the more they compete for the shared trunk. A problem needs five things:
a model (shared trunk + one head per task), training batches, per-task losses, metrics, and an
evaluation. Everything is plain PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel
from trials.problems.base import Batch, MetricSpec, Problem, Split

SPLITS: tuple[Split, ...] = ("train", "val", "test")


class TwoTaskRegression(Problem):
    """Two correlated regression tasks on Gaussian inputs, with a small MLP trunk."""

    name = "two_task_regression"
    task_names = ("task1", "task2")
    metrics = (MetricSpec("task1_mse", "min"), MetricSpec("task2_mse", "min"))
    default_objectives = ("task1_mse", "task2_mse")

    def __init__(
        self,
        *,
        n_train: int = 2_000,  # small: an epoch takes milliseconds on a CPU
        n_val: int = 500,
        n_test: int = 500,
        dim: int = 16,  # input dimension
        correlation: float = 0.5,  # p: 1 = the same task twice, 0 = orthogonal tasks
        noise: float = 0.1,  # std of the label noise: the floor of each task's test MSE is noise²
        hidden: int = 32,  # width of the shared trunk
        batch_size: int = 128,
        seed: int = 0,  # the data seed (weights, inputs, noise); the model seed is the loop's
    ) -> None:
        if not -1.0 <= correlation <= 1.0:
            raise ValueError(f"problem '{self.name}': argument `correlation` must be in [-1, 1], found {correlation!r}")
        for field, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("dim", dim)):
            if value < 2:
                raise ValueError(f"problem '{self.name}': argument `{field}` must be >= 2, found {value!r}")
        self.dim, self.hidden, self.batch_size = dim, hidden, batch_size
        # A private generator: building the problem must not disturb the global RNG, which the
        # loop seeds for the model's initialization.
        g = torch.Generator().manual_seed(seed)
        u, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g))  # orthonormal columns u1, u2
        scale = 1.0  # c in Ma et al.
        w1 = scale * u[:, 0]
        w2 = scale * (correlation * u[:, 0] + math.sqrt(1.0 - correlation**2) * u[:, 1])
        alpha, beta = torch.randn(10, generator=g), torch.randn(10, generator=g)  # 10 sine terms, as in the paper

        def targets(x: Tensor, w: Tensor) -> Tensor:
            z = x @ w
            return z + torch.sin(alpha * z[:, None] + beta).sum(dim=1)

        self.data: dict[Split, tuple[Tensor, Tensor, Tensor]] = {}
        for split, n in zip(SPLITS, (n_train, n_val, n_test), strict=True):
            x = torch.randn(n, dim, generator=g)
            y1 = targets(x, w1) + noise * torch.randn(n, generator=g)
            y2 = targets(x, w2) + noise * torch.randn(n, generator=g)
            self.data[split] = (x, y1, y2)
        # The HV reference point (``default_reference_point``): each task's MSE of the constant
        # predictor "training mean" — a model worse than that on a task has learned nothing on
        # it. MSE has no natural bound, so a problem derives one from its data like this.
        _, y1, y2 = self.data["train"]
        self.default_reference_point = (float(y1.var()), float(y2.var()))

    def make_model(self) -> MultiTaskModel:
        trunk = nn.Sequential(
            nn.Linear(self.dim, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden), nn.ReLU()
        )
        return MultiTaskModel(trunk, [nn.Linear(self.hidden, 1), nn.Linear(self.hidden, 1)])

    def example_inputs(self, n: int) -> Tensor:
        # Optional: what a registered model shows as its input example (default: a training batch).
        return self.data["val"][0][:n]

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        x, y1, y2 = self.data["train"]
        order = torch.randperm(len(x), generator=generator)  # shuffle only with the loop's generator
        for start in range(0, len(x), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield Batch(x[idx], (y1[idx], y2[idx]))

    def steps_per_epoch(self) -> int:
        return -(-len(self.data["train"][0]) // self.batch_size)

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        return torch.stack(
            [nn.functional.mse_loss(out.squeeze(-1), y) for out, y in zip(outputs, batch.targets, strict=True)]
        )

    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        x, y1, y2 = self.data[split]
        with torch.no_grad():
            losses = self.task_losses(model(x.to(device)), Batch(x, (y1, y2)).to(device))
        return {"task1_mse": float(losses[0]), "task2_mse": float(losses[1])}


def make(**kwargs: object) -> Problem:
    """The plug-in factory: ``problem: examples.plugin_problem:make`` in a search config."""
    return TwoTaskRegression(**kwargs)  # type: ignore[arg-type]
