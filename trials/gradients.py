"""Per-task gradients of the shared parameters, computed once per step for every solver that
declares ``Needs.task_gradients``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel


def task_gradients(losses: Tensor, shared: list[nn.Parameter]) -> Tensor:
    """``(T, P)``: row t is ∇_θs L_t flattened over ``shared`` (zeros where L_t does not depend
    on a parameter). One autograd pass per task, keeping the graph for the solver's backward.

    The loop is the default because it measured faster than :func:`task_gradients_batched`
    (``benchmarks/task_gradients.py``, CPU, torch 2.13, 2 threads, one step incl. forward and the
    final backward): Multi-MNIST LeNet, batch 256: loop 40 ms, batched 50 ms (×1.27); contract
    toy, T = 2: equal (0.31 ms); both routes bit-identical."""
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared, strict=True)]
            )
        )
    return torch.stack(rows)


def task_gradients_batched(losses: Tensor, shared: list[nn.Parameter]) -> Tensor:
    """Same as :func:`task_gradients`, in one vmapped backward pass over one-hot ``grad_outputs``
    (``is_grads_batched``): the documented alternative. Slower than the loop for a conv trunk on
    the CPU (vmapped conv backward); faster only where Python overhead dominates (a 40-parameter
    toy with T = 5: 0.54 vs 0.94 ms). Re-measure with ``benchmarks/task_gradients.py`` before
    switching, e.g. on a GPU or with many tasks."""
    num_tasks = losses.shape[0]
    one_hot = torch.eye(num_tasks, dtype=losses.dtype, device=losses.device)
    grads = torch.autograd.grad(
        losses, shared, grad_outputs=one_hot, retain_graph=True, allow_unused=True, is_grads_batched=True
    )
    return torch.cat(
        [
            (g if g is not None else p.new_zeros((num_tasks, *p.shape))).reshape(num_tasks, -1)
            for g, p in zip(grads, shared, strict=True)
        ],
        dim=1,
    )


def representation_gradients(
    model: MultiTaskModel, inputs: Tensor, task_losses: Callable[[list[Tensor]], Tensor]
) -> Tensor:
    """``(T, B·D)``: row t is ∇_z L_t for the shared representation z = model.representation(inputs),
    flattened over the batch (MGDA-UB, Sener & Koltun 2018). ``task_losses`` maps the heads'
    outputs to the ``(T,)`` losses.

    As in the authors' code, z comes from a second trunk forward without a graph (the step's own
    forward does not expose z) and only the heads are differentiated: a trunk forward instead of T
    trunk backwards. That second forward also advances batch-norm running statistics and draws a
    fresh dropout mask, exactly as in the authors' code.
    """
    with torch.no_grad():
        z = model.representation(inputs)
    z = z.detach().requires_grad_(True)
    losses = task_losses(model.heads_forward(z))
    rows = []
    for loss in losses:
        (grad,) = torch.autograd.grad(loss, z, retain_graph=True, allow_unused=True)
        rows.append((grad if grad is not None else torch.zeros_like(z)).reshape(-1))
    return torch.stack(rows)


def backward_heads(losses: Tensor, model: MultiTaskModel, weights: Tensor | None = None) -> None:
    """Accumulate ∇_{θ_t} (w_t·L_t) into every head's ``.grad`` (w = 1 when ``weights`` is None).

    For solvers that set the shared gradient themselves: head t feeds only L_t, so one backward
    of Σ_t w_t L_t restricted to the heads' parameters gives each head its own task's gradient,
    and autograd does not traverse the trunk. Frees the graph."""
    heads = [p for t in range(len(losses)) for p in model.task_parameters(t)]
    if not heads:
        return
    total = losses.sum() if weights is None else (weights.detach().to(losses) * losses).sum()
    torch.autograd.backward(total, inputs=heads)


def assign_flat_gradient(flat: Tensor, params: list[nn.Parameter]) -> None:
    """Write a flattened gradient back into ``.grad`` of ``params`` (the inverse of the row layout above)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
    if offset != flat.numel():
        raise ValueError(f"flat gradient has {flat.numel()} entries, the parameters {offset}")
