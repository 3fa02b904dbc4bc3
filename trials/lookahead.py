"""One-step lookahead: try an update on some parameters, evaluate, and put everything back exactly.

Transference (Fifty et al. 2020) and TAG's inter-task affinity (Fifty et al. 2021) ask "what would
the losses be after this step?" without taking the step. :func:`temporarily` sets parameters to
given values, runs the caller's evaluation and restores the saved values with ``copy_``, so the
parameters are bitwise what they were (tests check ``torch.equal``), even when the evaluation
raises.

Two ways to turn a gradient ``g`` into lookahead values:

- :func:`sgd_lookahead`: θ' = θ − η·g, the plain step of the affinity definition; for small η
  its first-order effect on a loss L_j is −η⟨g, ∇L_j⟩.
- :func:`optimizer_lookahead`: the update the member's own optimizer would apply next for ``g``,
  momentum, Adam moments, weight decay and the current (scheduled) learning rate included (TAG's
  CelebA code does this). Choice: a *shadow* optimizer of the same class steps detached copies of
  the parameters with a deep copy of their optimizer state and the same group hyperparameters.
  The real optimizer and parameters are never touched (no save/restore of optimizer state to get
  wrong), and any ``torch.optim`` optimizer works without re-deriving its update rule. The cost is
  one copy of the parameters and their state per lookahead.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """The tensors as one flat vector (the row layout of ``trials.gradients.task_gradients``)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (the inverse of :func:`flatten`)."""
    sizes = [t.numel() for t in like]
    if sum(sizes) != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} entries, the tensors {sum(sizes)}")
    return [chunk.view_as(t) for chunk, t in zip(torch.split(flat, sizes), like, strict=True)]


@contextmanager
def temporarily(params: Sequence[nn.Parameter], values: Sequence[Tensor]) -> Iterator[None]:
    """Inside the block ``params`` hold ``values``; on exit (normal or by an exception) they hold
    their previous values again, bit for bit."""
    if len(params) != len(values):
        raise ValueError(f"{len(values)} lookahead values for {len(params)} parameters")
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, v in zip(params, values, strict=True):
                p.copy_(v)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)


def sgd_lookahead(params: Sequence[nn.Parameter], grad: Tensor, lr: float) -> list[Tensor]:
    """θ − lr·g for a flat gradient ``grad`` over ``params``."""
    flat = flatten([p.detach() for p in params])
    return unflatten(flat - lr * grad.to(flat), params)


def current_lr(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> float:
    """The learning rate the optimizer will use next for ``param`` (schedulers write it into the group)."""
    return float(_group_of(optimizer, param)["lr"])


def optimizer_lookahead(optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter], grad: Tensor) -> list[Tensor]:
    """The values ``params`` would have after ``optimizer`` stepped with gradient ``grad`` (flat)
    on them, computed on a shadow copy: the optimizer's state and the parameters are unchanged."""
    shadows = [p.detach().clone().requires_grad_(True) for p in params]
    for shadow, g in zip(shadows, unflatten(grad.detach(), params), strict=True):
        shadow.grad = g.clone().to(shadow)
    groups = []
    for p, shadow in zip(params, shadows, strict=True):
        hyper = {k: v for k, v in _group_of(optimizer, p).items() if k != "params"}
        groups.append({"params": [shadow], **copy.deepcopy(hyper)})
    # Every group already carries all hyperparameters (torch fills them in), so the constructor's
    # keyword arguments only need to be accepted; some classes (AdamW) keep defaults they refuse.
    accepted = inspect.signature(type(optimizer)).parameters
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    shadow_optimizer = type(optimizer)(groups, **copy.deepcopy(defaults))
    for p, shadow in zip(params, shadows, strict=True):
        if p in optimizer.state:
            shadow_optimizer.state[shadow] = copy.deepcopy(optimizer.state[p])
    shadow_optimizer.step()
    return [s.detach() for s in shadows]


def _group_of(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> dict[str, Any]:
    for group in optimizer.param_groups:
        if any(q is param for q in group["params"]):
            return group
    raise ValueError("the parameter is not optimized by this optimizer")
