"""MGDA: the min-norm common descent direction (Désidéri 2012; Sener & Koltun, NeurIPS 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from trials.gradients import assign_flat_gradient, backward_heads
from trials.min_norm import gram_matrix, min_norm_weights
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, backward_weighted, require

Mode = Literal["params", "rep"]
Normalization = Literal["none", "l2", "loss", "loss+"]
MODES = ("params", "rep")
NORMALIZATIONS = ("none", "l2", "loss", "loss+")
# Floors for the normalizers (a zero gradient or a zero loss would divide by 0); far below any
# gradient norm or loss that training produces.
NORM_FLOOR = 1e-12


@dataclass(frozen=True)
class MGDAParams(Hyperparameters):
    # "params": min-norm over the gradients of the shared parameters (MGDA proper, T backward
    # passes through the trunk). "rep": MGDA-UB, over the gradients w.r.t. the shared
    # representation z, an upper bound that costs one trunk forward instead of T backwards.
    mode: Mode = "params"
    # How each g_t is scaled before the min-norm problem, as in the authors' code: "l2" by ‖g_t‖,
    # "loss" by L_t, "loss+" by L_t·‖g_t‖. "none" is the paper's algorithm as written, the one
    # whose direction is exactly the min-norm element (the property the tests check).
    normalization: Normalization = "none"

    def __post_init__(self) -> None:
        require(self.mode in MODES, "mgda", "mode", self.mode, "one of params, rep")
        allowed = "one of none, l2, loss, loss+"
        require(self.normalization in NORMALIZATIONS, "mgda", "normalization", self.normalization, allowed)


def normalizers(gradients: Tensor, losses: Tensor, normalization: Normalization) -> Tensor:
    """``(T,)`` float64 divisors of the gradient rows before the min-norm problem."""
    norms: Tensor = gradients.detach().to(torch.float64).norm(dim=1).cpu()
    loss = losses.detach().to(torch.float64).cpu()
    if normalization == "l2":
        return norms.clamp_min(NORM_FLOOR)
    if normalization == "loss":
        return loss.clamp_min(NORM_FLOOR)
    if normalization == "loss+":
        return (loss * norms).clamp_min(NORM_FLOOR)
    return torch.ones_like(norms)


class MGDA(Solver):
    """Multiple-gradient descent: w = argmin_{w ∈ simplex} ‖Σ_t w_t g_t‖ (Frank–Wolfe, see
    ``trials/min_norm.py``), then the gradient of Σ_t w_t L_t for *all* parameters.

    Heads: following the paper's code, the final backward is of Σ_t w_t L_t, so head t receives
    w_t·∇_{θ_t} L_t (not its plain task gradient); the shared parameters receive Σ_t w_t g_t,
    which with ``normalization="none"`` and ``mode="params"`` is exactly the min-norm element.
    With a normalization, w is found on the scaled g_t/n_t and applied to the unscaled losses, as
    in the authors' code. ``mode="rep"`` (MGDA-UB) finds w on the gradients w.r.t. the shared
    representation of the batch instead.

    ``needs`` depends on ``mode`` (set per instance in ``setup``): the loop reads
    ``solver.needs`` from the instance, so a params-mode member never pays for representation
    gradients and vice versa.
    """

    name = "mgda"
    paper = (
        "Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, NeurIPS 2018; "
        "Désidéri, Multiple-gradient descent algorithm (MGDA), C. R. Math. 2012"
    )
    Params = MGDAParams
    params: MGDAParams
    needs = Needs(task_gradients=True)

    def setup(self) -> None:
        if self.params.mode == "rep":
            self.needs = Needs(representation_gradients=True)
        self.last_weights: Tensor | None = None  # for diagnostics only

    def weights(self, gradients: Tensor, losses: Tensor) -> Tensor:
        """``(T,)`` float64 min-norm weights of the (normalized) gradient rows."""
        scale = normalizers(gradients, losses, self.params.normalization).to(gradients.device)
        rows = gradients.detach().to(torch.float64) / scale[:, None]
        return min_norm_weights(gram_matrix(rows)).weights

    def backward(self, ctx: StepContext) -> None:
        if self.params.mode == "rep":
            if ctx.representation_gradients is None:
                raise ValueError("mgda (mode=rep) needs the representation gradients; the loop did not provide them")
            w = self.weights(ctx.representation_gradients, ctx.losses)
            backward_weighted(ctx.losses, w)  # the upper bound: w chosen on z, applied to all parameters
        else:
            if ctx.task_gradients is None:
                raise ValueError("mgda needs the task gradients; the loop did not provide them")
            w = self.weights(ctx.task_gradients, ctx.losses)
            # Σ_t w_t g_t is the shared gradient of Σ_t w_t L_t; taking it from the rows the loop
            # already computed saves a backward pass through the trunk.
            shared = w.to(ctx.task_gradients) @ ctx.task_gradients
            assign_flat_gradient(shared, ctx.model.shared_parameters())
            backward_heads(ctx.losses, ctx.model, w)
        self.last_weights = w

    def diagnostics(self) -> dict[str, float]:
        if self.last_weights is None:
            return {}
        return {f"weight_t{t}": float(v) for t, v in enumerate(self.last_weights)}
