"""Two related tasks and one conflicting task: the check problem of task grouping (TAG).

Inputs x ~ N(0, I_d); one hidden direction u (unit vector, from the seed) defines the signal
s(x) = u·x. The tasks, regression with Gaussian noise σ:

- ``related_a``: y = s(x)
- ``related_b``: y = 2·s(x) + 0.5      (same direction: shares a representation with related_a)
- ``conflict``:  y = −s(x)             (the opposite direction)

Model: a shared MLP trunk to one feature z, and per task a head y = e^a·z + b that may rescale and
shift the shared feature but not flip its sign (with free-sign linear heads, opposite targets would
not conflict at all). So a network trained on all three tasks must compromise on z, while the
related pair alone, or the conflicting task alone, can be fit to the noise level: per-task
gradients on the trunk agree within the related pair and disagree with the conflicting task, and
grouping {related_a, related_b}, {conflict} beats one network for all three.

``tasks`` builds the problem restricted to a subset (by index or name), to train the networks of a
grouping. Registered as ``related3``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel
from trials.problems.base import Batch, MetricSpec, Problem, Split

# (name, scale, offset): y = scale·s(x) + offset + noise
TASKS: tuple[tuple[str, float, float], ...] = (
    ("related_a", 1.0, 0.0),
    ("related_b", 2.0, 0.5),
    ("conflict", -1.0, 0.0),
)
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}  # split draws offset from the problem's seed


class SignPreservingHead(nn.Module):
    """y = e^a·z + b: a positive scale and a shift of the shared feature z (one column)."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, z: Tensor) -> Tensor:
        return self.log_scale.exp() * z.squeeze(-1) + self.bias


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"problem 'related3': argument `{field}` must be an integer >= 1, found {value!r}")
    return value


class RelatedConflicting(Problem):
    name = "related3"

    def __init__(
        self,
        tasks: Sequence[int | str] = (0, 1, 2),
        dim: int = 8,
        hidden: int = 16,
        n_train: int = 512,
        n_val: int = 256,
        n_test: int = 256,
        batch_size: int = 64,
        noise: float = 0.1,  # σ: small against the signal (variance 1), so fit quality shows clearly
        seed: int = 0,
    ) -> None:
        names = [t[0] for t in TASKS]
        indices = [names.index(t) if isinstance(t, str) and t in names else t for t in tasks]
        valid = [i for i in indices if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(TASKS)]
        if not indices or len(valid) != len(indices):
            raise ValueError(
                f"problem 'related3': argument `tasks` must be a non-empty list of task indices 0-2 or names "
                f"{', '.join(names)}, found {list(tasks)!r}"
            )
        if len(set(valid)) != len(valid):
            raise ValueError(f"problem 'related3': argument `tasks` lists a task twice, found {list(tasks)!r}")
        if not isinstance(noise, int | float) or isinstance(noise, bool) or noise < 0:
            raise ValueError(f"problem 'related3': argument `noise` must be a float >= 0, found {noise!r}")
        self.tasks = tuple(valid)
        self.dim, self.hidden = _positive_int("dim", dim), _positive_int("hidden", hidden)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.noise = float(noise)
        self.task_names = tuple(TASKS[i][0] for i in self.tasks)
        self.metrics = tuple(MetricSpec(f"{n}_mse", "min") for n in self.task_names)
        self.default_objectives = tuple(m.name for m in self.metrics)
        # Twice the loss of predicting 0, E[y²] = scale² + offset² + σ²: any trained model is inside.
        self.default_reference_point = tuple(
            2.0 * (TASKS[i][1] ** 2 + TASKS[i][2] ** 2 + self.noise**2) for i in self.tasks
        )
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(self.dim, generator=g)
        self.direction = u / u.norm()
        sizes = {
            "train": _positive_int("n_train", n_train),
            "val": _positive_int("n_val", n_val),
            "test": _positive_int("n_test", n_test),
        }
        if sizes["train"] < self.batch_size:
            raise ValueError(
                f"problem 'related3': argument `n_train` must be >= batch_size ({self.batch_size}), found {n_train}"
            )
        self.data = {split: self._draw(n, seed * 10 + SPLIT_SEEDS[split]) for split, n in sizes.items()}

    def _draw(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, self.dim, generator=g)
        s = x @ self.direction
        noise = torch.randn(n, len(TASKS), generator=g) * self.noise
        y = torch.stack([scale * s + offset for _, scale, offset in TASKS], dim=1) + noise
        return x, y[:, list(self.tasks)]

    def make_model(self) -> MultiTaskModel:
        trunk = nn.Sequential(nn.Linear(self.dim, self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1))
        return MultiTaskModel(trunk, [SignPreservingHead() for _ in self.tasks])

    def steps_per_epoch(self) -> int:
        return len(self.data["train"][0]) // self.batch_size

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        x, y = self.data["train"]
        order = torch.randperm(len(x), generator=generator)
        for i in range(self.steps_per_epoch()):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield Batch(x[idx], tuple(y[idx, t] for t in range(self.num_tasks)))

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        return torch.stack([((o - y) ** 2).mean() for o, y in zip(outputs, batch.targets, strict=True)])

    @torch.no_grad()
    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        x, y = self.data[split]
        batch = Batch(x, tuple(y[:, t] for t in range(self.num_tasks))).to(device)
        was_training = model.training
        model.eval()
        losses = self.task_losses(model(batch.inputs), batch)
        model.train(was_training)
        return {m.name: float(v) for m, v in zip(self.metrics, losses, strict=True)}


def related3(**kwargs: object) -> RelatedConflicting:
    """The registry's factory (keyword arguments as in :class:`RelatedConflicting`)."""
    return RelatedConflicting(**kwargs)  # type: ignore[arg-type]
