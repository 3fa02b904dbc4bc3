"""The shared part of the solvers that wrap torchjd's aggregators (upgrad.py, imtl_g.py, nash_mtl.py).

Each solver turns the loop's ``(T, P)`` shared-parameter Jacobian J into task weights w with a
torchjd weighting, sets the shared gradient to wᵀJ (exactly what torchjd's aggregator returns:
all three are weighted aggregators) and gives every head its own task's gradient. torchjd is
imported lazily in ``setup`` (with cvxpy it costs about a second), so listing solvers stays cheap.
The version is pinned in pyproject.toml; the Nash-MTL wrapper reads torchjd's private state for
checkpoints, which the pin keeps valid.
"""

from __future__ import annotations

from importlib.metadata import version

from torch import Tensor

from trials.gradients import assign_flat_gradient, backward_heads
from trials.solvers.base import Needs, Solver, StepContext

TORCHJD = f"torchjd {version('torchjd')}"


class TorchJDSolver(Solver):
    """Shared part of the wrappers: weights from the Jacobian, shared gradient wᵀJ, heads their own."""

    needs = Needs(task_gradients=True)
    implementation = TORCHJD

    def setup(self) -> None:
        self.last_weights: Tensor | None = None  # for diagnostics only

    def weights(self, jacobian: Tensor) -> Tensor:
        """``(T,)`` weights of the rows of the ``(T, P)`` Jacobian (on the CPU)."""
        raise NotImplementedError

    def backward(self, ctx: StepContext) -> None:
        if ctx.task_gradients is None:
            raise ValueError(f"{self.name} needs the task gradients; the loop did not provide them")
        jacobian = ctx.task_gradients.detach()
        w = self.weights(jacobian)
        assign_flat_gradient(w.to(jacobian) @ jacobian, ctx.model.shared_parameters())
        backward_heads(ctx.losses, ctx.model)  # each head: its own task's plain gradient
        self.last_weights = w

    def diagnostics(self) -> dict[str, float]:
        if self.last_weights is None:
            return {}
        return {f"weight_t{t}": float(v) for t, v in enumerate(self.last_weights)}
