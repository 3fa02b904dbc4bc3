"""PCGrad: projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task Learning",
NeurIPS 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trials.gradients import assign_flat_gradient, backward_heads
from trials.solvers.base import Hyperparameters, Needs, Solver, StepContext, require


@dataclass(frozen=True)
class PCGradParams(Hyperparameters):
    # Seed of the per-step task order. The order of step s is drawn from a generator seeded with
    # (seed, s), so a resumed run draws exactly the orders it would have drawn: no RNG state to
    # checkpoint, and members of a population see the same orders.
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
            "pcgrad",
            "seed",
            self.seed,
            "an integer >= 0",
        )


def project_conflicting(gradients: Tensor, order: Tensor) -> Tensor:
    """``(T, P)``: row i is g_i^PC, Yu et al.'s Algorithm 1. Starting from g_i, for each g_j in
    ``order`` (j ≠ i) with ⟨g_i^PC, g_j⟩ < 0, remove the component along g_j:
    g_i^PC ← g_i^PC − ⟨g_i^PC, g_j⟩/‖g_j‖² · g_j. Projections are against the original g_j."""
    g = gradients.detach().to(torch.float64)
    sq_norms = (g * g).sum(dim=1)
    projected = g.clone()
    for i in range(g.shape[0]):
        for j in order.tolist():
            if j == i or sq_norms[j] == 0:
                continue
            dot = projected[i] @ g[j]
            if dot < 0:
                projected[i] -= (dot / sq_norms[j]) * g[j]
    return projected.to(gradients.dtype)


class PCGrad(Solver):
    """Shared parameters get Σ_i g_i^PC, where each task's gradient has its conflicting
    components (negative inner product) with the other tasks' gradients projected away, the
    other tasks visited in a random order per step (the paper's Algorithm 1; the update is the
    sum, as in the paper). Gradients that do not conflict are left alone, so without conflicts
    this is plain equal-weight summation. Heads get their own task gradients.
    """

    name = "pcgrad"
    paper = "Yu, Kumar, Gupta, Levine, Hausman, Finn, Gradient Surgery for Multi-Task Learning, NeurIPS 2020"
    Params = PCGradParams
    params: PCGradParams
    needs = Needs(task_gradients=True)

    def order(self, step: int) -> Tensor:
        """The random task order of global step ``step`` (a pure function of seed and step)."""
        generator = torch.Generator().manual_seed(self.params.seed * 1_000_003 + step)
        return torch.randperm(self.num_tasks, generator=generator)

    def backward(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise ValueError("pcgrad needs the task gradients; the loop did not provide them")
        projected = project_conflicting(ctx.task_gradients, self.order(ctx.step))
        assign_flat_gradient(projected.sum(dim=0), ctx.model.shared_parameters())
        backward_heads(ctx.losses, ctx.model)
