"""Synthetic two-objective problems with exact Pareto fronts: Lin et al.'s toy and ZDT1/ZDT2.

The "model" is the decision vector itself (a :class:`~trials.models.ParameterVector` trunk
and two identity heads), so a solver's per-task gradients are the objectives' gradients and a
run can be checked against the analytic front. There is no data: every batch is empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel, ParameterVector
from trials.problems.base import Batch, ExactFront, MetricSpec, Problem, Split

# One "epoch" of a synthetic problem is this many optimizer steps. An epoch is the unit at which
# the loop evaluates, reports to the scheduler and may transfer parameters; with Adam at lr
# 0.01–0.05 a member reaches the front in 100–1000 steps, so 50 steps per epoch gives 2–20
# epochs to convergence: the same order as the real problems' epoch budgets, and few enough
# reports that the search machinery, not evaluation, stays the cost being measured.
DEFAULT_STEPS_PER_EPOCH = 50


def _check_int(problem: str, field: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"problem '{problem}': argument `{field}` must be an integer >= {minimum}, found {value!r}")
    return value


class _SyntheticProblem(Problem):
    """Two objectives f1, f2 of a decision vector; subclasses define them and the init."""

    task_names = ("f1", "f2")
    metrics = (MetricSpec("f1", "min"), MetricSpec("f2", "min"))
    default_objectives = ("f1", "f2")

    def __init__(self, n: int, steps_per_epoch: int) -> None:
        self.n = _check_int(self.name, "n", n, self._min_n)
        self._steps_per_epoch = _check_int(self.name, "steps_per_epoch", steps_per_epoch, 1)

    _min_n = 1

    # -- what subclasses define -------------------------------------------------------------
    def _initial_parameter(self) -> Tensor:
        """The raw parameter of a fresh model, drawn from torch's global RNG."""
        raise NotImplementedError

    # Raw parameter -> decision vector x; None is the identity. A module-level function, not a
    # method, so that the model holds no reference to the problem (deep copies and pickles of a
    # model stay small).
    _transform: Callable[[Tensor], Tensor] | None = None

    def objective(self, task: int, x: Tensor) -> Tensor:
        """f_task(x), a scalar tensor differentiable in x."""
        raise NotImplementedError

    # -- Problem interface -------------------------------------------------------------------
    def make_model(self) -> MultiTaskModel:
        # Each head is the identity: outputs[t] is the decision vector x and task t's loss is
        # f_t(outputs[t]). Solvers see the whole vector as a shared parameter.
        return MultiTaskModel(
            ParameterVector(self._initial_parameter(), self._transform), [nn.Identity(), nn.Identity()]
        )

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        # No data, so nothing to shuffle: ``generator`` is accepted for the interface only.
        for _ in range(self._steps_per_epoch):
            yield Batch(torch.empty(0), ())

    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        return torch.stack([self.objective(t, outputs[t]) for t in range(self.num_tasks)])

    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        # A deterministic function of the parameters: every split gives the same values.
        with torch.no_grad():
            outputs = model(torch.empty(0, device=device))
            losses = self.task_losses(outputs, Batch(torch.empty(0, device=device), ()))
        return {name: float(value) for name, value in zip(self.task_names, losses.tolist(), strict=True)}

    def pareto_set_point(self, t: float) -> Tensor:
        """The decision vector x (after the transform) of one Pareto-optimal point, for tests."""
        raise NotImplementedError

    def parameter_for(self, x: Tensor) -> Tensor:
        """The raw parameter whose transform is ``x`` (inverse of ``_transform``), for tests."""
        return x.clone()


# ---------------------------------------------------------------------------------------------
# Lin et al. (2019), "Pareto Multi-Task Learning", NeurIPS: the synthetic example of §5.1.
# ---------------------------------------------------------------------------------------------


def _toy2d_front(num: int) -> np.ndarray:
    # Pareto set x = t·a, t ∈ [-1, 1] (‖a‖ = 1); t from 1 down to -1 lists f1 in ascending order.
    t = np.linspace(1.0, -1.0, num)
    return np.stack([1.0 - np.exp(-((1.0 - t) ** 2)), 1.0 - np.exp(-((1.0 + t) ** 2))], axis=1)


# HV w.r.t. (1, 1) in closed form: with f1' = -2(1-t)e^{-(1-t)^2},
#   HV = ∫_{-1}^{1} e^{-(1+t)^2}·2(1-t)e^{-(1-t)^2} dt + (1 - f1(-1))
#      = 2e^{-2} ∫_{-1}^{1} (1-t) e^{-2t^2} dt + e^{-4} = e^{-2} √(2π) erf(√2) + e^{-4}
# (the odd part integrates to 0; e^{-4} is the strip f1 ∈ [1 - e^{-4}, 1] dominated by (1-e^{-4}, 0)).
# = 0.342115593..., docs/problems.md rounds it to 0.342116; tests check it against numerical integration.
TOY2D_HV_11 = math.exp(-2.0) * math.sqrt(2.0 * math.pi) * math.erf(math.sqrt(2.0)) + math.exp(-4.0)


class Toy2D(_SyntheticProblem):
    """f1 = 1 − exp(−‖x − a‖²), f2 = 1 − exp(−‖x + a‖²), a = 𝟏/√n: a non-convex front, so
    linear scalarization finds only its two ends (Lin et al. 2019, Fig. 1)."""

    name = "toy2d"
    # Both objectives are < 1 everywhere (1 − e^{−d²}) and the front's ends are at 1 − e^{−4}:
    # (1, 1) bounds every point and is the reference point of the stored exact HV.
    default_reference_point = (1.0, 1.0)
    exact_front = ExactFront(sample=_toy2d_front, hypervolumes={(1.0, 1.0): TOY2D_HV_11})

    # n = 20 as in Lin et al. (2019).
    def __init__(self, n: int = 20, steps_per_epoch: int = DEFAULT_STEPS_PER_EPOCH) -> None:
        super().__init__(n, steps_per_epoch)
        self.a = torch.full((self.n,), 1.0 / math.sqrt(self.n))

    def _initial_parameter(self) -> Tensor:
        # Uniform in [-0.5/√n, 0.5/√n]^n: ‖x‖ ≈ 0.29, well inside the unit ball around the
        # Pareto set {t·a}. There ‖x ∓ a‖² ≤ (1 + 0.5)², so both exp(−‖x ∓ a‖²) ≥ 0.1 and the
        # gradients are O(1) for any optimizer (far from ±a they vanish like e^{−‖x∓a‖²}, which
        # only Adam's normalization hides). Random rather than 0 so that members differ.
        half_width = 0.5 / math.sqrt(self.n)
        return (torch.rand(self.n) * 2.0 - 1.0) * half_width

    def objective(self, task: int, x: Tensor) -> Tensor:
        shift = self.a.to(x) if task == 0 else -self.a.to(x)
        return 1.0 - torch.exp(-((x - shift) ** 2).sum())

    def pareto_set_point(self, t: float) -> Tensor:
        """x = t·a gives (1 − e^{−(1−t)²}, 1 − e^{−(1+t)²}) for t ∈ [−1, 1]."""
        return t * self.a


# ---------------------------------------------------------------------------------------------
# ZDT1 / ZDT2: Zitzler, Deb & Thiele (2000), "Comparison of Multiobjective Evolutionary
# Algorithms: Empirical Results", Evolutionary Computation 8(2). x ∈ [0, 1]^n, n = 30.
# ---------------------------------------------------------------------------------------------

# ZDT1's f2 = g(1 − √(f1/g)) has d f2/d f1 = −√g/(2√f1) → ∞ at f1 = 0: the ratio is clamped
# here. With the sin² parametrization the gradient w.r.t. the raw parameter stays bounded anyway
# (√x1 = |sin(z1/2)|); the clamp only guards the exact zero, and the value error it causes is at
# most g·√1e-12 = 1e-6·g.
_SQRT_EPS = 1e-12


def _box_transform(z: Tensor) -> Tensor:
    # x = sin²(z/2) maps R onto [0, 1]. Chosen over the sigmoid after measuring both (Adam, linear
    # scalarizations of ZDT1, λ ∈ {0, 0.1, …, 1}): the sigmoid reaches the boundary only as
    # z → ±∞, so the 29 variables that must reach 0 crawl at ~lr per step (lr 0.05: ~700–970
    # steps; lr 0.01: not within 1000), and a member's parameter drifts without bound at the ends
    # of the front, which then slows parameter transfer to another preference. sin² reaches 0 and
    # 1 at finite z (0 and π), the objective is smooth in z there, and Adam reached every optimum
    # within 1e-2 in 30–110 steps at lr 0.05 and ~200–420 at lr 0.01. Its only stationary points
    # are the box's faces themselves, which a float parameter never lands on exactly.
    return torch.sin(0.5 * z) ** 2


def _box_inverse(x: Tensor) -> Tensor:
    return 2.0 * torch.asin(torch.sqrt(x.clamp(0.0, 1.0)))


# Exact HVs of a ZDT front running from (0, 1) to (1, 0) with A = ∫₀¹ (1 − f2) df1: at the
# reference point (r, r), r ≥ 1, the band f1 ∈ [0, 1] contributes ∫(r − f2) = (r − 1) + A and the
# strip f1 ∈ [1, r], dominated by (1, 0), contributes (r − 1)·r. ZDT1: A = ∫√f1 = 2/3, so
# HV(1.1) = 0.1 + 2/3 + 0.11 = 263/300; ZDT2: A = ∫f1² = 1/3, so HV(1.1) = 163/300. Written as
# fractions so the stored numbers are the correctly rounded doubles.
ZDT1_HYPERVOLUMES: dict[tuple[float, ...], float] = {(1.0, 1.0): 2.0 / 3.0, (1.1, 1.1): 263.0 / 300.0}
ZDT2_HYPERVOLUMES: dict[tuple[float, ...], float] = {(1.0, 1.0): 1.0 / 3.0, (1.1, 1.1): 163.0 / 300.0}


def _zdt1_front(num: int) -> np.ndarray:
    f1 = np.linspace(0.0, 1.0, num)
    return np.stack([f1, 1.0 - np.sqrt(f1)], axis=1)


def _zdt2_front(num: int) -> np.ndarray:
    f1 = np.linspace(0.0, 1.0, num)
    return np.stack([f1, 1.0 - f1**2], axis=1)


class _ZDT(_SyntheticProblem):
    _min_n = 2  # g needs at least one variable besides x1
    # Slightly beyond the front's nadir (1, 1), the usual ZDT choice: at (1, 1) itself the two
    # ends of the front, (0, 1) and (1, 0), would add no HV and covering them would go unrewarded.
    default_reference_point = (1.1, 1.1)

    # n = 30 as in Zitzler, Deb & Thiele (2000).
    def __init__(self, n: int = 30, steps_per_epoch: int = DEFAULT_STEPS_PER_EPOCH) -> None:
        super().__init__(n, steps_per_epoch)

    def _initial_parameter(self) -> Tensor:
        # x uniform in [0, 1]^n, the usual ZDT starting distribution (so g starts near 5.5, far
        # from the front at g = 1: the problem's intended difficulty), mapped to the raw
        # parameter through the inverse of the sin² transform.
        return _box_inverse(torch.rand(self.n))

    _transform = staticmethod(_box_transform)

    def _g(self, x: Tensor) -> Tensor:
        return 1.0 + 9.0 / (self.n - 1) * x[1:].sum()

    def pareto_set_point(self, t: float) -> Tensor:
        """x1 = t, the rest 0 (g = 1) gives (t, f2(t)) on the front, t ∈ [0, 1]."""
        x = torch.zeros(self.n)
        x[0] = t
        return x

    def parameter_for(self, x: Tensor) -> Tensor:
        return _box_inverse(x)


class ZDT1(_ZDT):
    """f1 = x1, f2 = g(1 − √(f1/g)), g = 1 + 9/(n−1)·Σ_{i≥2} x_i: convex front f2 = 1 − √f1."""

    name = "zdt1"
    exact_front = ExactFront(sample=_zdt1_front, hypervolumes=ZDT1_HYPERVOLUMES)

    def objective(self, task: int, x: Tensor) -> Tensor:
        f1 = x[0]
        if task == 0:
            return f1
        g = self._g(x)
        return g * (1.0 - torch.sqrt(torch.clamp(f1 / g, min=_SQRT_EPS)))


class ZDT2(_ZDT):
    """f1 = x1, f2 = g(1 − (f1/g)²): non-convex front f2 = 1 − f1²."""

    name = "zdt2"
    exact_front = ExactFront(sample=_zdt2_front, hypervolumes=ZDT2_HYPERVOLUMES)

    def objective(self, task: int, x: Tensor) -> Tensor:
        f1 = x[0]
        if task == 0:
            return f1
        g = self._g(x)
        return g * (1.0 - (f1 / g) ** 2)
