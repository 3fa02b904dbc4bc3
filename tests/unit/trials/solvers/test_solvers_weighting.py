"""Loss-weighting baselines: uncertainty weighting, DWA and GradNorm. The contract, and each one's property."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trials.models import MultiTaskModel, ParameterVector
from trials.population import Population
from trials.solvers import StepContext, build_solver
from trials.solvers.dwa import DynamicWeightAverage
from trials.solvers.gradnorm import GradNorm
from trials.solvers.uncertainty import UncertaintyWeighting
from trials.spec import OptimizerSpec, PopulationSpec, TrialSpec
from trials.testing.contract import ConflictingRegression, SolverContract


class TestUncertainty(SolverContract):
    solver = "uncertainty"
    valid_params = {"init": 0.5}
    invalid_params = [({"init": float("nan")}, "init"), ({"init": "zero"}, "init"), ({"init": True}, "init")]
    optimizer = OptimizerSpec(name="adam", lr=0.01)


class TestUncertaintyPopulation(SolverContract):
    solver = "uncertainty"
    population_size = 3  # non-uniform preferences tilt the weights; the contract must still hold


class TestDWA(SolverContract):
    solver = "dwa"
    valid_params = {"temperature": 2.0}
    invalid_params = [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
    ]
    num_tasks = 3


def _ctx(losses: torch.Tensor) -> StepContext:
    return StepContext(losses=losses, model=None, optimizer=None, step=0)  # type: ignore[arg-type]


# -- uncertainty weighting ----------------------------------------------------------------------
@pytest.mark.parametrize("preference", [(0.5, 0.5), (0.2, 0.8)])
def test_uncertainty_log_variance_converges_to_log_loss(preference: tuple[float, float]) -> None:
    # d/ds (exp(−s)·L + s) = 1 − exp(−s)·L = 0 at s = log L, whatever the preference factor.
    fixed = torch.tensor([0.5, 4.0])
    solver = build_solver("uncertainty", 2, torch.tensor(preference))
    optimizer = torch.optim.Adam(solver.extra_parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad(set_to_none=True)
        solver.backward(_ctx(fixed.clone().requires_grad_()))
        optimizer.step()
    assert torch.allclose(solver.log_variance.detach(), fixed.log(), atol=1e-3)
    assert torch.allclose(solver.weights(), 1 / fixed, rtol=1e-3)


def test_uncertainty_model_gradient_is_weighted_by_exp_minus_s() -> None:
    solver = build_solver("uncertainty", 3, torch.tensor([0.2, 0.3, 0.5]), {"init": 0.0})
    with torch.no_grad():
        solver.log_variance.copy_(torch.tensor([0.0, 1.0, -1.0]))
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    solver.backward(_ctx(losses))
    # ∂/∂L_t of Σ T·λ_t (exp(−s_t) L_t + s_t) = T·λ_t·exp(−s_t)
    expected = 3 * torch.tensor([0.2, 0.3, 0.5]) * torch.exp(-torch.tensor([0.0, 1.0, -1.0]))
    assert torch.allclose(losses.grad, expected)
    # ∂/∂s_t = T·λ_t (1 − exp(−s_t) L_t)
    s_grad = 3 * torch.tensor([0.2, 0.3, 0.5]) * (1 - torch.exp(-torch.tensor([0.0, 1.0, -1.0])) * losses.detach())
    assert torch.allclose(solver.log_variance.grad, s_grad)


def _population(solver: str, seed: int = 0) -> Population:
    spec = TrialSpec(
        problem="contract",
        solver=solver,
        population=PopulationSpec(size=1),
        optimizer=OptimizerSpec(name="adam", lr=0.05),
        epochs=2,
        seed=seed,
    )
    torch.manual_seed(seed)
    return Population(ConflictingRegression(2), spec, torch.device("cpu"))


def test_uncertainty_log_variances_train_with_the_member_and_round_trip() -> None:
    population = _population("uncertainty")
    member = population.members[0]
    solver = member.solver
    assert isinstance(solver, UncertaintyWeighting)
    assert any(p is solver.log_variance for group in member.optimizer.param_groups for p in group["params"])
    for batch in population.problem.train_batches(torch.Generator().manual_seed(0)):
        population.train_step(batch)
    learned = solver.log_variance.detach().clone()
    assert not torch.equal(learned, torch.zeros(2))
    # The task with the 10x larger targets has the larger loss, so the larger variance.
    assert learned[0] > learned[1]

    saved = population.state_dict()
    assert torch.equal(saved["members"][0]["solver"]["log_variance"], learned)  # values live in the solver state
    fresh = _population("uncertainty", seed=1)
    fresh.load_state_dict(saved)
    restored = fresh.members[0]
    assert torch.equal(restored.solver.log_variance.detach(), learned)
    # Loaded in place: the optimizer still holds (and keeps updating) the very same Parameter.
    assert any(p is restored.solver.log_variance for g in restored.optimizer.param_groups for p in g["params"])
    with pytest.raises(ValueError, match="log-variances of shape"):
        restored.solver.load_state_dict({"log_variance": torch.zeros(3)})


# -- DWA -----------------------------------------------------------------------------------------
def _dwa_after(epochs: list[list[float]], temperature: float = 2.0, num_tasks: int = 2) -> DynamicWeightAverage:
    solver = build_solver("dwa", num_tasks, torch.full((num_tasks,), 1 / num_tasks), {"temperature": temperature})
    assert isinstance(solver, DynamicWeightAverage)
    for epoch, losses in enumerate(epochs, start=1):
        solver.end_epoch(epoch, torch.tensor(losses))
    return solver


def test_dwa_uses_equal_weights_for_the_first_two_epochs() -> None:
    assert torch.equal(_dwa_after([]).weights(), torch.ones(2, dtype=torch.float64))
    assert torch.equal(_dwa_after([[1.0, 2.0]]).weights(), torch.ones(2, dtype=torch.float64))


def test_dwa_weights_follow_the_formula_from_the_last_two_epochs() -> None:
    # An older epoch first: only the last two count. Task 0 halves, task 1 falls by 10 %.
    solver = _dwa_after([[9.0, 9.0], [1.0, 2.0], [0.5, 1.8]], temperature=2.0)
    ratios = [0.5 / 1.0, 1.8 / 2.0]
    denominator = sum(math.exp(r / 2.0) for r in ratios)
    expected = torch.tensor([2 * math.exp(r / 2.0) / denominator for r in ratios], dtype=torch.float64)
    weights = solver.weights()
    assert torch.allclose(weights, expected, atol=1e-12)
    assert weights[1] > weights[0]  # the slower-falling task gets the larger weight
    assert float(weights.sum()) == pytest.approx(2.0)
    losses = torch.tensor([0.5, 1.8], requires_grad=True)
    solver.backward(_ctx(losses))
    assert torch.allclose(losses.grad, expected.float())  # the step uses exactly these weights


def test_dwa_weights_sum_to_t_and_temperature_flattens_them() -> None:
    epochs = [[1.0, 1.0, 1.0], [0.2, 1.0, 1.5]]
    sharp, flat = _dwa_after(epochs, 0.5, num_tasks=3).weights(), _dwa_after(epochs, 50.0, num_tasks=3).weights()
    for weights in (sharp, flat):
        assert float(weights.sum()) == pytest.approx(3.0)
        assert weights[0] < weights[1] < weights[2]  # ordered by loss ratio
    assert float(flat.max() - flat.min()) < float(sharp.max() - sharp.min())


def test_dwa_history_is_state() -> None:
    solver = _dwa_after([[1.0, 2.0], [0.5, 1.8], [0.4, 1.0]])
    restored = _dwa_after([])
    restored.load_state_dict(solver.state_dict())
    assert torch.equal(restored.weights(), solver.weights())
    assert len(solver.state_dict()["history"]) == 2


# -- GradNorm ------------------------------------------------------------------------------------
class TestGradNorm(SolverContract):
    solver = "gradnorm"
    valid_params = {"alpha": 1.5}
    invalid_params = [
        ({"alpha": -0.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": "high"}, "alpha"),
    ]


def _gradnorm_ratios(alpha: float, steps: int) -> tuple[list[float], list[float]]:
    """Two tasks on a fixed decision vector x = 0 (the model never steps: only the weights learn):
    L_0 = c_0·‖x − 1‖², L_1 = c_1·10‖x + 1‖², so ‖∇L_0‖ = 4·c_0 and ‖∇L_1‖ = 40·c_1. The first step
    (c = 1, 1) fixes L(0); afterwards c = (0.5, 1): task 0 has halved its loss, task 1 has not, so
    r = (2/3, 4/3). Returns G_1/G_0 and w_0 + w_1 after every step."""
    model = MultiTaskModel(ParameterVector(torch.zeros(4)), [nn.Identity(), nn.Identity()])
    solver = build_solver("gradnorm", 2, torch.tensor([0.5, 0.5]), {"alpha": alpha})
    assert isinstance(solver, GradNorm)
    optimizer = torch.optim.Adam(solver.extra_parameters(), lr=0.01)
    ratios, sums = [], []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        scale = torch.tensor([1.0, 1.0]) if step == 0 else torch.tensor([0.5, 1.0])
        x0, x1 = model(torch.empty(0))
        losses = scale * torch.stack([((x0 - 1) ** 2).sum(), 10 * ((x1 + 1) ** 2).sum()])
        ctx = StepContext(losses=losses, model=model, optimizer=optimizer, step=step)
        solver.backward(ctx)
        solver.step(ctx)
        norms = solver.weighted_norms()
        assert norms is not None
        ratios.append(float(norms[1] / norms[0]))
        sums.append(float(solver.task_weights.detach().sum()))
    return ratios, sums


@pytest.mark.parametrize(("alpha", "target"), [(0.0, 1.0), (1.0, 2.0)])
def test_gradnorm_weighted_gradient_norms_reach_the_target_ratio(alpha: float, target: float) -> None:
    # Target G_t ∝ r_t^α: ratio (4/3 ÷ 2/3)^α = 2^α. With equal weights it is 40/4 = 10 at the
    # first step (c = 1, 1) and 40·1/(4·0.5) = 20 afterwards.
    # Measured after 300 steps: α=0 → 0.9999, α=1 → 1.993 (Adam's lr-sized steps jitter around it).
    ratios, sums = _gradnorm_ratios(alpha, steps=300)
    assert ratios[0] > 9
    assert ratios[-1] == pytest.approx(target, rel=0.02)
    assert all(s == pytest.approx(2.0) for s in sums)  # renormalized to Σ w = T after every step


def test_gradnorm_with_alpha_1_5_settles_between_the_single_task_fixed_points() -> None:
    # Σ_t r_t^α ≠ T when α ≠ 1, so the targets cannot all be met at once: the L1 loss settles where
    # one of them is. G_0 = Ḡ·r_0^α gives G_1/G_0 = 2.676, G_1 = Ḡ·r_1^α gives 3.350; measured 3.30.
    r = torch.tensor([2 / 3, 4 / 3], dtype=torch.float64) ** 1.5
    low, high = float((2 - r[0]) / r[0]), float(r[1] / (2 - r[1]))
    ratios, _ = _gradnorm_ratios(1.5, steps=300)
    assert low - 0.05 < ratios[-1] < high + 0.05
    assert ratios[-1] > 2.0  # the slower task (1) gets the larger weighted gradient, beyond α = 1
