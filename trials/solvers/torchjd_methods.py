"""Gradient-aggregation methods wrapped from torchjd: UPGrad, IMTL-G and Nash-MTL.

Each solver turns the loop's ``(T, P)`` shared-parameter Jacobian J into task weights w with a
torchjd weighting, sets the shared gradient to wᵀJ (exactly what torchjd's aggregator returns:
all three are weighted aggregators) and gives every head its own task's gradient. torchjd is
imported lazily in ``setup`` (with cvxpy it costs about a second), so listing solvers stays cheap.
The version is pinned in pyproject.toml; the Nash-MTL wrapper reads torchjd's private state for
checkpoints, which the pin keeps valid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trials.gradients import assign_flat_gradient, backward_heads
from trials.min_norm import gram_matrix
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require

TORCHJD = f"torchjd {version('torchjd')}"


class _TorchJDSolver(Solver):
    """Shared part of the wrappers: weights from the Jacobian, shared gradient wᵀJ, heads their own."""

    needs = Needs(task_gradients=True)
    implementation = TORCHJD

    def setup(self) -> None:
        self.last_weights: Tensor | None = None  # for diagnostics only

    def weights(self, jacobian: Tensor) -> Tensor:
        """``(T,)`` weights of the rows of the ``(T, P)`` Jacobian (on the CPU)."""
        raise NotImplementedError

    def backward(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise ValueError(f"{self.name} needs the task gradients; the loop did not provide them")
        jacobian = ctx.task_gradients.detach()
        w = self.weights(jacobian)
        assign_flat_gradient(w.to(jacobian) @ jacobian, ctx.model.shared_parameters())
        backward_heads(ctx.losses, ctx.model)  # each head: its own task's plain gradient
        self.last_weights = w

    def diagnostics(self) -> dict[str, float]:
        if self.last_weights is None:
            return {}
        return {f"weight_t{t}": float(v) for t, v in enumerate(self.last_weights)}


@dataclass(frozen=True)
class UPGradParams(Hyperparameters):
    # Added to the diagonal of the (trace-normalized) Gramian before the dual-cone QP, which a
    # round-off-indefinite Gramian would make fail; torchjd's default.
    reg_eps: float = 1e-4

    def __post_init__(self) -> None:
        require(math.isfinite(self.reg_eps) and self.reg_eps >= 0, "upgrad", "reg_eps", self.reg_eps, "a float >= 0")


class UPGrad(_TorchJDSolver):
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


class IMTLG(_TorchJDSolver):
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


class NashMTL(_TorchJDSolver):
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
