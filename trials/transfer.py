"""MT2O parameter transfer among the K members of a population.

Reconstruction (the paper's full text was not available; Bai, Gupta & Ong, arXiv 2403.16162,
abstract only, and its predecessor in Memetic Computing 2020). Every τ steps, before the members'
own optimizer steps::

    θ_k ← (1 − ε_t)·θ_k + ε_t·Σ_j S_kj θ_j,   S_kj ∝ exp(−‖λ_k − λ_j‖² / σ²), S_kk = 0,

with rows of S summing to 1 and ε_t decaying from ε0 to 0 over training, so the method ends as
plain gradient descent on each subproblem. ``beneficial`` mode (asymmetric transfer) keeps S_kj
only where moving ε of the way toward θ_j lowers f_k on the current batch, then renormalizes.
All parameters (trunk and heads) are mixed; optimizer states are not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from trials.spec import TransferSpec

# f_k evaluated on the current batch for member k with the given parameters.
Objective = Callable[[int, dict[str, Tensor]], float]


def similarity_matrix(preferences: Tensor, sigma: float) -> Tensor:
    """Row-stochastic ``(K, K)`` kernel with a zero diagonal (a member never transfers to itself)."""
    distances = torch.cdist(preferences, preferences) ** 2
    weights = torch.exp(-distances / sigma**2)
    weights.fill_diagonal_(0.0)
    totals = weights.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, weights / totals.clamp_min(1e-300), weights)


class ParameterTransfer:
    def __init__(self, spec: TransferSpec, preferences: Tensor, total_steps: int) -> None:
        self.spec = spec
        self.total_steps = max(total_steps, 1)
        self.similarity = similarity_matrix(preferences.to(torch.float64), spec.sigma)

    @property
    def enabled(self) -> bool:
        # ε0 = 0 must be exactly K independent runs, so nothing at all is touched then.
        return self.spec.eps0 > 0 and self.similarity.shape[0] > 1

    def epsilon(self, step: int) -> float:
        progress = min(step / self.total_steps, 1.0)
        if self.spec.decay == "constant":
            return self.spec.eps0
        if self.spec.decay == "linear":
            return self.spec.eps0 * (1.0 - progress)
        return self.spec.eps0 * 0.5 * (1.0 + math.cos(math.pi * progress))

    def due(self, step: int) -> bool:
        # Not at step 0: the members share one initialization, so there is nothing to mix yet.
        return self.enabled and step > 0 and step % self.spec.period == 0 and self.epsilon(step) > 0

    @torch.no_grad()
    def apply(self, models: Sequence[nn.Module], step: int, objective: Objective | None = None) -> Tensor:
        """Mix the members' parameters in place; returns the S actually used (rows may be 0)."""
        eps = self.epsilon(step)
        snapshot = [{name: p.detach().clone() for name, p in model.named_parameters()} for model in models]
        mixing = self.similarity.clone()
        if self.spec.mode == "beneficial":
            if objective is None:
                raise ValueError("beneficial transfer needs the members' objectives on the current batch")
            mixing = self._beneficial(snapshot, mixing, eps, objective)
        for k, model in enumerate(models):
            row = mixing[k]
            if float(row.sum()) == 0.0:
                continue
            for name, p in model.named_parameters():
                mixed = sum(float(row[j]) * snapshot[j][name] for j in range(len(models)) if row[j] > 0)
                p.copy_((1.0 - eps) * snapshot[k][name] + eps * mixed)
        return mixing

    def _beneficial(
        self, snapshot: list[dict[str, Tensor]], mixing: Tensor, eps: float, objective: Objective
    ) -> Tensor:
        for k in range(len(snapshot)):
            own = objective(k, snapshot[k])
            for j in range(len(snapshot)):
                if mixing[k, j] <= 0:
                    continue
                candidate = {n: (1.0 - eps) * snapshot[k][n] + eps * snapshot[j][n] for n in snapshot[k]}
                if not objective(k, candidate) < own:
                    mixing[k, j] = 0.0
            total = mixing[k].sum()
            if total > 0:
                mixing[k] /= total
        return mixing
