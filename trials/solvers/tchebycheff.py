"""Tchebycheff scalarization: minimize max_t λ_t (L_t − z_t)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trials.solvers.base import Hyperparameters, Solver, StepContext, require


@dataclass(frozen=True)
class TchebycheffParams(Hyperparameters):
    # Subtracted from the running minimum so that z stays strictly below every loss seen:
    # with z = min exactly, the current best task would contribute 0 and get no gradient.
    margin: float = 1e-3
    # A known ideal point (e.g. 0 for losses bounded below by 0). When given, z is this fixed
    # vector and the subproblem is stationary; when None, z is the running minimum − margin.
    ideal: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        require(math.isfinite(self.margin) and self.margin >= 0, "tchebycheff", "margin", self.margin, "a float >= 0")
        if self.ideal is not None:
            object.__setattr__(self, "ideal", tuple(float(v) for v in self.ideal))
            require(all(math.isfinite(v) for v in self.ideal), "tchebycheff", "ideal", self.ideal, "finite floats")


class TchebycheffScalarization(Solver):
    """Weighted Tchebycheff scalarization. Unlike the linear one it reaches every Pareto-optimal
    point, including non-convex parts of the front (Miettinen 1999, Thm 3.4.5)."""

    name = "tchebycheff"
    paper = "Weighted Tchebycheff scalarization; Miettinen, Nonlinear Multiobjective Optimization, 1999"
    Params = TchebycheffParams
    losses_only = True  # the update is a function of the losses alone: may run batched
    params: TchebycheffParams

    def setup(self) -> None:
        if self.params.ideal is not None:
            ideal, tasks = self.params.ideal, self.num_tasks
            require(len(ideal) == tasks, self.name, "ideal", ideal, f"{tasks} values")
        self.running_min: Tensor | None = None  # per-task minimum loss seen so far

    def _reference(self, losses: Tensor) -> Tensor:
        """z: the fixed ideal point, else the running minimum − margin (the current losses
        before any step has been seen)."""
        if self.params.ideal is not None:
            return torch.tensor(self.params.ideal, dtype=losses.dtype, device=losses.device)
        best = losses.detach().to(torch.float64).cpu() if self.running_min is None else self.running_min
        return (best - self.params.margin).to(losses)

    def objective(self, losses: Tensor) -> Tensor:
        return (self.preference.to(losses) * (losses - self._reference(losses))).max()

    def backward(self, ctx: StepContext) -> None:
        if self.params.ideal is None:
            current = ctx.losses.detach().to(torch.float64).cpu()
            self.running_min = current if self.running_min is None else torch.minimum(self.running_min, current)
        self.objective(ctx.losses).backward()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.running_min is None else {"running_min": self.running_min.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running_min = state["running_min"].clone() if "running_min" in state else None
