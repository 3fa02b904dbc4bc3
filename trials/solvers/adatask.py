"""AdaTask: per-task adaptive learning rates on the shared parameters.

A plain adaptive optimizer (Adam, RMSProp, AdaGrad) accumulates one second moment per shared
parameter from the *summed* gradient, so the task with the largest gradients sets every shared
parameter's learning rate and the others are drowned out. AdaTask keeps a separate accumulator
per task for every shared parameter and sums the tasks' own normalized steps:

    Δθ_s = Σ_k  −lr · step_k,   step_k computed from g_k = ∇θs L_k with task k's own moments.

Each step_k is invariant to the scale of L_k (up to ``eps``), so multiplying one loss by 100 does
not change the trajectory. Task-specific (head) parameters see only their own loss, so the same
rule with one accumulator is plain Adam/RMSProp/AdaGrad on them.

Choices that the paper leaves to the implementer (documented because they differ from "let the
configured optimizer step"):

- AdaTask *is* the optimizer: it updates every model parameter itself in ``step``; the member's
  optimizer only steps on cleared gradients (a no-op, see ``step``). AdaTask reads only the
  current ``lr`` (and ``weight_decay``) of each parameter's group in
  ``ctx.optimizer.param_groups`` at every step, so learning-rate schedules (the member's
  scheduler writes ``group['lr']``) still apply. The optimizer's own algorithm is
  ignored: with ``optimizer.name = sgd`` the momentum is not used and the update is still
  AdaTask-Adam (or the chosen variant). Letting the configured optimizer step the heads would have
  mixed two update rules and made the heads' update depend on the optimizer while the shared
  parameters' did not.
- Weight decay from the group is applied decoupled (θ ← θ·(1 − lr·wd), as AdamW), once per
  parameter per step: adding L2 to every task's gradient would count it T times and, inside a
  normalized step, make it scale-dependent. The paper's code ignores weight decay.
- The member's preference is not used: a loss weight w_k cancels in task k's normalized step, so
  AdaTask is a single-solution method (every member of a population behaves alike).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trials.gradients import assign_flat_gradient
from trials.models import MultiTaskModel
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require

VARIANTS = ("adam", "rmsprop", "adagrad")


def _unit_interval(value: object) -> bool:
    """A float in [0, 1) (bools are refused: ``True`` is not a decay rate)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1


@dataclass(frozen=True)
class AdaTaskParams(Hyperparameters):
    variant: str = "adam"  # the paper's main variant and the only one in its released code
    beta1: float = 0.9  # Adam first-moment decay: the paper code's default (Adam's)
    beta2: float = 0.999  # Adam second-moment decay: the paper code's default (Adam's)
    # RMSProp smoothing constant. The paper gives no value; torch.optim.RMSprop's default.
    alpha: float = 0.99
    # Added to the root of the second moment: the paper code's 1e-8 (Adam's), used for all three
    # variants so that switching variant changes one thing only.
    eps: float = 1e-8
    # Decay of AU, the exponential average of each task's squared update (diagnostics only).
    # [reconstruction] the released optimizer code (adatask.py) does not compute AU, so the decay
    # is ours: 0.99 remembers ~100 steps, so each epoch's log reflects that epoch, not the run.
    au_decay: float = 0.99

    def __post_init__(self) -> None:
        require(self.variant in VARIANTS, "adatask", "variant", self.variant, f"one of {', '.join(VARIANTS)}")
        for field in ("beta1", "beta2", "alpha", "au_decay"):
            value = getattr(self, field)
            require(_unit_interval(value), "adatask", field, value, "a float in [0, 1)")
        require(
            isinstance(self.eps, int | float) and not isinstance(self.eps, bool) and 0 < self.eps < math.inf,
            "adatask",
            "eps",
            self.eps,
            "a float > 0",
        )


class AdaTask(Solver):
    """AdaTask (Yang et al., AAAI 2023): separate accumulative gradients per task for every shared
    parameter, in Adam, RMSProp or AdaGrad; the shared update is the sum of the tasks' own steps.

    ``diagnostics()`` reports the relative AU of every shared layer and task: AU is the
    exponentially decaying average of the squared update task k made on a parameter; relative AU
    divides it by the sum over tasks (1/T everywhere means no task dominates the layer). Per
    layer it is the mean over the layer's elements, as the paper measures AU per parameter.
    """

    name = "adatask"
    paper = (
        "Yang, Pan, Wang, Yu, Shen, Chen, Xiao, Jiang, Guo. AdaTask: A Task-aware Adaptive Learning "
        "Rate Approach to Multi-task Learning. AAAI 2023 (arXiv 2211.15055)"
    )
    Params = AdaTaskParams
    params: AdaTaskParams
    needs = Needs(task_gradients=True)

    def setup(self) -> None:
        self._step = 0
        # One entry per parameter slot: the shared parameters first (tensors of shape (T, *p.shape),
        # one accumulator per task), then every head's parameters in task order ((1, *p.shape)).
        self._exp_avg: list[Tensor] = []  # Adam's first moments (empty for the other variants)
        self._exp_avg_sq: list[Tensor] = []  # second moments (AdaGrad: the running sum of g²)
        self._au: list[Tensor] = []  # per shared parameter: (T, *p.shape) AU per element and task
        self._layers: list[str] = []  # per shared parameter: the layer it belongs to (for logging)

    # -- the update --------------------------------------------------------------------------
    def backward(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise RuntimeError("solver 'adatask' needs the per-task gradients of the shared parameters")
        heads = _head_parameters(ctx.model, self.num_tasks)
        if heads:
            # Head t only feeds L_t, so the gradient of the sum is each head's own-task gradient.
            grads = torch.autograd.grad(ctx.losses.sum(), heads, allow_unused=True)
            for p, g in zip(heads, grads, strict=True):
                p.grad = torch.zeros_like(p) if g is None else g
        # Not used by ``step`` (it reads the per-task rows); filled so that anything inspecting
        # .grad sees the usual equal-weight gradient.
        assign_flat_gradient(ctx.task_gradients.sum(0), ctx.model.shared_parameters())

    @torch.no_grad()
    def step(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise RuntimeError("solver 'adatask' needs the per-task gradients of the shared parameters")
        model, rows = ctx.model, ctx.task_gradients
        shared, heads = model.shared_parameters(), _head_parameters(model, self.num_tasks)
        self._ensure_state(model, shared, heads)
        self._step += 1
        hyper = _group_settings(ctx.optimizer)
        offset = 0
        for slot, p in enumerate(shared):
            n = p.numel()
            grads = rows[:, offset : offset + n].reshape(self.num_tasks, *p.shape).to(p)
            offset += n
            lr, weight_decay = _settings_of(hyper, p)
            updates = -lr * self._directions(slot, grads)  # (T, *shape): task k's own step
            _apply(p, updates.sum(0), lr, weight_decay)
            self._au[slot].mul_(self.params.au_decay).addcmul_(updates, updates, value=1 - self.params.au_decay)
        for index, p in enumerate(heads):
            grad = torch.zeros_like(p) if p.grad is None else p.grad
            lr, weight_decay = _settings_of(hyper, p)
            _apply(p, -lr * self._directions(len(shared) + index, grad[None])[0], lr, weight_decay)
        # Every parameter is updated; the member's optimizer now steps with no gradients, which
        # changes nothing (torch optimizers skip parameters whose .grad is None, weight decay and
        # momentum included) but records the step, so its scheduler runs in the order torch expects.
        for group in ctx.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        ctx.optimizer.step()

    def _directions(self, slot: int, grads: Tensor) -> Tensor:
        """Update the accumulators of ``slot`` with ``grads`` (one row per accumulator) and return
        each row's normalized step (to be multiplied by −lr)."""
        p, sq = self.params, self._exp_avg_sq[slot]
        if p.variant == "adam":
            avg = self._exp_avg[slot]
            avg.mul_(p.beta1).add_(grads, alpha=1 - p.beta1)
            sq.mul_(p.beta2).addcmul_(grads, grads, value=1 - p.beta2)
            correction1 = 1 - p.beta1**self._step
            correction2 = 1 - p.beta2**self._step
            return (avg / correction1) / (sq.sqrt() / math.sqrt(correction2) + p.eps)
        if p.variant == "rmsprop":
            sq.mul_(p.alpha).addcmul_(grads, grads, value=1 - p.alpha)
        else:  # adagrad: the accumulator is the plain sum of squared gradients
            sq.addcmul_(grads, grads)
        return grads / (sq.sqrt() + p.eps)

    def _ensure_state(self, model: MultiTaskModel, shared: list[nn.Parameter], heads: list[nn.Parameter]) -> None:
        """Create the accumulators at the first step, or check (and move) restored ones."""
        shapes = [(self.num_tasks, *p.shape) for p in shared] + [(1, *p.shape) for p in heads]
        like = list(shared) + list(heads)
        if not self._exp_avg_sq:
            self._exp_avg_sq = [
                torch.zeros(s, dtype=p.dtype, device=p.device) for s, p in zip(shapes, like, strict=True)
            ]
            if self.params.variant == "adam":
                self._exp_avg = [torch.zeros_like(v) for v in self._exp_avg_sq]
            self._au = [torch.zeros_like(v) for v in self._exp_avg_sq[: len(shared)]]
            self._layers = _layer_names(model, shared)
            return
        found = [tuple(v.shape) for v in self._exp_avg_sq]
        first_moments = len(like) if self.params.variant == "adam" else 0
        if found != shapes or len(self._au) != len(shared) or len(self._exp_avg) != first_moments:
            raise ValueError(
                f"solver 'adatask': restored state does not fit this model and variant "
                f"(accumulator shapes {found}, needed {shapes})"
            )
        # A checkpoint may have been written on another device.
        self._exp_avg = [v.to(p) for v, p in zip(self._exp_avg, like[:first_moments], strict=True)]
        self._exp_avg_sq = [v.to(p) for v, p in zip(self._exp_avg_sq, like, strict=True)]
        self._au = [v.to(p) for v, p in zip(self._au, shared, strict=True)]

    # -- diagnostics and state ---------------------------------------------------------------
    def relative_au(self) -> dict[str, Tensor]:
        """Per shared layer, ``(T,)``: the mean over the layer's elements of AU_k / Σ_j AU_j
        (elements no task has updated yet are left out)."""
        per_layer: dict[str, list[Tensor]] = {}
        for layer, au in zip(self._layers, self._au, strict=True):
            per_layer.setdefault(layer, []).append(au.reshape(self.num_tasks, -1))
        shares = {layer: relative_shares(torch.cat(parts, dim=1)) for layer, parts in per_layer.items()}
        return {layer: share for layer, share in shares.items() if share is not None}

    def diagnostics(self) -> dict[str, float]:
        return {
            f"au/{layer}/t{k}": float(share)
            for layer, shares in self.relative_au().items()
            for k, share in enumerate(shares)
        }

    def state_dict(self) -> dict[str, Any]:
        if not self._exp_avg_sq:
            return {}
        return {
            "step": self._step,
            "exp_avg": [v.clone() for v in self._exp_avg],
            "exp_avg_sq": [v.clone() for v in self._exp_avg_sq],
            "au": [v.clone() for v in self._au],
            "layers": list(self._layers),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.setup()
        if not state:
            return
        self._step = int(state["step"])
        self._exp_avg = [v.clone() for v in state["exp_avg"]]
        self._exp_avg_sq = [v.clone() for v in state["exp_avg_sq"]]
        self._au = [v.clone() for v in state["au"]]
        self._layers = [str(name) for name in state["layers"]]


def relative_shares(au: Tensor) -> Tensor | None:
    """``(T, N)`` AU of N elements → ``(T,)`` mean over elements of AU_k / Σ_j AU_j (the paper's
    relative AU, averaged over a layer). Elements no task has updated are left out; ``None`` when
    there are none."""
    au = au.to(torch.float64)
    total = au.sum(0)
    updated = total > 0
    if not bool(updated.any()):
        return None
    return (au[:, updated] / total[updated]).mean(1)


def _head_parameters(model: MultiTaskModel, num_tasks: int) -> list[nn.Parameter]:
    return [p for t in range(num_tasks) for p in model.task_parameters(t)]


def _group_settings(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    """``id(parameter) → (lr, weight_decay)`` of its group, read now so schedules apply."""
    return {
        id(p): (float(group["lr"]), float(group.get("weight_decay", 0.0)))
        for group in optimizer.param_groups
        for p in group["params"]
    }


def _settings_of(settings: dict[int, tuple[float, float]], p: nn.Parameter) -> tuple[float, float]:
    try:
        return settings[id(p)]
    except KeyError:
        raise ValueError("solver 'adatask': a model parameter is not in the member's optimizer (no lr)") from None


def _apply(p: nn.Parameter, update: Tensor, lr: float, weight_decay: float) -> None:
    if weight_decay:
        p.mul_(1 - lr * weight_decay)
    p.add_(update)


def _layer_names(model: MultiTaskModel, shared: list[nn.Parameter]) -> list[str]:
    """The layer of each shared parameter: its module path in the model without the trunk prefix
    (``trunk.conv1.weight`` → ``conv1``), reduced to MLflow-safe characters."""
    names = {id(p): name for name, p in model.named_parameters()}
    layers = []
    for p in shared:
        name = names.get(id(p), "shared")
        name = name.removeprefix("trunk.")
        layer = name.rsplit(".", 1)[0] if "." in name else name
        layers.append(re.sub(r"[^A-Za-z0-9_./-]", "_", layer))
    return layers
