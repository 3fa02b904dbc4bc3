"""Linear and Tchebycheff scalarization: the contract, and each one's defining property."""

from __future__ import annotations

import pytest
import torch

from trials.solvers import InvalidHyperparameterError, build_solver
from trials.solvers.tchebycheff import TchebycheffScalarization
from trials.testing.contract import SolverContract


class TestLinear(SolverContract):
    solver = "linear"


class TestTchebycheff(SolverContract):
    solver = "tchebycheff"
    valid_params = {"margin": 0.01}
    invalid_params = [
        ({"margin": -1.0}, "margin"),
        ({"ideal": (0.0, float("nan"))}, "ideal"),
        ({"ideal": (0.0,)}, "ideal"),
    ]


def _grad_of(solver_name: str, losses_fn, params: dict | None = None, preference=(0.25, 0.75)) -> torch.Tensor:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    solver = build_solver(solver_name, 2, torch.tensor(preference), params)
    from trials.solvers.base import StepContext

    solver.backward(StepContext(losses=losses_fn(x), model=None, optimizer=None, step=0))  # type: ignore[arg-type]
    return x.grad


def test_linear_gradient_is_the_preference_weighted_sum() -> None:
    grad = _grad_of("linear", lambda x: torch.stack([x[0] ** 2, 3 * x[1]]))
    assert torch.allclose(grad, torch.tensor([0.25 * 2 * 1.0, 0.75 * 3.0]))


def test_tchebycheff_follows_only_the_worst_weighted_task() -> None:
    # λ·(L − z) with z = 0: 0.25·1 = 0.25 vs 0.75·6 = 4.5, so only task 2 gets gradient.
    grad = _grad_of("tchebycheff", lambda x: torch.stack([x[0] ** 2, 3 * x[1]]), {"ideal": (0.0, 0.0)})
    assert torch.allclose(grad, torch.tensor([0.0, 0.75 * 3.0]))


def test_tchebycheff_running_minimum_is_state() -> None:
    solver = TchebycheffScalarization(2, torch.tensor([0.5, 0.5]))
    from trials.solvers.base import StepContext

    for values in ([3.0, 2.0], [1.0, 4.0]):
        losses = torch.tensor(values, requires_grad=True)
        solver.backward(StepContext(losses=losses, model=None, optimizer=None, step=0))  # type: ignore[arg-type]
    assert solver.state_dict()["running_min"].tolist() == [1.0, 2.0]
    restored = TchebycheffScalarization(2, torch.tensor([0.5, 0.5]))
    restored.load_state_dict(solver.state_dict())
    assert torch.equal(restored.running_min, solver.running_min)


def test_unknown_solver_lists_allowed() -> None:
    with pytest.raises(ValueError, match=r"solver 'nope' is unknown; allowed: .*linear.*tchebycheff"):
        build_solver("nope", 2, torch.tensor([0.5, 0.5]))


def test_preference_shape_is_checked() -> None:
    with pytest.raises(InvalidHyperparameterError, match=r"preference must have shape \(2,\), found \(3,\)"):
        build_solver("linear", 2, torch.tensor([0.2, 0.3, 0.5]))
