"""Preference vectors λ_1..λ_K on the simplex, one per population member.

T=2: K evenly spaced angles on the quarter circle, each (cos φ, sin φ) normalized to sum 1
(as in PMTL/EPO: evenly spaced *directions*, denser in the middle of the simplex than evenly
spaced weights). T>=3: Das–Dennis reference directions from pymoo (the data plane's only
pymoo import, lazily: the 2-task path needs none).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def das_dennis_sizes(num_tasks: int, limit: int = 200) -> list[int]:
    """The population sizes Das–Dennis can produce for ``num_tasks`` objectives (up to ``limit``)."""
    sizes, partitions = [], 1
    while (size := math.comb(partitions + num_tasks - 1, num_tasks - 1)) <= limit:
        sizes.append(size)
        partitions += 1
    return sizes


def make_preferences(num_tasks: int, size: int) -> Tensor:
    """``size`` preference vectors for ``num_tasks`` tasks, shape ``(size, num_tasks)``, rows sum to 1.

    One member gets equal weights (a plain equal-weighting run).
    """
    if num_tasks < 1 or size < 1:
        raise ValueError(f"preferences need num_tasks >= 1 and size >= 1, found {num_tasks} and {size}")
    if size == 1 or num_tasks == 1:
        return torch.full((size, num_tasks), 1.0 / num_tasks, dtype=torch.float64)
    if num_tasks == 2:
        angles = torch.linspace(0.0, math.pi / 2, size, dtype=torch.float64)
        directions = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        return directions / directions.sum(dim=1, keepdim=True)
    sizes = das_dennis_sizes(num_tasks)
    partitions = next((p + 1 for p, s in enumerate(sizes) if s == size), None)
    if partitions is None:
        raise ValueError(
            f"`population.size` {size} is not a Das–Dennis count for {num_tasks} tasks; "
            f"allowed: 1, {', '.join(map(str, sizes))} (or give `population.preferences` explicitly)"
        )
    from pymoo.util.ref_dirs import get_reference_directions

    directions = get_reference_directions("das-dennis", num_tasks, n_partitions=partitions)
    return torch.as_tensor(directions, dtype=torch.float64)


def normalize_preferences(rows: tuple[tuple[float, ...], ...], num_tasks: int) -> Tensor:
    """User-given preference rows, checked against the task count and normalized to sum 1."""
    prefs = torch.tensor(rows, dtype=torch.float64)
    if prefs.ndim != 2 or prefs.shape[1] != num_tasks:
        raise ValueError(
            f"`population.preferences` rows must have {num_tasks} weights (one per task), "
            f"found shape {tuple(prefs.shape)}"
        )
    return prefs / prefs.sum(dim=1, keepdim=True)
