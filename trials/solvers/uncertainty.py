"""Uncertainty weighting: learned homoscedastic log-variances weight the task losses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trials.solvers.base import Hyperparameters, Solver, StepContext, require


@dataclass(frozen=True)
class UncertaintyParams(Hyperparameters):
    # Initial log-variance s_t of every task. 0 gives weight exp(0) = 1: training starts as equal
    # weighting, the usual choice in the paper's follow-up implementations.
    init: float = 0.0

    def __post_init__(self) -> None:
        value = self.init
        finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        require(finite, "uncertainty", "init", value, "a finite float")


class UncertaintyWeighting(Solver):
    """Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Each task gets a learnable log-variance s_t = log σ_t² and the member minimizes

        Σ_t T·λ_t · (exp(−s_t) · L_t + s_t)

    jointly over the model and s (the s_t train with the member's optimizer: ``extra_parameters``).
    Convention: the paper's Gaussian likelihood gives ½·exp(−s)·L + ½·s for regression and
    exp(−s)·L + ½·s for classification; like most re-implementations we use exp(−s)·L + s for
    every task, which is the regression form times 2 (the same minimizer s* = log L, and with
    Adam the same trajectory). For fixed L_t the stationary point is s_t = log L_t, i.e. the
    weight exp(−s_t) → 1/L_t: every task's weighted loss is driven to 1.

    Preference: the factor T·λ_t is 1 for the uniform preference (exactly the paper's loss); a
    member's non-uniform preference scales its task terms without moving s*, so it tilts the
    weights to λ_t/L_t (our extension, so that populations of this solver differ).
    """

    name = "uncertainty"
    paper = (
        "Kendall, Gal, Cipolla. Multi-Task Learning Using Uncertainty to Weigh Losses for Scene "
        "Geometry and Semantics. CVPR 2018 (arXiv 1705.07115)"
    )
    Params = UncertaintyParams
    losses_only = True  # the update is a function of the losses alone: may run batched
    params: UncertaintyParams

    def setup(self) -> None:
        # float32 like the models; the population's optimizer updates it with the model.
        self.log_variance = nn.Parameter(torch.full((self.num_tasks,), float(self.params.init)))

    def extra_parameters(self) -> list[nn.Parameter]:
        return [self.log_variance]

    def _loss(self, losses: Tensor) -> Tensor:
        # s stays where it was created (the CPU: the population does not move solver parameters
        # to the model's device); ``.to`` is differentiable, so its gradient lands on the CPU
        # parameter the optimizer holds, and resuming on another device needs nothing special.
        s = self.log_variance.to(losses)
        scale = self.num_tasks * self.preference.to(losses)
        return (scale * (torch.exp(-s) * losses + s)).sum()

    def backward(self, ctx: StepContext) -> None:
        self._loss(ctx.losses).backward()

    def weights(self) -> Tensor:
        """The current task weights exp(−s_t) (without the preference factor)."""
        return torch.exp(-self.log_variance.detach())

    def diagnostics(self) -> dict[str, float]:
        return {f"weight/t{t}": float(w) for t, w in enumerate(self.weights())}

    def state_dict(self) -> dict[str, Any]:
        # The optimizer's checkpoint holds only the moments of s, never its values: they live here.
        return {"log_variance": self.log_variance.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        values = state["log_variance"]
        if tuple(values.shape) != (self.num_tasks,):
            raise ValueError(
                f"solver 'uncertainty': checkpoint holds log-variances of shape {tuple(values.shape)}, "
                f"expected ({self.num_tasks},)"
            )
        with torch.no_grad():  # in place: the optimizer holds this very Parameter
            self.log_variance.copy_(values)
