"""The loss a drawn preference minimizes: the trial's solver's own ``objective`` (trials/solvers) at that
preference, with the trial's solver_args: ``linear`` (Σ λ_t L_t), ``tchebycheff`` (max_t λ_t (L_t − z_t), z the
running minimum of the losses seen unless `ideal` fixes it: it reaches non-convex parts of a front), ``epo``
(EPO's subproblem max_t r_t L_t, the point where the preference ray meets the front; without EPO's per-step
gradient LP, which would cost T backward passes per preference); minus ``cosmos_penalty``·cos(λ ⊙ L, 𝟏) when
set (COSMOS's cosine penalty, Ruchte & Grabocka 2021, pulling the losses onto the preference's ray; see
``Scalarizer.__call__`` for why the angle is not COSMOS's cos(λ, L))."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from trials.solvers import build_solver


class Scalarizer:
    """Scalarized losses of many preferences; its only state is Tchebycheff's running minimum."""

    def __init__(self, name: str, args: Mapping[str, Any], num_tasks: int, cosmos_penalty: float) -> None:
        self.name = name
        self.args = dict(args)
        build_solver(name, num_tasks, torch.full((num_tasks,), 1.0 / num_tasks), self.args)  # bad args: now
        self.num_tasks = num_tasks
        self.cosmos_penalty = cosmos_penalty
        self.running_min: Tensor | None = None  # (T,) float64, tchebycheff only

    def observe(self, losses: Tensor) -> None:
        """Before a step: the step's ``(P, T)`` losses move Tchebycheff's ideal point (a no-op for the others)."""
        if self.name != "tchebycheff":
            return
        current = losses.detach().to(torch.float64).cpu().min(dim=0).values
        self.running_min = current if self.running_min is None else torch.minimum(self.running_min, current)

    def __call__(self, preference: Tensor, losses: Tensor) -> Tensor:
        """The scalar loss of one preference ``(T,)`` at its losses ``(T,)``."""
        solver = build_solver(self.name, self.num_tasks, preference.detach().to(torch.float64).cpu(), self.args)
        if self.running_min is not None:  # the solver's state is its running minimum: hand it the shared one
            solver.load_state_dict({"running_min": self.running_min})
        value = solver.objective(losses)
        if self.cosmos_penalty > 0:
            # COSMOS penalizes the angle between L and λ, which reads a large λ_t as a large L_t: against the
            # linear term beside it, and against every solver here (a large λ_t means a small L_t). So the angle
            # is taken between λ ⊙ L and 𝟏 instead: the same pull onto a ray, EPO's ray λ ⊙ L ∝ 𝟏.
            weighted = preference.to(losses) * losses
            cosine = torch.nn.functional.cosine_similarity(weighted, torch.ones_like(weighted), dim=0, eps=1e-8)
            value = value - self.cosmos_penalty * cosine
        return value

    def diagnostics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {} if self.running_min is None else {"running_min": self.running_min.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running_min = state["running_min"].clone() if "running_min" in state else None
