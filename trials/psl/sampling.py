"""The preferences of Pareto set learning: the ones drawn for training and the ones evaluated."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from trials.preferences import das_dennis_sizes, make_preferences

DEFAULT_POINTS_TWO_TASKS = 11  # evenly spaced weights 0, 0.1, ..., 1
DEFAULT_POINTS_MIN = 10  # more tasks: the smallest Das–Dennis set with at least this many directions


def drawn_preferences(seed: int, step: int, num_tasks: int, samples: int, concentration: float) -> Tensor:
    """The ``(samples, num_tasks)`` preferences of training step ``step``, Dirichlet(concentration): a pure
    function of (seed, step), like the data order, so a resumed trial draws the same ones without saving an RNG."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, step, 0x9551]))
    drawn = rng.dirichlet(np.full(num_tasks, concentration), size=samples)
    # Small concentrations underflow to exact zeros in float64 (and, rarely, a NaN row): fall back to a corner.
    drawn = np.nan_to_num(drawn, nan=0.0)
    rows = drawn.sum(axis=1, keepdims=True)
    corner = np.eye(num_tasks)[rng.integers(num_tasks, size=samples)]
    drawn = np.where(rows > 0, drawn / np.where(rows > 0, rows, 1.0), corner)
    return torch.as_tensor(drawn, dtype=torch.float32)


def default_points(num_tasks: int) -> int:
    if num_tasks <= 2:
        return DEFAULT_POINTS_TWO_TASKS
    return next(size for size in das_dennis_sizes(num_tasks, 10_000) if size >= DEFAULT_POINTS_MIN)


def evaluation_preferences(num_tasks: int, points: int | None) -> Tensor:
    """The N preferences the model is evaluated at, ``(N, num_tasks)`` float64: for 2 tasks evenly spaced
    weights (the simplex's edge, ends included: the single-task optima belong to a continuous front), for
    more the Das–Dennis set (another N: trials/preferences.py's Riesz s-energy directions)."""
    count = default_points(num_tasks) if points is None else points
    if num_tasks == 1:
        return torch.ones(count, 1, dtype=torch.float64)
    if num_tasks == 2:
        weight = torch.linspace(1.0, 0.0, count, dtype=torch.float64)
        return torch.stack([weight, 1.0 - weight], dim=1)
    return make_preferences(num_tasks, count)
