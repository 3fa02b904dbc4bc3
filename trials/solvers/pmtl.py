"""PMTL: Pareto multi-task learning with preference-region constraints (Lin et al., NeurIPS 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trials.min_norm import min_norm_weights
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require
from trials.solvers.gramian import backward_task_weights, task_gramian

# The Tchebycheff form of ``objective`` divides by u_t; a zero entry (an end of the quarter
# circle) is floored so the member's scalar subproblem stays finite (it then asks for L_t ≈ 0).
DIRECTION_FLOOR = 1e-3


@dataclass(frozen=True)
class PMTLParams(Hyperparameters):
    # Upper bound on the steps of the first phase ("find an initial solution" in the region).
    # The phase ends as soon as the loss vector is in the member's region; the bound only stops
    # it when the region cannot be entered from here. The authors' synthetic example gives it a
    # fixed share (20%) of the iterations; a solver does not know the budget, so a step count.
    init_steps: int = 100
    # A constraint G_j = (u_j − u_k)ᵀ F/‖F‖ ≤ 0 counts as active from G_j ≥ −margin (the paper's
    # I_ε(θ)). 0 as in the authors' code: only constraints already violated or on the boundary.
    # A small positive margin pushes members slightly inside their regions.
    margin: float = 0.0

    def __post_init__(self) -> None:
        require(
            isinstance(self.init_steps, int) and not isinstance(self.init_steps, bool) and self.init_steps >= 0,
            "pmtl",
            "init_steps",
            self.init_steps,
            "an integer >= 0",
        )
        require(math.isfinite(self.margin) and 0 <= self.margin < 1, "pmtl", "margin", self.margin, "in [0, 1)")


def region_directions(preferences: Tensor) -> Tensor:
    """Unit-length rows u_k = λ_k/‖λ_k‖ ``(K, T)``: the paper's preference vectors in loss space."""
    prefs = preferences.to(torch.float64)
    norms: Tensor = prefs.norm(dim=1, keepdim=True)
    return prefs / norms.clamp_min(1e-300)


def region_of(losses: Tensor, directions: Tensor) -> int:
    """Index of the region holding the loss vector: the direction with the largest cosine to it."""
    return int(torch.argmax(directions @ losses.to(torch.float64)))


def constraint_values(losses: Tensor, directions: Tensor, member: int) -> Tensor:
    """``(K,)`` G_j = (u_j − u_k)ᵀ F/‖F‖ (cosine differences; ≤ 0 for all j ⇔ F in region k)."""
    F = losses.detach().to(torch.float64).cpu()
    norm: Tensor = F.norm()
    return (directions - directions[member]) @ (F / norm.clamp_min(1e-300))


def pmtl_weights(
    gramian: Tensor, losses: Tensor, directions: Tensor, member: int, *, initializing: bool, margin: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Task weights w ``(T,)`` of the PMTL direction Σ_t w_t ∇L_t, and the active constraints.

    The gradient of G_j is Σ_t (u_j − u_k)_t ∇L_t (the constraint's linear part, as in the
    authors' code), so every candidate vector is M_i·J for a row M_i of coefficients on the tasks,
    and the min-norm problem needs only M C Mᵀ with C = J Jᵀ.

    * ``initializing`` (Alg. 1, find an initial solution): min-norm over the ∇G_j of the
      constraints j with G_j ≥ 0; w = 0 when none is (the point is already in its region).
    * otherwise (Alg. 2, Eq. 14): min-norm over the task gradients ∇L_t and the ∇G_j with
      G_j ≥ −margin, the constrained MGDA subproblem.

    w is rescaled to Σ_t |w_t| = 1 (the scale of a linear scalarization's weights; the authors'
    code rescales to Σ|w| = T) so the learning rate means the same as for ``linear``.
    """
    T = gramian.shape[0]
    G = constraint_values(losses, directions, member)
    others = torch.arange(len(directions)) != member
    threshold = 0.0 if initializing else -margin
    active = others & (threshold <= G)
    rows = directions[active] - directions[member]
    if not initializing:
        rows = torch.cat([torch.eye(T, dtype=torch.float64), rows])
    if rows.shape[0] == 0:
        return torch.zeros(T, dtype=torch.float64), active
    gamma = min_norm_weights(rows @ gramian @ rows.T).weights
    w = gamma @ rows
    total = float(w.abs().sum())
    return (w / total if total > 0 else w), active


class PMTL(Solver):
    """Pareto MTL: member k solves min F(θ) subject to F(θ) ∈ Ω_k, the cone of loss vectors whose
    cosine with its own unit preference u_k is the largest among the population's K.

    As in the paper, a preference vector is a *direction in loss space*: the member's loss
    vector ends up near the ray of u_k, so a large λ_1 means a large L_1 (the opposite reading
    of a linear scalarization's weights). First phase: descend on the violated region
    constraints until the loss vector is in Ω_k (at most ``init_steps`` steps). Then every step:
    MGDA's min-norm direction over the task gradients and the gradients of the active region
    constraints (Frank–Wolfe, ``trials/min_norm.py``), over the whole network's Gramian; the
    final backward is of Σ_t w_t L_t (heads included), as in the authors' code. Needs the full
    population's preferences (``population_preferences``); a lone member has no constraints and
    is plain MGDA.
    """

    name = "pmtl"
    paper = "Lin, Zhen, Li, Zhang & Kwong, Pareto Multi-Task Learning, NeurIPS 2019"
    Params = PMTLParams
    params: PMTLParams
    needs = Needs(task_gradients=True)
    default_transfer_eps0 = 0.0  # members stay in their own regions: no MT2O mixing unless asked

    def setup(self) -> None:
        self.directions = region_directions(self.population_preferences)
        own = region_directions(self.preference[None])[0]
        # The member's own row among the K (the population passes its row of the same matrix).
        distances = (self.directions - own).norm(dim=1)
        self.member = int(torch.argmin(distances))
        self.initialized = self.params.init_steps == 0
        self._last: dict[str, float] = {}

    def objective(self, losses: Tensor) -> Tensor:
        # The front point on the ray of u_k minimizes max_t L_t/u_t (Tchebycheff, ideal 0): the
        # member's scalar subproblem for parameter transfer, pointing the same way as its region.
        u = self.directions[self.member].clamp_min(DIRECTION_FLOOR).to(losses)
        return (losses / u).max()

    def weights(self, ctx: StepContext) -> Tensor:
        """w ``(T,)`` float64 for this step; advances the phase (exposed for tests)."""
        losses = ctx.losses.detach()
        if not self.initialized:
            in_region = bool((constraint_values(losses, self.directions, self.member) <= 0).all())
            if in_region or ctx.step >= self.params.init_steps:
                self.initialized = True
        w, active = pmtl_weights(
            task_gramian(ctx),
            losses,
            self.directions,
            self.member,
            initializing=not self.initialized,
            margin=self.params.margin,
        )
        self._last = {"initializing": float(not self.initialized), "active_constraints": float(active.sum())}
        return w

    def backward(self, ctx: StepContext) -> None:
        backward_task_weights(ctx, self.weights(ctx))

    def diagnostics(self) -> dict[str, float]:
        """Phase (1 = still finding an initial solution) and active constraints of the last step."""
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        return {"initialized": self.initialized}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initialized = bool(state.get("initialized", self.params.init_steps == 0))
