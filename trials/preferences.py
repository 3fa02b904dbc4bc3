"""Preference vectors λ_1..λ_K on the simplex, one per population member.

T=2: K evenly spaced angles on the quarter circle, each (cos φ, sin φ) normalized to sum 1
(as in PMTL/EPO: evenly spaced *directions*, denser in the middle of the simplex than evenly
spaced weights). T>=3: Das–Dennis reference directions from pymoo when K is one of its counts
(3 tasks: 3, 6, 10, ...), else pymoo's Riesz s-energy directions, so that any K works for any T
(the data plane's only pymoo import, lazily: the 2-task path needs none).

Later trials of one search entry can take other directions (``population.across_trials: fill``):
trial r's K directions are the ones farthest from every earlier trial's (a greedy maximin fill), so
an entry's trials add trade-offs instead of repeating them.
"""

from __future__ import annotations

import functools
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


def pull_to_centre(preferences: Tensor, interior: float) -> Tensor:
    """Each row moved ``interior`` of the way to equal weights (rows still sum to 1): 0 changes nothing."""
    if interior == 0:
        return preferences
    return (1.0 - interior) * preferences + interior / preferences.shape[1]


def make_preferences(num_tasks: int, size: int) -> Tensor:
    """``size`` preference vectors for ``num_tasks`` tasks, shape ``(size, num_tasks)``, rows sum to 1.

    With T = 2 and K odd, or a Das–Dennis K with a centre point, one member gets equal weights.
    """
    if num_tasks < 1 or size < 1:
        raise ValueError(f"preferences need num_tasks >= 1 and size >= 1, found {num_tasks} and {size}")
    if size == 1 or num_tasks == 1:
        return torch.full((size, num_tasks), 1.0 / num_tasks, dtype=torch.float64)
    if num_tasks == 2:
        angles = torch.linspace(0.0, math.pi / 2, size, dtype=torch.float64)
        directions = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        return directions / directions.sum(dim=1, keepdim=True)
    if size < num_tasks:
        # Fewer members than tasks (K = 2 on 3 tasks): the K points farthest apart on the simplex are K of its corners;
        # pymoo's energy directions cannot place fewer points than dimensions (its start draws from an unset RNG).
        return torch.eye(num_tasks, dtype=torch.float64)[:size].clone()
    sizes = das_dennis_sizes(num_tasks)
    partitions = next((p + 1 for p, s in enumerate(sizes) if s == size), None)
    if partitions is None:
        # Any other K (e.g. the mt2o preset's 5 on a 3-task problem): Riesz s-energy directions.
        return _energy_directions(num_tasks, size).clone()
    from pymoo.util.ref_dirs import get_reference_directions

    directions = get_reference_directions("das-dennis", num_tasks, n_partitions=partitions)
    return torch.as_tensor(directions, dtype=torch.float64)


@functools.lru_cache(maxsize=32)
def _energy_directions(num_tasks: int, size: int) -> Tensor:
    """``size`` directions spread over the simplex by minimizing their Riesz s-energy (pymoo's "energy" reference
    directions, Blank et al. 2021), for the sizes Das–Dennis cannot make. Deterministic (a fixed seed); cached since
    the optimization takes ~1 s and every trial of a search asks for the same set."""
    from pymoo.util.ref_dirs import get_reference_directions

    directions = get_reference_directions("energy", num_tasks, size, seed=1)
    return torch.as_tensor(directions, dtype=torch.float64)


# Candidate directions a filling trial chooses from: for T = 2, angles on the quarter circle this many steps apart
# from each other (1024 steps: gaps halve ten times before two candidates coincide); for T >= 3, the finest
# Das–Dennis grid with at most FILL_CANDIDATES points (T = 3: 4950, a step of 1/98).
FILL_ANGLE_STEPS = 1024
FILL_CANDIDATES = 5000
# Two candidates this close in angular distance (radians) count as equally far: the tie goes to the one nearer
# equal weights, so the fill does not depend on float noise and spends ties on balanced trade-offs.
FILL_TIE_TOLERANCE = 1e-9


def trial_preferences(num_tasks: int, size: int, trial: int) -> Tensor:
    """The generated preferences of an entry's ``trial``-th trial (0-based), shape ``(size, num_tasks)``.

    Trial 0 takes :func:`make_preferences`. Trial r >= 1 takes, one at a time, the candidate direction whose
    angular distance to every direction already taken (by trials 0..r-1 and earlier picks of trial r) is largest:
    for T = 2 and K = 5, trial 1 gets the four midpoints of trial 0's angles and then the middle of a gap next to
    equal weights. Each trial's set depends only on the trials before it, so adding trials never changes earlier
    ones (a resumed or extended search stays consistent)."""
    if trial < 0:
        raise ValueError(f"trial must be >= 0, found {trial}")
    if trial == 0 or num_tasks == 1:  # one task: every direction is the same
        return make_preferences(num_tasks, size)
    return _filled(num_tasks, size, trial).clone()


class _Fill:
    """The fill of one (num_tasks, size): the sets of trials 0, 1, 2, ... grown in order and kept (trial r needs
    every earlier one), with each candidate's angle to its nearest taken direction, updated pick by pick, so that
    trial r costs r·K passes over the candidates in all instead of r² (trial 200 on 3 tasks: 20 s -> < 1 s)."""

    def __init__(self, num_tasks: int, size: int) -> None:
        self.size = size
        self.candidates = _fill_candidates(num_tasks)
        self.unit = self.candidates / self.candidates.norm(dim=1, keepdim=True)
        centre = torch.full((num_tasks,), num_tasks**-0.5, dtype=torch.float64)
        self.to_centre = _angle(self.unit @ centre)
        self.sets = [make_preferences(num_tasks, size)]
        self.distance = self._nearest_angle(self.sets[0])

    def _nearest_angle(self, directions: Tensor) -> Tensor:
        rows = directions / directions.norm(dim=1, keepdim=True)
        return _angle(self.unit @ rows.T).min(dim=1).values

    def trial(self, trial: int) -> Tensor:
        while len(self.sets) <= trial:
            self.sets.append(self._next())
        return self.sets[trial]

    def _next(self) -> Tensor:
        """The ``size`` candidates farthest, one greedy pick at a time, from every direction taken so far."""
        picks = []
        for _ in range(self.size):
            best = self.distance.max()
            tied = (self.distance >= best - FILL_TIE_TOLERANCE).nonzero().flatten()
            balanced = tied[self.to_centre[tied] <= self.to_centre[tied].min() + FILL_TIE_TOLERANCE]
            pick = int(balanced[0])  # still tied (mirror images about the centre): the lower index, task 0 first
            picks.append(pick)
            self.distance = torch.minimum(self.distance, self._nearest_angle(self.candidates[pick : pick + 1]))
        chosen = self.candidates[picks]
        order = torch.argsort(chosen[:, 0], descending=True, stable=True)  # as make_preferences: task 0's falls
        return chosen[order]


_FILLS: dict[tuple[int, int], _Fill] = {}


def _filled(num_tasks: int, size: int, trial: int) -> Tensor:
    fill = _FILLS.get((num_tasks, size))
    if fill is None:
        fill = _FILLS[(num_tasks, size)] = _Fill(num_tasks, size)
    return fill.trial(trial)


def _angle(cosines: Tensor) -> Tensor:
    return torch.arccos(cosines.clamp(-1.0, 1.0))


@functools.lru_cache(maxsize=8)
def _fill_candidates(num_tasks: int) -> Tensor:
    if num_tasks == 2:
        angles = torch.linspace(0.0, math.pi / 2, FILL_ANGLE_STEPS + 1, dtype=torch.float64)
        directions = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        return directions / directions.sum(dim=1, keepdim=True)
    from pymoo.util.ref_dirs import get_reference_directions

    partitions = len(das_dennis_sizes(num_tasks, FILL_CANDIDATES))
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
