"""GradNorm: learn task weights that balance the tasks' gradient norms on the last shared layer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel
from trials.solvers.base import Hyperparameters, Solver, StepContext, require

# Weights are floored here before the renormalization: a step of the weights' optimizer may
# overshoot below 0, and a negative weight would turn a task's descent into ascent.
_MIN_WEIGHT = 1e-4


@dataclass(frozen=True)
class GradNormParams(Hyperparameters):
    # Asymmetry: how strongly tasks that train slower (higher relative inverse training rate) get
    # larger gradients. 1.5 is the value the paper uses on NYUv2; 0 equalizes the norms outright.
    alpha: float = 1.5

    def __post_init__(self) -> None:
        value = self.alpha
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf
        require(ok, "gradnorm", "alpha", value, "a float >= 0")


class GradNorm(Solver):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

    The model trains on Σ_t w_t L_t. The weights w_t (``extra_parameters``: the member's
    optimizer steps them) are trained on

        L_grad = Σ_t | G_t − Ḡ · r_t^α |,   G_t = ‖∇_W w_t L_t‖ = w_t ‖∇_W L_t‖,

    with W the last shared layer, Ḡ = mean_t G_t, r_t = L̃_t / mean_j L̃_j the relative inverse
    training rate and L̃_t = L_t / L_t(0) (L_t(0): the losses of the member's first step). The target
    Ḡ·r_t^α is a constant (no gradient through it), and after every step the weights are
    renormalized to sum to T, as in the paper. At the fixed point the weighted gradient norms are
    in the ratio r_t^α: the method's defining property.

    Choices: W is the parameters of the last shared layer (the paper's choice, which keeps the
    cost at T small backward passes through the heads and that layer only). The member's
    preference multiplies the target by T·λ_t (our extension; the uniform preference is exactly
    the paper). Weights are floored at 1e-4 before renormalizing.
    """

    name = "gradnorm"
    paper = (
        "Chen, Badrinarayanan, Lee, Rabinovich. GradNorm: Gradient Normalization for Adaptive Loss "
        "Balancing in Deep Multitask Networks. ICML 2018 (arXiv 1711.02257)"
    )
    Params = GradNormParams
    params: GradNormParams

    def setup(self) -> None:
        self.task_weights = nn.Parameter(torch.ones(self.num_tasks))  # w_t(0) = 1, as in the paper
        self.initial_losses: Tensor | None = None  # L_t(0), float64 on the CPU
        self._last_norms: Tensor | None = None  # ‖∇_W L_t‖ of the latest step (diagnostics)

    def extra_parameters(self) -> list[nn.Parameter]:
        return [self.task_weights]

    def backward(self, ctx: StepContext) -> None:
        losses = ctx.losses
        if self.initial_losses is None:
            self.initial_losses = losses.detach().to(torch.float64).cpu().clone()
        norms = _gradient_norms(losses, last_shared_layer(ctx.model))  # ‖∇_W L_t‖, no graph
        self._last_norms = norms
        self._weights_loss(losses.detach().to(torch.float64).cpu(), self.initial_losses, norms).backward()
        # The model's gradient: the weights are constants here (they learn only from L_grad).
        (self.task_weights.detach().to(losses) * losses).sum().backward()

    def _weights_loss(self, losses: Tensor, initial_losses: Tensor, norms: Tensor) -> Tensor:
        """L_grad as a function of the weights (float64, CPU: T numbers)."""
        w = self.task_weights.to(torch.float64)
        weighted = w * norms  # G_t
        ratio = losses / initial_losses.clamp_min(1e-12)  # L̃_t (floored: a zero first loss)
        inverse_rate = ratio / ratio.mean()  # r_t
        target = weighted.mean().detach() * inverse_rate**self.params.alpha * self.num_tasks * self.preference
        return (weighted - target).abs().sum()

    def step(self, ctx: StepContext) -> None:
        ctx.optimizer.step()
        with torch.no_grad():  # in place: the optimizer holds this very Parameter
            w = self.task_weights.clamp_min(_MIN_WEIGHT)
            self.task_weights.copy_(self.num_tasks * w / w.sum())

    def weighted_norms(self) -> Tensor | None:
        """G_t = w_t ‖∇_W L_t‖ with the latest step's norms and the current weights."""
        if self._last_norms is None:
            return None
        return self.task_weights.detach().to(torch.float64) * self._last_norms

    def diagnostics(self) -> dict[str, float]:
        return {f"weight/t{t}": float(w) for t, w in enumerate(self.task_weights.detach())}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"task_weights": self.task_weights.detach().clone()}
        if self.initial_losses is not None:
            state["initial_losses"] = self.initial_losses.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        weights = state["task_weights"]
        if tuple(weights.shape) != (self.num_tasks,):
            shape = tuple(weights.shape)
            expected = (self.num_tasks,)
            raise ValueError(f"solver 'gradnorm': checkpoint holds weights of shape {shape}, expected {expected}")
        with torch.no_grad():
            self.task_weights.copy_(weights)
        initial = state.get("initial_losses")
        self.initial_losses = None if initial is None else initial.clone().to(torch.float64)


def last_shared_layer(model: MultiTaskModel) -> list[nn.Parameter]:
    """The parameters of the last trunk module that has any (e.g. LeNet's ``fc``): W in GradNorm."""
    named = [(name, p) for name, p in model.trunk.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("solver 'gradnorm': the model has no shared parameters")
    module = named[-1][0].rpartition(".")[0]
    return [p for name, p in named if name.rpartition(".")[0] == module]


def _gradient_norms(losses: Tensor, params: list[nn.Parameter]) -> Tensor:
    """``(T,)`` float64 on the CPU: ‖∇_params L_t‖ per task, keeping the graph for the model's backward."""
    norms = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        squares = [(g.detach().to(torch.float64) ** 2).sum() for g in grads if g is not None]
        norms.append(torch.stack(squares).sum().sqrt().cpu() if squares else torch.zeros((), dtype=torch.float64))
    return torch.stack(norms)
