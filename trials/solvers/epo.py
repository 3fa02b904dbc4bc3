"""EPO: exact Pareto optimal search for a given preference (Mahapatra & Rajan, ICML 2020)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require
from trials.solvers.gramian import backward_task_weights, task_gramian

# A zero preference entry makes the ray condition r ⊙ L ∝ 1 degenerate (the task drops out of
# the non-uniformity and the balancing LP has a zero objective), so entries are floored here:
# r = (1, 0) then means "L_1 ≈ 0.001·L_2", the f1-minimizing end of the front, as intended.
PREFERENCE_FLOOR = 1e-3
# Losses enter logarithms; EPO assumes positive losses (cross-entropy, MSE, toy2d's 1 − e^{-d²}).
LOSS_FLOOR = 1e-12


@dataclass(frozen=True)
class EPOParams(Hyperparameters):
    # Non-uniformity μ = KL(r⊙L/Σ r⊙L ‖ 1/T) below which EPO stops balancing and only descends.
    # 1e-4 as in the authors' LP class; for T = 2 it allows a relative ray deviation
    # |r1 L1 − r2 L2| / (r1 L1 + r2 L2) of at most ≈ 2·√(μ/2) ≈ 0.014.
    eps: float = 1e-4
    # Descent mode also forbids raising μ (the authors' "restricted" LP). False drops that
    # constraint ("relaxed"): pure common descent once on the ray.
    restricted: bool = True

    def __post_init__(self) -> None:
        require(math.isfinite(self.eps) and self.eps > 0, "epo", "eps", self.eps, "a float > 0")
        require(isinstance(self.restricted, bool), "epo", "restricted", self.restricted, "true or false")


def non_uniformity(weighted_losses: np.ndarray) -> float:
    """μ(r⊙L) = Σ_j ℓ̂_j log(T ℓ̂_j), the KL divergence of ℓ̂ = r⊙L / Σ r⊙L from uniform."""
    share = weighted_losses / weighted_losses.sum()
    share = share[share > 0]
    return float(np.sum(share * np.log(share * len(weighted_losses))))


def adjustments(losses: np.ndarray, preference: np.ndarray) -> tuple[np.ndarray, float]:
    """a with a_j ∝ ∂μ/∂L_j = r_j (log(T ℓ̂_j) − μ) / Σ r⊙L, and μ: d_bal = Jᵀa is ∇_θ μ up to a
    positive factor, so moving along −Jᵀβ lowers μ fastest when βᵀ C a is largest."""
    weighted = preference * losses
    share = weighted / weighted.sum()
    mu = non_uniformity(weighted)
    return preference * (np.log(share * len(losses)) - mu), mu


def _solve(objective: np.ndarray, lower: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """argmax_β objectiveᵀβ over the simplex subject to rows·β ≥ lower (−inf rows are free)."""
    keep = np.isfinite(lower)
    # Imported here: scipy.optimize costs ~0.45 s to import, paid by every trial worker otherwise.
    from scipy.optimize import linprog

    result = linprog(
        -objective,
        A_ub=-rows[keep] if keep.any() else None,
        b_ub=-lower[keep] if keep.any() else None,
        A_eq=np.ones((1, len(objective))),
        b_eq=np.ones(1),
        bounds=(0.0, None),
        method="highs",
    )
    return result.x if result.status == 0 else None


def epo_weights(
    gramian: np.ndarray, losses: np.ndarray, preference: np.ndarray, eps: float, restricted: bool = True
) -> tuple[np.ndarray, float, bool]:
    """The EPO search direction's task weights β (on the simplex; direction d = Jᵀβ).

    Returns ``(β, μ, balancing)``. Mahapatra & Rajan (2020), Sec. 3–4, with C = J Jᵀ and
    a = :func:`adjustments`:

    * μ > eps (balance): maximize βᵀCa (steepest decrease of μ) subject to (Cβ)_j ≥ 0 for the
      tasks J* with the largest r_j L_j (they must not rise), (Cβ)_j ≥ (Ca)_j for the tasks whose
      loss the pure balancing direction would raise ("controlled ascent": no more than it),
      and no constraint for the tasks it lowers ((Ca)_j > 0); when it lowers none, every task
      gets (Cβ)_j ≥ 0. (A step −ηJᵀβ changes L_j by −η(Cβ)_j to first order.)
    * μ ≤ eps (descent): maximize 1ᵀCβ subject to Cβ ≥ 0 (no loss rises), and, restricted,
      βᵀCa ≥ min(max_j (Ca)_j, 0) (μ does not rise where it can be kept from rising).

    Both LPs are feasible in exact arithmetic (MGDA's min-norm β has Cβ ≥ ‖d‖² ≥ 0); if the LP
    solver still fails numerically, the relaxed descent LP and then uniform weights are used.
    """
    losses = np.maximum(losses, LOSS_FLOOR)
    # A positive rescaling leaves every LP's solution unchanged and keeps HiGHS's absolute
    # tolerances meaningful when gradients are tiny (late training) or huge.
    scale = float(np.max(np.diag(gramian)))
    C = gramian / scale if scale > 0 else gramian
    a, mu = adjustments(losses, preference)
    Ca = C @ a
    count = len(losses)
    beta: np.ndarray | None
    if mu > eps:
        lower = np.zeros(count)
        lowered = Ca > 0  # tasks whose loss the balancing direction d_bal = Jᵀa lowers: left free
        if lowered.any():
            lower = np.where(lowered, -np.inf, Ca)
            weighted = preference * losses
            lower[np.isclose(weighted, weighted.max(), rtol=1e-12, atol=0.0)] = 0.0
        beta = _solve(Ca, lower, C)
    else:
        beta = _solve_restricted(C, Ca) if restricted else None
    if beta is None:
        beta = _solve(C.sum(axis=0), np.zeros(count), C)
    if beta is None:
        beta = np.full(count, 1.0 / count)
    beta = np.clip(beta, 0.0, None)
    return beta / beta.sum(), mu, mu > eps


def _solve_restricted(C: np.ndarray, Ca: np.ndarray) -> np.ndarray | None:
    rows = np.vstack([C, Ca[None]])
    lower = np.concatenate([np.zeros(len(Ca)), [min(float(Ca.max()), 0.0)]])
    return _solve(C.sum(axis=0), lower, rows)


class EPO(Solver):
    """Exact Pareto Optimal search: gradient descent with controlled ascent toward the point of
    the front where r ⊙ L ∝ 1 (L_t ∝ 1/r_t, the member's preference ray).

    Every step solves a small LP over the T×T Gramian of the task gradients (whole network:
    shared rows from the loop plus each head's own norm) for weights β on the simplex, then
    back-propagates Σ β_t L_t. Off the ray it balances (drives the non-uniformity μ down while
    the worst weighted loss may not rise); on it (μ ≤ eps) it descends on every loss. The LP is
    solved with SciPy's HiGHS (the authors used cvxpy + GLPK). Analysed for plain gradient
    steps: with Adam the per-coordinate scaling bends the chosen direction, so use SGD when the
    exact ray matters. Preference entries are floored at 1e-3 (see ``PREFERENCE_FLOOR``).
    """

    name = "epo"
    paper = (
        "Mahapatra & Rajan, Multi-Task Learning with User Preferences: Gradient Descent with "
        "Controlled Ascent in Pareto Optimization, ICML 2020"
    )
    Params = EPOParams
    params: EPOParams
    needs = Needs(task_gradients=True)
    default_transfer_eps0 = 0.0  # each member has its own preference ray: no MT2O mixing unless asked

    def setup(self) -> None:
        floored = self.preference.clamp_min(PREFERENCE_FLOOR)
        self.ray = floored / floored.sum()
        self._last = {"non_uniformity": math.nan, "balancing": math.nan}

    def objective(self, losses: Tensor) -> Tensor:
        # The EPO point is where max_t r_t L_t is smallest on the front (the ray meets the front
        # there), so this Tchebycheff form with ideal 0 is the member's scalar subproblem.
        return (self.ray.to(losses) * losses).max()

    def weights(self, ctx: StepContext) -> Tensor:
        """β ``(T,)`` float64 for this step (exposed for tests and diagnostics)."""
        beta, mu, balancing = epo_weights(
            task_gramian(ctx).numpy(),
            ctx.losses.detach().to(torch.float64).cpu().numpy(),
            self.ray.numpy(),
            self.params.eps,
            self.params.restricted,
        )
        self._last = {"non_uniformity": mu, "balancing": float(balancing)}
        return torch.from_numpy(beta)

    def backward(self, ctx: StepContext) -> None:
        backward_task_weights(ctx, self.weights(ctx))

    def diagnostics(self) -> dict[str, float]:
        """μ and the mode (1 = balancing, 0 = descending) of the epoch's last step."""
        return dict(self._last)
