"""IMTL-G (Liu et al., ICLR 2021) — wraps torchjd (see trials/solvers/torchjd_base.py)."""

from __future__ import annotations

from torch import Tensor

from trials.min_norm import gram_matrix
from trials.solvers.torchjd_base import TorchJDSolver


class IMTLG(TorchJDSolver):
    """IMTL-G: the weights w (Σ w = 1) for which d = Jᵀw has the same projection onto every unit
    task gradient, ⟨d, g_t/‖g_t‖⟩ equal for all t: no task is favoured by the update. torchjd's
    version solves it with a pseudo-inverse, so linearly dependent gradients are allowed."""

    name = "imtl_g"
    paper = "Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, Towards Impartial Multi-task Learning, ICLR 2021"

    def setup(self) -> None:
        super().setup()
        from torchjd.aggregation import IMTLGWeighting

        self._weighting = IMTLGWeighting()

    def weights(self, jacobian: Tensor) -> Tensor:
        return self._weighting(gram_matrix(jacobian).cpu())
