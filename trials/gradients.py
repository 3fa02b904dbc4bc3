"""Per-task gradients of the shared parameters, computed once per step for every solver that
declares ``Needs.task_gradients``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def task_gradients(losses: Tensor, shared: list[nn.Parameter]) -> Tensor:
    """``(T, P)``: row t is ∇_θs L_t flattened over ``shared`` (zeros where L_t does not depend
    on a parameter). One autograd pass per task, keeping the graph for the solver's backward."""
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared, strict=True)]
            )
        )
    return torch.stack(rows)


def assign_flat_gradient(flat: Tensor, params: list[nn.Parameter]) -> None:
    """Write a flattened gradient back into ``.grad`` of ``params`` (the inverse of the row layout above)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
    if offset != flat.numel():
        raise ValueError(f"flat gradient has {flat.numel()} entries, the parameters {offset}")
