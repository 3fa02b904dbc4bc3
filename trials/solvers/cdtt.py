"""CDTT: the central direction with task tensioners (Nakamura, Wolf, Grassi, "Task Tensioners for
Multi-Task Learning", Neurocomputing 2022; code tiemink/MTL_TaskTensioner)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trials.gradients import assign_flat_gradient, backward_heads
from trials.min_norm import gram_matrix, min_norm_weights
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require

# Guards (docs/methods.md, Implementation notes, CDTT): a zero gradient has no direction, a zero
# window sum no ratio, a zero loss no logarithm. The floors sit far below any value training
# produces, so they only keep the arithmetic finite; a floored loss gives log10 = −12, i.e. the
# smallest tension 1 − α.
NORM_FLOOR = 1e-12
LOSS_FLOOR = 1e-12


@dataclass(frozen=True)
class CDTTParams(Hyperparameters):
    # α: the tension of task t lies in (1 − α, 1]; 0.3 is the authors' logic.json setting.
    alpha: float = 0.3
    # W: steps in the ring buffer of gradient norms; the authors' MAX_BATCH_ITER = 10.
    window: int = 10

    def __post_init__(self) -> None:
        require(
            isinstance(self.alpha, int | float) and not isinstance(self.alpha, bool) and 0 <= self.alpha <= 1,
            "cdtt",
            "alpha",
            self.alpha,
            "a float in [0, 1]",
        )
        require(
            isinstance(self.window, int) and not isinstance(self.window, bool) and self.window >= 1,
            "cdtt",
            "window",
            self.window,
            "an integer >= 1",
        )


def central_direction(gradients: Tensor) -> Tensor:
    """b = γ·Σ_t w_t ĝ_t with ĝ_t = g_t/‖g_t‖, w the min-norm weights over the ĝ_t and
    γ = 1/Σ_t (w_t/‖g_t‖) (step 1 of the method; float64)."""
    g = gradients.detach().to(torch.float64)
    norms = g.norm(dim=1).clamp_min(NORM_FLOOR)
    unit = g / norms[:, None]
    w = min_norm_weights(gram_matrix(unit)).weights.to(g.device)
    gamma = 1.0 / float((w / norms).sum())
    direction: Tensor = gamma * (w @ unit)
    return direction


def tension(p: Tensor, alpha: float) -> Tensor:
    """τ = α·sigmoid(e·(p − 1)) + 1 − α ∈ (1 − α, 1] (the authors' logistic, e = Euler's number)."""
    return alpha * torch.sigmoid(math.e * (p - 1.0)) + 1.0 - alpha


def tensioned_direction(gradients: Tensor, b: Tensor, tensions: Tensor) -> Tensor:
    """d = b + Σ_t τ_t·(g_t − b)/‖g_t − b‖, then rotated into every task's half-space (step 3)."""
    g = gradients.detach().to(torch.float64)
    pulls = g - b
    lengths = pulls.norm(dim=1)
    # A task whose gradient *is* b pulls nowhere (the guard for ‖g_t − b‖ = 0).
    units = torch.where(lengths[:, None] > 0, pulls / lengths.clamp_min(NORM_FLOOR)[:, None], torch.zeros_like(pulls))
    d = b + tensions.to(g) @ units
    for g_t in g:  # in task order, as the authors: a later rotation may move d again
        d = rotate_into_half_space(d, g_t)
    return d


def rotate_into_half_space(d: Tensor, g: Tensor) -> Tensor:
    """If the angle between d and g exceeds 90°, move d toward g along the segment from d to g
    until ⟨d, g⟩ = 0: d ← g + s·(d − g), s = ‖g‖²/(‖g‖² − ⟨d, g⟩) ∈ (0, 1).

    This is the authors' rotation in closed form. They project d off ĝ (w = d − ⟨d, ĝ⟩ĝ) and set
    d ← tan(π − ∠(g, d − g))·‖g‖·w/‖w‖: the right triangle with legs ‖g‖ along g and the
    perpendicular through 0 gives the same point, and the closed form needs no arccos (so no
    argument to clamp) and no tan near π/2. ``tests/unit/trials/solvers/test_cdtt.py`` checks the two agree."""
    sq = float(g @ g)
    dot = float(d @ g)
    if sq == 0.0 or not dot < 0.0:  # a zero gradient has no half-space; angle ≤ 90°: unchanged
        return d
    s = sq / (sq - dot)
    return g + s * (d - g)


class CDTT(Solver):
    """Central direction with task tensioners, step by step as docs/methods.md, Implementation
    notes, CDTT (from the authors' code):

    1. b: the min-norm direction of the *normalized* task gradients, rescaled by γ (MGDA's
       "central" direction with the length of a harmonic mean of the gradient norms).
    2. A ring buffer keeps each task's gradient norm over the last W steps; S_t is its sum.
    3. From step W + 1 on: p_t = S_t/S_prev_t + log10(L_t), with S_prev the previous step's sum
       (a sliding window), τ_t = α·sigmoid(e(p_t − 1)) + 1 − α, and
       d = b + Σ_t τ_t (g_t − b)/‖g_t − b‖: every task pulls d toward its own gradient, harder
       while its gradient norms grow or its loss is large. Then, task by task, d is rotated back
       into the half-space of any task it would ascend (angle > 90°). Before that, d = b.
    4. The shared parameters get d; each head gets its own task's gradient.
    Guards: zero gradient norms, zero window sums and zero losses are floored.
    """

    name = "cdtt"
    paper = "Nakamura, Wolf, Grassi, Task Tensioners for Multi-Task Learning, Neurocomputing 2022"
    Params = CDTTParams
    params: CDTTParams
    needs = Needs(task_gradients=True)

    def setup(self) -> None:
        self.norms = torch.zeros(self.params.window, self.num_tasks, dtype=torch.float64)  # ring buffer
        self.count = 0  # steps seen; the next norm goes to row count % W
        self.previous_sum: Tensor | None = None  # S_prev, (T,)
        self.last_tensions: Tensor | None = None  # diagnostics only

    def direction(self, gradients: Tensor, losses: Tensor) -> Tensor:
        """The shared update ``(P,)`` float64 for this step; advances the ring buffer."""
        g = gradients.detach().to(torch.float64)
        b = central_direction(g)
        self.norms[self.count % self.params.window] = g.norm(dim=1).cpu()
        self.count += 1
        if self.count < self.params.window:
            return b
        window_sum = self.norms.sum(dim=0)
        d = b
        if self.previous_sum is not None:
            loss = losses.detach().to(torch.float64).cpu().clamp_min(LOSS_FLOOR)
            p = window_sum / self.previous_sum.clamp_min(NORM_FLOOR) + torch.log10(loss)
            self.last_tensions = tension(p, float(self.params.alpha))
            d = tensioned_direction(g, b, self.last_tensions.to(g.device))
        self.previous_sum = window_sum
        return d

    def backward(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise ValueError("cdtt needs the task gradients; the loop did not provide them")
        d = self.direction(ctx.task_gradients, ctx.losses)
        assign_flat_gradient(d.to(ctx.task_gradients), ctx.model.shared_parameters())
        backward_heads(ctx.losses, ctx.model)

    def diagnostics(self) -> dict[str, float]:
        if self.last_tensions is None:
            return {}
        return {f"tension_t{t}": float(v) for t, v in enumerate(self.last_tensions)}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"norms": self.norms.clone(), "count": self.count}
        if self.previous_sum is not None:
            state["previous_sum"] = self.previous_sum.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        norms = state["norms"]
        if tuple(norms.shape) != tuple(self.norms.shape):
            raise ValueError(
                f"solver 'cdtt': checkpoint ring buffer has shape {tuple(norms.shape)}, "
                f"expected {tuple(self.norms.shape)} (window, tasks)"
            )
        self.norms = norms.clone().to(torch.float64)
        self.count = int(state["count"])
        self.previous_sum = state["previous_sum"].clone() if "previous_sum" in state else None
