"""IT-MTL: increased-transfer multi-task learning (Fifty et al. 2020, "Measuring and Harnessing
Transference in Multi-Task Learning", arXiv 2010.15413)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trials.affinity import Lookahead, isolated, lookahead_gains, step_function
from trials.gradients import assign_flat_gradient, backward_heads
from trials.lookahead import sgd_lookahead
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require
from trials.solvers.pcgrad import project_conflicting

_TASK = re.compile(r"^task:(\d+)$")
_NAMED = ("mean", "equal", "pcgrad")


def _valid_candidate(name: object) -> bool:
    return isinstance(name, str) and (name in _NAMED or _TASK.match(name) is not None)


@dataclass(frozen=True)
class ITMTLParams(Hyperparameters):
    # The shared directions compared at every step. The paper's pair: the total-loss gradient
    # ("mean") and the PCGrad direction. Also "equal" (the unweighted mean, whatever the member's
    # preference) and "task:<i>" (task i's gradient alone).
    candidates: tuple[str, ...] = ("mean", "pcgrad")
    # η of the lookahead θ_s − η·c. None: the member optimizer's current learning rate, so the
    # lookahead is the size of the step the optimizer is about to take with SGD (schedules included).
    lookahead_lr: float | None = None
    # "sgd": θ_s − η·c, the paper's lookahead. "optimizer": the member optimizer's real next update
    # for c (momentum, Adam moments), as TAG's CelebA code; then `lookahead_lr` must stay None.
    lookahead: str = "sgd"
    # Seed of PCGrad's per-step task order, a pure function of (seed, step) as in the pcgrad
    # solver: nothing to checkpoint, and the global RNG is not consumed.
    seed: int = 0

    def __post_init__(self) -> None:
        candidates = self.candidates
        ok = isinstance(candidates, list | tuple) and len(candidates) > 0
        allowed = 'a non-empty list of "mean", "equal", "pcgrad" or "task:<i>" without repeats'
        require(ok and all(_valid_candidate(c) for c in candidates), "itmtl", "candidates", candidates, allowed)
        require(len(set(candidates)) == len(candidates), "itmtl", "candidates", candidates, allowed)
        object.__setattr__(self, "candidates", tuple(candidates))
        lr = self.lookahead_lr
        lr_ok = lr is None or (isinstance(lr, int | float) and not isinstance(lr, bool) and 0 < lr < math.inf)
        require(lr_ok, "itmtl", "lookahead_lr", lr, "null (the optimizer's lr) or a float > 0")
        require(self.lookahead in ("sgd", "optimizer"), "itmtl", "lookahead", self.lookahead, "sgd or optimizer")
        require(
            self.lookahead == "sgd" or lr is None,
            "itmtl",
            "lookahead_lr",
            lr,
            'null with lookahead "optimizer" (the optimizer uses its own lr)',
        )
        seed_ok = isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0
        require(seed_ok, "itmtl", "seed", self.seed, "an integer >= 0")


class ITMTL(Solver):
    """Each step, build candidate directions for the shared parameters, look one step ahead
    along each on the current batch, and apply the one with the largest total transference

        Σ_j (1 − L_j(θ_s − η·c, θ_j) / L_j(θ_s, θ_j))

    (Fifty et al. 2020, §4: "increased transfer MTL"). The lookahead restores the parameters
    bitwise (trials/lookahead.py) and runs with the RNG forked and batch-norm buffers restored, so
    every candidate sees the same dropout mask and the training RNG is untouched.

    Candidates with the member's preference λ (uniform for a lone member): "mean" = Σ_t λ_t g_t
    (the linear scalarization's gradient; the mean gradient for uniform λ), "pcgrad" =
    Σ_t λ_t g_t^PC with PCGrad's projection (Yu et al. 2020; the paper sums, we weight by λ so
    that without conflicts it equals "mean"), "equal" = (1/T) Σ_t g_t, "task:<i>" = g_i. Heads
    get λ_t ∇_{θ_t} L_t, as under the linear scalarization. Cost: one loss evaluation per
    candidate plus one, on top of the per-task gradients.

    ``diagnostics()``: the fraction of the epoch's steps on which each candidate was applied.
    """

    name = "itmtl"
    paper = (
        "Fifty, Amid, Zhao, Yu, Anil, Finn. Measuring and Harnessing Transference in Multi-Task "
        "Learning. arXiv 2010.15413, 2020 (IT-MTL)"
    )
    Params = ITMTLParams
    params: ITMTLParams
    needs = Needs(task_gradients=True, loss_closure=True)

    def setup(self) -> None:
        for name in self.params.candidates:
            match = _TASK.match(name)
            if match is not None:
                task = int(match.group(1))
                require(task < self.num_tasks, "itmtl", "candidates", name, f"task:<i> with i < {self.num_tasks}")
        self.chosen = torch.zeros(len(self.params.candidates), dtype=torch.int64)  # counts this epoch
        self._last_epoch: Tensor | None = None  # counts of the finished epoch, for diagnostics()

    def order(self, step: int) -> Tensor:
        """PCGrad's task order at global step ``step``."""
        generator = torch.Generator().manual_seed(self.params.seed * 1_000_003 + step)
        return torch.randperm(self.num_tasks, generator=generator)

    def candidate_directions(self, task_gradients: Tensor, step: int) -> Tensor:
        """``(C, P)``: one row per entry of ``candidates``, in that order."""
        g = task_gradients.detach()
        weights = self.preference.to(g)
        rows = []
        for name in self.params.candidates:
            if name == "mean":
                rows.append(weights @ g)
            elif name == "equal":
                rows.append(g.mean(dim=0))
            elif name == "pcgrad":
                rows.append(weights @ project_conflicting(g, self.order(step)))
            else:
                rows.append(g[int(name.split(":")[1])])
        return torch.stack(rows)

    def transference(self, ctx: StepContext, candidates: Tensor) -> Tensor:
        """``(C,)``: the total lookahead transference of every candidate on this batch."""
        if ctx.closure is None:
            raise ValueError("itmtl needs the loss closure; the loop did not provide it")
        closure = ctx.closure
        shared = ctx.model.shared_parameters()
        if self.params.lookahead == "sgd" and self.params.lookahead_lr is not None:
            lr = self.params.lookahead_lr
            step_fn = lambda c: sgd_lookahead(shared, c, lr)  # noqa: E731
        else:
            kind: Lookahead = "optimizer" if self.params.lookahead == "optimizer" else "sgd"
            step_fn = step_function(kind, ctx.optimizer, shared)
        with isolated(ctx.model, shared[0].device) as reset_rng:

            def losses() -> Tensor:
                reset_rng()
                with torch.no_grad():
                    return closure().detach()

            base = losses()
            return torch.stack([lookahead_gains(shared, c, losses, step_fn, base).sum() for c in candidates])

    def backward(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise ValueError("itmtl needs the task gradients; the loop did not provide them")
        # Heads first: their backward uses the step's graph, which must not see the lookahead's
        # in-place parameter changes (restored, but autograd checks versions).
        backward_heads(ctx.losses, ctx.model, self.preference)
        shared = ctx.model.shared_parameters()
        if not shared:
            return
        candidates = self.candidate_directions(ctx.task_gradients, ctx.step)
        best = int(torch.argmax(self.transference(ctx, candidates)))  # first of equals: list order
        self.chosen[best] += 1
        assign_flat_gradient(candidates[best], shared)

    def end_epoch(self, epoch: int, mean_train_losses: Tensor) -> None:
        self._last_epoch = self.chosen.clone()
        self.chosen.zero_()

    def diagnostics(self) -> dict[str, float]:
        counts = self.chosen if self._last_epoch is None else self._last_epoch
        total = max(int(counts.sum()), 1)
        names = [name.replace(":", "_") for name in self.params.candidates]
        return {f"chosen/{name}": int(n) / total for name, n in zip(names, counts, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.chosen = state["chosen"].clone() if state else torch.zeros_like(self.chosen)
