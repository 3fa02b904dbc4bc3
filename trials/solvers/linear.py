"""Linear scalarization: minimize Σ_t λ_t L_t."""

from __future__ import annotations

from trials.solvers.base import Solver, StepContext, backward_weighted


class LinearScalarization(Solver):
    """Weighted sum of the task losses with the member's preference vector as weights.

    With one member and no preference given, the preference is uniform: equal weighting.
    Finds only the convex part of a Pareto front (the classic limitation; see Das & Dennis 1997).
    """

    name = "linear"
    paper = "Linear scalarization (weighted sum); e.g. Miettinen, Nonlinear Multiobjective Optimization, 1999"
    losses_only = True  # the update is a function of the losses alone: may run batched

    def backward(self, ctx: StepContext) -> None:
        backward_weighted(ctx.losses, self.preference)
