"""Nash-MTL (Navon et al., ICML 2022) — wraps torchjd (see trials/solvers/torchjd_base.py)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trials.solvers.base import Hyperparameters, require
from trials.solvers.torchjd_base import TorchJDSolver


@dataclass(frozen=True)
class NashMTLParams(Hyperparameters):
    # ‖Jᵀw‖ is clipped to this (0 turns clipping off); 1.0 as in the authors' code and torchjd.
    max_norm: float = 1.0
    # Solve the bargaining problem every this many steps, reusing w in between (the authors'
    # speed knob); 1 solves every step.
    update_weights_every: int = 1
    # Iterations of the sequence of convex approximations per solve; the authors' default.
    optim_niter: int = 20

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.max_norm) and self.max_norm >= 0, "nash_mtl", "max_norm", self.max_norm, "a float >= 0"
        )
        for field in ("update_weights_every", "optim_niter"):
            value = getattr(self, field)
            require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                "nash_mtl",
                field,
                value,
                "an integer >= 1",
            )


# cvxpy warns on every solve that torchjd's Nash-MTL problem is not DPP (it is recompiled each
# time); a performance note about the library's formulation, nothing this wrapper can change.
_NOT_DPP = "You are solving a parameterized problem that is not DPP"


class NashMTL(TorchJDSolver):
    """Nash-MTL: w > 0 solving the bargaining condition (J Jᵀ) w = 1/w (each task's utility
    ⟨d, g_t⟩ = 1/w_t, the Nash bargaining solution), found with cvxpy by a sequence of convex
    approximations, then ‖Jᵀw‖ clipped to ``max_norm``. Stateful: the last weights warm-start
    the next solve and are reused between solves; they are saved with the checkpoint."""

    name = "nash_mtl"
    paper = (
        "Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "
        "Multi-Task Learning as a Bargaining Game, ICML 2022"
    )
    Params = NashMTLParams
    params: NashMTLParams

    def setup(self) -> None:
        super().setup()
        from torchjd.aggregation import NashMTL as TorchJDNashMTL

        self._aggregator = TorchJDNashMTL(
            n_tasks=self.num_tasks,
            max_norm=self.params.max_norm,
            update_weights_every=self.params.update_weights_every,
            optim_niter=self.params.optim_niter,
        )

    def weights(self, jacobian: Tensor) -> Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NOT_DPP, category=UserWarning)
            return self._aggregator.weighting(jacobian).cpu()

    def state_dict(self) -> dict[str, Any]:
        state = self._aggregator.weighting
        return {
            "step": float(state.step),
            "prvs_alpha": torch.from_numpy(np.array(state.prvs_alpha, dtype=np.float64)),
            "normalization_factor": torch.from_numpy(np.array(state.normalization_factor, dtype=np.float64)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        weighting = self._aggregator.weighting
        weighting.reset()
        if not state:
            return
        weighting.step = float(state["step"])
        if weighting.step > 0:
            # torchjd builds its cvxpy problem on the first call (step 0) only; a resumed member
            # starts past it, so build it here. Every parameter of the problem is set again
            # before each solve, so the rebuilt one solves exactly as the original.
            weighting._init_optim_problem()
        weighting.prvs_alpha = state["prvs_alpha"].numpy().copy()
        weighting.normalization_factor = state["normalization_factor"].numpy().copy()
