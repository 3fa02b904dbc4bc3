"""MGDA, PCGrad and CAGrad: the solver contract, and each method's defining property."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from trials.gradients import (
    backward_heads,
    representation_gradients,
    task_gradients,
    task_gradients_batched,
)
from trials.min_norm import gram_matrix, min_norm_weights
from trials.models import MultiTaskModel
from trials.problems.base import Batch
from trials.solvers import build_solver
from trials.solvers.base import Needs, StepContext
from trials.solvers.cagrad import cagrad_direction, project_to_simplex
from trials.solvers.mgda import MGDA
from trials.solvers.pcgrad import PCGrad, project_conflicting
from trials.testing.contract import ConflictingRegression, SolverContract

# ---------------------------------------------------------------------------------------------
# contract
# ---------------------------------------------------------------------------------------------


class TestMGDA(SolverContract):
    solver = "mgda"
    valid_params = {"mode": "params", "normalization": "none"}
    invalid_params = [({"mode": "weights"}, "mode"), ({"normalization": "l1"}, "normalization")]


class TestMGDAThreeTasksL2(SolverContract):
    solver = "mgda"
    num_tasks = 3  # the Frank–Wolfe path, not the two-vector closed form
    valid_params = {"normalization": "l2"}


class TestMGDAUpperBound(SolverContract):
    solver = "mgda"
    valid_params = {"mode": "rep", "normalization": "loss+"}


class TestPCGrad(SolverContract):
    solver = "pcgrad"
    num_tasks = 3
    valid_params = {"seed": 3}
    invalid_params = [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": True}, "seed")]


class TestCAGrad(SolverContract):
    solver = "cagrad"
    num_tasks = 3
    valid_params = {"c": 0.5, "rescale": "1+c^2"}
    invalid_params = [({"c": 1.0}, "c"), ({"c": -0.1}, "c"), ({"rescale": "2"}, "rescale")]


# ---------------------------------------------------------------------------------------------
# helpers: one real step's context on the contract toy
# ---------------------------------------------------------------------------------------------


def _context(num_tasks: int, needs: Needs, seed: int = 0) -> tuple[StepContext, Tensor]:
    """A step context on the contract toy with what ``needs`` asks for, and the (T, P) task
    gradients of the shared parameters (always, for checking)."""
    torch.manual_seed(seed)
    problem = ConflictingRegression(num_tasks, seed=seed)
    model = problem.make_model()
    batch = next(iter(problem.train_batches(torch.Generator().manual_seed(seed))))
    losses = problem.task_losses(model(batch.inputs), batch)
    rows = task_gradients(losses, model.shared_parameters())
    ctx = StepContext(
        losses=losses,
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        step=0,
        task_gradients=rows if needs.task_gradients else None,
        representation_gradients=(
            representation_gradients(model, batch.inputs, lambda outs: problem.task_losses(outs, batch))
            if needs.representation_gradients
            else None
        ),
    )
    return ctx, rows


def _shared_grad(model: MultiTaskModel) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])


def _head_grads(model: MultiTaskModel, t: int) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.task_parameters(t)])


def _own_head_gradient(model: MultiTaskModel, losses: Tensor, t: int) -> Tensor:
    grads = torch.autograd.grad(losses[t], model.task_parameters(t), retain_graph=True)
    return torch.cat([g.reshape(-1) for g in grads])


# ---------------------------------------------------------------------------------------------
# per-task gradients and head gradients
# ---------------------------------------------------------------------------------------------


def test_batched_task_gradients_equal_the_loop() -> None:
    ctx, rows = _context(3, Needs())
    batched = task_gradients_batched(ctx.losses, ctx.model.shared_parameters())
    assert torch.allclose(rows, batched, rtol=1e-6, atol=1e-7)


def test_representation_gradients_are_per_task_gradients_of_z() -> None:
    torch.manual_seed(0)
    problem = ConflictingRegression(2)
    model = problem.make_model()
    batch = Batch(problem.x[:8], tuple(problem.y[:8, t] for t in range(2)))
    got = representation_gradients(model, batch.inputs, lambda outs: problem.task_losses(outs, batch))
    z = model.representation(batch.inputs).detach().requires_grad_(True)
    losses = problem.task_losses(model.heads_forward(z), batch)
    for t in range(2):
        (expected,) = torch.autograd.grad(losses[t], z, retain_graph=True)
        assert torch.allclose(got[t], expected.reshape(-1))
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated on the model


def test_backward_heads_gives_each_head_its_weighted_task_gradient_and_leaves_the_trunk() -> None:
    ctx, _ = _context(3, Needs())
    expected = [_own_head_gradient(ctx.model, ctx.losses, t) for t in range(3)]
    weights = torch.tensor([0.2, 0.0, 3.0])
    backward_heads(ctx.losses, ctx.model, weights)
    for t in range(3):
        assert torch.allclose(_head_grads(ctx.model, t), weights[t] * expected[t])
    assert all(p.grad is None for p in ctx.model.shared_parameters())


# ---------------------------------------------------------------------------------------------
# MGDA
# ---------------------------------------------------------------------------------------------


def _assert_min_norm_kkt(rows: Tensor, d: Tensor, weights: Tensor, tol: float = 1e-9) -> None:
    """d = Σ w_t g_t is the min-norm element of the hull: ⟨d, g_t⟩ ≥ ‖d‖² − tol for all t and
    = ‖d‖² where w_t > 0 (tol relative to max_t ‖g_t‖²)."""
    g, d = rows.to(torch.float64), d.to(torch.float64)
    scale = float((g * g).sum(1).max())
    inner, sq = g @ d, d @ d
    assert float((sq - inner).max()) <= tol * scale
    assert float((inner[weights > 0] - sq).abs().max()) <= tol * scale


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_mgda_shared_gradient_is_the_min_norm_element(num_tasks: int) -> None:
    ctx, rows = _context(num_tasks, MGDA.needs)
    solver = build_solver("mgda", num_tasks, torch.full((num_tasks,), 1 / num_tasks))
    heads = [_own_head_gradient(ctx.model, ctx.losses, t) for t in range(num_tasks)]
    solver.backward(ctx)
    d, w = _shared_grad(ctx.model), solver.last_weights
    # float32 gradients: the KKT equalities hold to float32 round-off of ‖g‖² (~1e-7 relative)
    _assert_min_norm_kkt(rows, d, w, tol=1e-6)
    assert torch.allclose(d.double(), w @ rows.double(), rtol=1e-5, atol=1e-7)
    # heads as in the paper's code: the gradient of Σ w_t L_t, i.e. w_t times their own
    for t in range(num_tasks):
        assert torch.allclose(_head_grads(ctx.model, t), w[t].float() * heads[t], atol=1e-7)


def test_mgda_two_tasks_uses_the_exact_closed_form() -> None:
    ctx, rows = _context(2, MGDA.needs, seed=4)
    solver = build_solver("mgda", 2, torch.tensor([0.5, 0.5]))
    solver.backward(ctx)
    g = rows.double()
    a = min(max(float(((g[1] - g[0]) @ g[1]) / ((g[0] - g[1]) @ (g[0] - g[1]))), 0.0), 1.0)
    assert solver.last_weights.tolist() == pytest.approx([a, 1 - a], abs=1e-12)


def test_mgda_l2_normalization_weighs_two_unit_gradients_equally() -> None:
    # the min-norm point of two unit vectors is their midpoint, whatever their scales
    ctx, rows = _context(2, MGDA.needs)
    solver = build_solver("mgda", 2, torch.tensor([0.5, 0.5]), {"normalization": "l2"})
    solver.backward(ctx)
    assert solver.last_weights.tolist() == pytest.approx([0.5, 0.5], abs=1e-12)
    assert torch.allclose(_shared_grad(ctx.model), 0.5 * rows.sum(0), atol=1e-6)


def test_mgda_loss_normalizations_divide_by_the_loss() -> None:
    ctx, rows = _context(3, MGDA.needs)
    loss, norms = ctx.losses.detach().double(), rows.double().norm(dim=1)
    for normalization, divisor in (("loss", loss), ("loss+", loss * norms)):
        solver = build_solver("mgda", 3, torch.full((3,), 1 / 3), {"normalization": normalization})
        expected = min_norm_weights(gram_matrix(rows.double() / divisor[:, None])).weights
        assert torch.allclose(solver.weights(rows, ctx.losses), expected, atol=1e-12)


def test_mgda_upper_bound_takes_min_norm_weights_of_the_representation_gradients() -> None:
    solver = build_solver("mgda", 3, torch.full((3,), 1 / 3), {"mode": "rep"})
    assert solver.needs == Needs(representation_gradients=True)  # per instance: no parameter rows
    ctx, rows = _context(3, solver.needs)
    assert ctx.task_gradients is None
    solver.backward(ctx)
    z_rows, w = ctx.representation_gradients, solver.last_weights
    _assert_min_norm_kkt(z_rows, w.float() @ z_rows, w, tol=1e-6)
    # the weights chosen on z are applied to the losses: shared gradient Σ w_t g_t
    assert torch.allclose(_shared_grad(ctx.model).double(), w @ rows.double(), rtol=1e-5, atol=1e-7)


def test_mgda_without_its_gradients_says_so() -> None:
    ctx, _ = _context(2, Needs())
    with pytest.raises(ValueError, match="mgda needs the task gradients"):
        build_solver("mgda", 2, torch.tensor([0.5, 0.5])).backward(ctx)


# ---------------------------------------------------------------------------------------------
# PCGrad
# ---------------------------------------------------------------------------------------------


def test_pcgrad_two_tasks_leave_no_conflict() -> None:
    g = torch.Generator().manual_seed(0)
    conflicts = 0
    for _ in range(200):
        rows = torch.randn(2, 6, generator=g, dtype=torch.float64) * torch.rand(2, 1, generator=g, dtype=torch.float64)
        projected = project_conflicting(rows, torch.randperm(2, generator=g))
        scale = float((rows * rows).sum(1).max())
        for i, j in ((0, 1), (1, 0)):
            assert float(projected[i] @ rows[j]) >= -1e-12 * scale
        if float(rows[0] @ rows[1]) < 0:
            conflicts += 1
            # Yu et al.'s two-task case: the projection leaves each exactly orthogonal to the other
            assert abs(float(projected[0] @ rows[1])) <= 1e-12 * scale
            assert abs(float(projected[1] @ rows[0])) <= 1e-12 * scale
    assert 50 < conflicts < 150  # both cases were exercised


def test_pcgrad_last_projection_removes_that_conflict_for_many_tasks() -> None:
    # With T > 2 an earlier conflict can come back after a later projection (the paper proves
    # the property for T = 2); the conflict with the last gradient projected against cannot.
    g = torch.Generator().manual_seed(1)
    for _ in range(100):
        rows = torch.randn(4, 5, generator=g, dtype=torch.float64)
        order = torch.randperm(4, generator=g)
        projected = project_conflicting(rows, order)
        for i in range(4):
            last = [j for j in order.tolist() if j != i][-1]
            assert float(projected[i] @ rows[last]) >= -1e-12 * float((rows * rows).sum(1).max())


def test_pcgrad_without_conflicts_is_the_plain_sum() -> None:
    rows = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])  # pairwise ⟨·,·⟩ ≥ 0
    for order in ([0, 1, 2], [2, 0, 1]):
        assert torch.equal(project_conflicting(rows, torch.tensor(order)).sum(0), rows.sum(0))
    ctx, rows = _context(2, PCGrad.needs)
    solver = build_solver("pcgrad", 2, torch.tensor([0.5, 0.5]))
    heads = [_own_head_gradient(ctx.model, ctx.losses, t) for t in range(2)]
    solver.backward(ctx)
    expected = project_conflicting(rows, solver.order(0)).sum(0)
    assert torch.allclose(_shared_grad(ctx.model), expected)
    for t in range(2):  # heads: their own, unweighted task gradient
        assert torch.allclose(_head_grads(ctx.model, t), heads[t])


def test_pcgrad_order_is_a_function_of_seed_and_step() -> None:
    a = build_solver("pcgrad", 5, torch.full((5,), 0.2), {"seed": 1})
    b = build_solver("pcgrad", 5, torch.full((5,), 0.2), {"seed": 1})
    assert all(torch.equal(a.order(s), b.order(s)) for s in range(20))
    assert len({tuple(a.order(s).tolist()) for s in range(20)}) > 5  # it does shuffle
    c = build_solver("pcgrad", 5, torch.full((5,), 0.2), {"seed": 2})
    assert any(not torch.equal(a.order(s), c.order(s)) for s in range(20))


# ---------------------------------------------------------------------------------------------
# CAGrad
# ---------------------------------------------------------------------------------------------


def test_cagrad_with_c_zero_is_the_average_gradient() -> None:
    ctx, rows = _context(3, Needs(task_gradients=True))
    solver = build_solver("cagrad", 3, torch.full((3,), 1 / 3), {"c": 0.0})
    heads = [_own_head_gradient(ctx.model, ctx.losses, t) for t in range(3)]
    solver.backward(ctx)
    assert torch.equal(_shared_grad(ctx.model), rows.double().mean(0).float())
    for t in range(3):
        assert torch.allclose(_head_grads(ctx.model, t), heads[t])


def test_cagrad_direction_solves_the_conflict_averse_problem() -> None:
    """max_d min_t ⟨g_t, d⟩ s.t. ‖d − g0‖ ≤ c‖g0‖: d is feasible, improves the worst task over
    g0, and its value meets the dual bound F(w) (weak duality: no feasible d does better)."""
    g = torch.Generator().manual_seed(0)
    improved = 0
    for _ in range(150):
        tasks = int(torch.randint(2, 6, (1,), generator=g))
        rows = torch.randn(tasks, 20, generator=g, dtype=torch.float64) * torch.rand(
            tasks, 1, generator=g, dtype=torch.float64
        )
        c = float(torch.rand(1, generator=g)) * 0.99
        result = cagrad_direction(rows, c)
        d, g0 = result.direction, rows.mean(0)
        scale = float((rows * rows).sum(1).max())
        assert result.reason == "converged"
        assert float((d - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-12) + 1e-15
        worst_d, worst_g0 = float((rows @ d).min()), float((rows @ g0).min())
        assert worst_d >= worst_g0 - 1e-12 * scale
        improved += worst_d > worst_g0 + 1e-6 * scale
        assert result.dual_value - worst_d <= 1e-6 * scale  # duality gap: d is optimal
    assert improved > 100


def test_cagrad_rescales_the_direction() -> None:
    _, rows = _context(3, Needs(task_gradients=True))
    d = cagrad_direction(rows, 0.5).direction
    for rescale, divisor in (("none", 1.0), ("1+c^2", 1.25), ("1+c", 1.5)):
        solver = build_solver("cagrad", 3, torch.full((3,), 1 / 3), {"c": 0.5, "rescale": rescale})
        assert torch.allclose(solver.direction(rows), d / divisor)


def test_project_to_simplex() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=5) * 3
        p = project_to_simplex(v)
        assert bool((p >= 0).all()) and abs(float(p.sum()) - 1) < 1e-12
        # optimality (KKT): v − p is one constant θ on the support and ≤ θ off it
        r = v - p
        theta = float(r[p > 0].mean())
        assert np.allclose(r[p > 0], theta, atol=1e-12)
        assert bool((r[p == 0] <= theta + 1e-12).all())
