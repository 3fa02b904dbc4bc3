"""CAGrad: conflict-averse gradient descent (Liu, Liu, Jin, Stone, Liu, NeurIPS 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from trials.gradients import assign_flat_gradient, backward_heads
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require

Rescale = Literal["none", "1+c^2", "1+c"]
RESCALES = ("none", "1+c^2", "1+c")
# The dual is a convex problem in T ≤ ~10 variables; projected gradient with backtracking reaches
# DUAL_TOL in a few dozen iterations on the problems we measured. The cap bounds degenerate cases.
DUAL_MAX_ITER = 500
DUAL_TOL = 1e-12  # on max_t |Δw_t| between iterations


@dataclass(frozen=True)
class CAGradParams(Hyperparameters):
    # c: radius of the trust region around the average gradient, relative to its norm. 0 is
    # plain gradient descent on the average loss; larger c weighs the worst task more. 0.5 is
    # the default of the authors' code and of LibMTL; the paper tunes c per benchmark.
    c: float = 0.5
    # Divide the direction by 1 + c² (default, as the authors' code: ‖d‖ can reach (1 + c)‖g0‖,
    # this keeps the step size comparable across c), by 1 + c, or not at all ("none").
    rescale: Rescale = "1+c^2"

    def __post_init__(self) -> None:
        require(
            isinstance(self.c, int | float) and not isinstance(self.c, bool) and 0 <= self.c < 1,
            "cagrad",
            "c",
            self.c,
            "a float in [0, 1)",
        )
        require(self.rescale in RESCALES, "cagrad", "rescale", self.rescale, "one of none, 1+c^2, 1+c")


@dataclass(frozen=True)
class CAGradResult:
    direction: Tensor  # (P,) d = g0 + c‖g0‖·g_w/‖g_w‖, before any rescaling
    weights: Tensor  # (T,) float64 dual weights w on the simplex
    dual_value: float  # F(w) = ⟨g_w, g0⟩ + c‖g0‖‖g_w‖, an upper bound on max_d min_t ⟨g_t, d⟩
    iterations: int
    reason: Literal["c=0", "zero", "converged", "max_iter"]


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` ``(T,)`` onto the probability simplex (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    rho = int(np.nonzero(u - cumulative / np.arange(1, len(v) + 1) > 0)[0].max())
    projected: np.ndarray = np.maximum(v - cumulative[rho] / (rho + 1), 0.0)
    return projected


def dual_weights(gram: np.ndarray, c: float, max_iter: int, tol: float) -> tuple[np.ndarray, int, str]:
    """argmin_{w ∈ simplex} wᵀGb + c√(bᵀGb)·√(wᵀGw), b = 𝟏/T (the dual scaled by 1/‖·‖ of G):
    projected gradient with backtracking. numpy, not torch: T×T operations are ~10× cheaper."""
    T = len(gram)
    # Scale-free problem: A = G/max diag, so step sizes do not depend on the gradients' magnitude.
    A = gram / gram.diagonal().max()
    uniform = np.full(T, 1.0 / T)
    Ab = A @ uniform  # ⟨g_t, g0⟩ / scale
    radius = c * math.sqrt(max(float(uniform @ Ab), 0.0))  # c‖g0‖ / √scale

    def value(w: np.ndarray) -> float:
        return float(w @ Ab) + radius * math.sqrt(max(float(w @ A @ w), 0.0))

    def gradient(w: np.ndarray) -> np.ndarray:
        q = float(w @ A @ w)
        grad: np.ndarray = Ab + (radius / math.sqrt(q)) * (A @ w) if q > 1e-30 else Ab
        return grad

    w, step = uniform, 1.0
    for iteration in range(1, max_iter + 1):
        f, grad = value(w), gradient(w)
        while True:  # backtracking on the projected-gradient sufficient-decrease condition
            candidate = project_to_simplex(w - step * grad)
            delta = candidate - w
            if value(candidate) <= f + float(grad @ delta) + float(delta @ delta) / (2 * step) or step < 1e-12:
                break
            step *= 0.5
        w = candidate
        if float(np.abs(delta).max()) <= tol:
            return w, iteration, "converged"
        step *= 2.0  # let the step grow back after backtracking
    return w, max_iter, "max_iter"


def cagrad_direction(
    gradients: Tensor, c: float, *, max_iter: int = DUAL_MAX_ITER, tol: float = DUAL_TOL
) -> CAGradResult:
    """Solve max_d min_t ⟨g_t, d⟩ s.t. ‖d − g0‖ ≤ c‖g0‖ (g0 the average gradient) through its dual
    min_{w ∈ simplex} F(w) = ⟨g_w, g0⟩ + c‖g0‖‖g_w‖, g_w = Σ_t w_t g_t; then d = g0 + c‖g0‖ g_w/‖g_w‖
    (Liu et al. 2021, Eq. 3 and Sec. 3.1)."""
    g = gradients.detach().to(torch.float64)
    T = g.shape[0]
    g0 = g.mean(dim=0)
    if c == 0:  # the ball is the point g0; the dual optimum puts all weight on the worst task
        inner = g @ g0
        worst = torch.zeros(T, dtype=torch.float64)
        worst[int(inner.argmin())] = 1.0
        return CAGradResult(g0.to(gradients.dtype), worst, float(inner.min()), 0, "c=0")
    gram = (g @ g.T).cpu().numpy()
    if float(gram.diagonal().max()) <= 0.0:
        return CAGradResult(g0.to(gradients.dtype), torch.full((T,), 1.0 / T, dtype=torch.float64), 0.0, 0, "zero")
    weights, iterations, reason = dual_weights(gram, c, max_iter, tol)
    w = torch.from_numpy(weights)
    gw = w.to(g.device) @ g
    gw_norm, g0_norm = float(gw.norm()), float(g0.norm())
    direction = g0 if gw_norm == 0.0 else g0 + (c * g0_norm / gw_norm) * gw
    dual = float(gw @ g0) + c * g0_norm * gw_norm
    return CAGradResult(direction.to(gradients.dtype), w, dual, iterations, reason)  # type: ignore[arg-type]


class CAGrad(Solver):
    """Conflict-averse gradient descent: the shared update d maximizes the worst task's rate of
    improvement min_t ⟨g_t, d⟩ within a ball of radius c‖g0‖ around the average gradient g0,
    so it converges to a stationary point of the *average* loss (unlike MGDA, which stops at any
    Pareto-stationary point) while avoiding the worst conflicts. Heads get their own task
    gradients, as in the authors' code.
    """

    name = "cagrad"
    paper = "Liu, Liu, Jin, Stone, Liu, Conflict-Averse Gradient Descent for Multi-task Learning, NeurIPS 2021"
    Params = CAGradParams
    params: CAGradParams
    needs = Needs(task_gradients=True)

    def direction(self, gradients: Tensor) -> Tensor:
        """The shared update direction ``(P,)``, rescaled as configured."""
        c = float(self.params.c)
        d = cagrad_direction(gradients, c).direction
        divisor = {"none": 1.0, "1+c^2": 1.0 + c * c, "1+c": 1.0 + c}[self.params.rescale]
        return d / divisor

    def backward(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise ValueError("cagrad needs the task gradients; the loop did not provide them")
        assign_flat_gradient(self.direction(ctx.task_gradients), ctx.model.shared_parameters())
        backward_heads(ctx.losses, ctx.model)
