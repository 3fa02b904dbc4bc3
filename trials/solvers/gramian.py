"""The task Gramian C = J Jᵀ over *all* of a model's parameters, from the loop's shared-parameter rows.

EPO and PMTL choose task weights w from inner products of whole-network task gradients (both
authors' training scripts build J from every parameter) and then back-propagate Σ_t w_t L_t.
The loop hands solvers only the shared rows J_s ``(T, P)``. The heads are disjoint, task t's
head enters only L_t, so the full Gramian is J_s J_sᵀ + diag(‖∇_{θ_t} L_t‖²): one cheap pass per
head instead of full per-task gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trials.gradients import assign_flat_gradient, backward_heads
from trials.solvers.base import StepContext


def head_gradient_sq_norms(ctx: StepContext) -> Tensor:
    """``(T,)`` float64: ‖∇_{θ_t} L_t‖² over task t's head (0 for a parameter-free head)."""
    norms = torch.zeros(len(ctx.losses), dtype=torch.float64)
    for t, loss in enumerate(ctx.losses):
        params = ctx.model.task_parameters(t)
        if not params:
            continue
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        norms[t] = sum(float((g.detach().to(torch.float64) ** 2).sum()) for g in grads if g is not None)
    return norms


def task_gramian(ctx: StepContext) -> Tensor:
    """``(T, T)`` float64 Gramian of the whole-network task gradients (needs ``ctx.task_gradients``)."""
    if ctx.task_gradients is None:
        raise ValueError("task_gramian needs the task gradients; declare Needs(task_gradients=True)")
    shared = ctx.task_gradients.detach().to(torch.float64)
    return (shared @ shared.T).cpu() + torch.diag(head_gradient_sq_norms(ctx))


def backward_task_weights(ctx: StepContext, weights: Tensor) -> None:
    """Gradients of Σ_t w_t L_t: the shared part from the rows the loop already computed (no
    second backward through the trunk), each head w_t·∇_{θ_t} L_t (as both authors' scripts do)."""
    if ctx.task_gradients is None:
        raise ValueError("backward_task_weights needs the task gradients; declare Needs(task_gradients=True)")
    w = weights.detach().to(ctx.task_gradients)
    assign_flat_gradient(w @ ctx.task_gradients, ctx.model.shared_parameters())
    backward_heads(ctx.losses, ctx.model, w)
