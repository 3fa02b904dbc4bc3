"""The K members' forward and backward passes as one batched computation.

A population trains K small networks of one architecture on the same batch. Run one after the
other, a GPU sees K times the kernel launches of one model, each too small to fill it; batched,
it sees one model K times wider. This module keeps everything else of the population as it is:

- **Storage.** Each parameter is stacked across members into one ``(K, ...)`` leaf tensor, and
  every member's own ``nn.Parameter`` is re-pointed at its slice of that storage. The members'
  optimizers, schedulers, solvers, transfer and checkpoints keep working on the members' own
  parameters, in place, exactly as on the sequential path; the stack sees every change because
  it *is* the same memory.
- **Forward.** ``torch.func.vmap`` over ``functional_call`` of one member's module with the
  stacked parameters gives the ``(K, T)`` task losses in one pass.
- **Backward.** Each member's solver computes its update from a detached copy of its own losses
  (solvers that declare ``losses_only``: their update is a function of the losses alone), which
  yields ∂f_k/∂L_k; one backward of the batched losses with those as output gradients fills the
  stacked gradients, by the chain rule the same gradient each member's own backward would give.
  The members' ``.grad`` are then views of their slices, and each optimizer steps as usual.

Numerically the batched path equals the sequential one to float tolerance, not bit for bit (a
batched convolution sums in another order); tests/unit/trials/test_batched_population.py checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from trials.solvers import Solver
from trials.solvers.base import Needs

LossFunction = Callable[[nn.Module, dict[str, Tensor]], Tensor]  # (template, params) -> (T,) losses


def batching_obstacle(models: Sequence[nn.Module], solvers: Sequence[Solver]) -> str | None:
    """Why these members cannot run batched, or ``None`` when they can."""
    if len(models) < 2:
        return "a population of one member has nothing to batch"
    for solver in solvers:
        if not solver.losses_only or solver.needs != Needs():
            return f"solver '{solver.name}' reads more than its losses (per-task gradients or the model itself)"
    if any(True for _ in models[0].buffers()):
        # Buffers (e.g. batch-norm statistics) are updated in place during the forward pass, which
        # vmap cannot do for K members at once.
        return "the model has buffers (e.g. batch norm)"
    shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        return "the members' models differ in their parameters"
    return None


class StackedMembers:
    """The members' parameters as ``(K, ...)`` leaves that share memory with each member's own."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = list(models)
        self.template = self.models[0]
        per_member = [dict(m.named_parameters()) for m in self.models]
        with torch.no_grad():
            self.stacked: dict[str, Tensor] = {
                name: torch.stack([params[name].detach() for params in per_member]).requires_grad_(p.requires_grad)
                for name, p in self.template.named_parameters()
            }
        self._point_members_at_stack()

    def _point_members_at_stack(self) -> None:
        for k, model in enumerate(self.models):
            for name, p in model.named_parameters():
                p.data = self.stacked[name].data[k]

    def relink(self) -> None:
        """Re-point any member parameter whose tensor was replaced (``p.data = ...`` by someone) at
        the stack, keeping its current values; in-place updates (optimizers, ``load_state_dict``,
        transfer) never need this, so it is a cheap pointer check per step."""
        with torch.no_grad():
            for k, model in enumerate(self.models):
                for name, p in model.named_parameters():
                    slot = self.stacked[name].data[k]
                    if p.data_ptr() != slot.data_ptr() or p.shape != slot.shape:
                        slot.copy_(p.data)
                        p.data = slot

    def losses(self, loss_of: LossFunction) -> Tensor:
        """``(K, T)`` task losses of every member, attached to the stacked leaves."""
        self.relink()
        for leaf in self.stacked.values():
            leaf.grad = None
        return vmap(lambda params: loss_of(self.template, params), randomness="error")(self.stacked)

    def hand_out_gradients(self) -> None:
        """Give every member's parameters their slice of the stacked gradients (views, no copy)."""
        for k, model in enumerate(self.models):
            for name, p in model.named_parameters():
                grad = self.stacked[name].grad
                p.grad = None if grad is None else grad[k]


def batched_backward(losses: Tensor, per_member: Callable[[int, Tensor], None]) -> None:
    """Backward of the ``(K, T)`` batched ``losses``: ``per_member(k, proxy)`` runs member k's solver on
    ``proxy``, a detached ``(T,)`` copy of its losses that requires grad; the gradients the solvers leave
    on the proxies then flow through the batched graph in one backward."""
    proxies = losses.detach().clone().requires_grad_(True)
    for k in range(losses.shape[0]):
        per_member(k, proxies[k])
    if proxies.grad is None:
        raise RuntimeError("no solver produced a gradient of its losses; nothing to train")
    torch.autograd.backward(losses, grad_tensors=proxies.grad)


def functional_losses(task_losses: Callable[[Sequence[Tensor]], Tensor], inputs: Tensor) -> LossFunction:
    """The loss function vmap maps over: the template module run with one member's parameters."""

    def loss_of(template: nn.Module, params: dict[str, Tensor]) -> Tensor:
        return task_losses(functional_call(template, params, (inputs,)))

    return loss_of
