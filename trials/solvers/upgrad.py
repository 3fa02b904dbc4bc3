"""UPGrad (Quinton & Rey 2024) — wraps torchjd (see trials/solvers/torchjd_base.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from trials.min_norm import gram_matrix
from trials.solvers.base import Hyperparameters, require
from trials.solvers.torchjd_base import TorchJDSolver


@dataclass(frozen=True)
class UPGradParams(Hyperparameters):
    # Added to the diagonal of the (trace-normalized) Gramian before the dual-cone QP, which a
    # round-off-indefinite Gramian would make fail; torchjd's default.
    reg_eps: float = 1e-4

    def __post_init__(self) -> None:
        require(math.isfinite(self.reg_eps) and self.reg_eps >= 0, "upgrad", "reg_eps", self.reg_eps, "a float >= 0")


class UPGrad(TorchJDSolver):
    """UPGrad: project every task gradient onto the dual cone of all of them (the directions with
    a non-negative inner product with each g_t) and combine the projections with the member's
    preference (torchjd's ``pref_vector``; uniform for a lone member = the paper's default).
    The result never conflicts with any task: ⟨d, g_t⟩ ≥ 0 for every t, up to ``reg_eps``."""

    name = "upgrad"
    paper = "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, arXiv 2406.16232, 2024"
    Params = UPGradParams
    params: UPGradParams

    def setup(self) -> None:
        super().setup()
        from torchjd.aggregation import UPGradWeighting
        from torchjd.linalg import QuadprogProjector

        self._weighting = UPGradWeighting(
            self.preference.clone(), projector=QuadprogProjector(reg_eps=self.params.reg_eps)
        )

    def weights(self, jacobian: Tensor) -> Tensor:
        return self._weighting(gram_matrix(jacobian).cpu())
