"""Dynamic Weight Average: weights from the rate at which each task's loss falls."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trials.solvers.base import Hyperparameters, Solver, StepContext, backward_weighted, require

# Floor of the older epoch's loss in the ratio: a loss of exactly 0 must not make the weights
# inf/NaN. DWA assumes positive losses, as the paper's losses all are.
_TINY = 1e-12


@dataclass(frozen=True)
class DWAParams(Hyperparameters):
    # Softmax temperature: the paper's value (Liu et al. 2019, §4: "we set T = 2"); larger values
    # make the weights more uniform.
    temperature: float = 2.0

    def __post_init__(self) -> None:
        value = self.temperature
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf
        require(ok, "dwa", "temperature", value, "a float > 0")


class DynamicWeightAverage(Solver):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task Learning
    with Attention", eq. 7).

    During epoch e the loss is Σ_t λ_t L_t with

        λ_t = T · softmax_t(r_t / temperature),   r_t = L̄_t(e−1) / L̄_t(e−2),

    where L̄_t is task t's mean training loss over an epoch (``end_epoch``). A task whose loss
    falls more slowly has a larger ratio and gets a larger weight; the weights sum to T. The
    first two epochs (no two past epochs yet) use λ_t = 1, as in the paper.

    Preference: λ_t ∝ p_t · exp(r_t / temperature), rescaled to sum T (a prior inside the
    softmax; our extension). The uniform preference gives exactly the paper's weights.
    """

    name = "dwa"
    paper = (
        "Liu, Johns, Davison. End-to-End Multi-Task Learning with Attention. CVPR 2019 "
        "(arXiv 1803.10704), Dynamic Weight Average"
    )
    Params = DWAParams
    params: DWAParams
    losses_only = True  # the update is a function of the losses alone: may run batched

    def setup(self) -> None:
        self.history: list[Tensor] = []  # mean training losses of the last (at most) two epochs, oldest first

    def weights(self) -> Tensor:
        """``(T,)`` float64 weights for the current epoch."""
        prior = self.num_tasks * self.preference
        if len(self.history) < 2:
            return prior
        older, newer = self.history
        ratio = newer / older.clamp_min(_TINY)
        logits = ratio / self.params.temperature + torch.log(self.preference)
        return self.num_tasks * torch.softmax(logits, dim=0)

    def backward(self, ctx: StepContext) -> None:
        backward_weighted(ctx.losses, self.weights())

    def end_epoch(self, epoch: int, mean_train_losses: Tensor) -> None:
        self.history = [*self.history, mean_train_losses.detach().to(torch.float64).cpu().clone()][-2:]

    def diagnostics(self) -> dict[str, float]:
        return {f"weight/t{t}": float(w) for t, w in enumerate(self.weights())}

    def state_dict(self) -> dict[str, Any]:
        return {"history": [h.clone() for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [h.clone().to(torch.float64) for h in state.get("history", [])][-2:]
