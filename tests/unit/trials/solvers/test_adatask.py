"""AdaTask: the contract for each variant, and the paper's two claims.

1. Scale invariance: every task's step on the shared parameters is normalized by that task's own
   accumulator, so multiplying one loss by 100 leaves the trajectory unchanged (Adam with equal
   weights, whose one accumulator mixes the tasks, moves elsewhere).
2. Balance: with a 10x gradient imbalance the weak task's relative AU in every shared layer is
   close to 1/T under AdaTask and far below it under plain Adam.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn

from trials.gradients import task_gradients
from trials.models import MultiTaskModel
from trials.solvers import StepContext, build_solver
from trials.solvers.adatask import relative_shares
from trials.spec import OptimizerSpec
from trials.testing.contract import SolverContract

_INVALID = [
    ({"variant": "sgd"}, "variant"),
    ({"beta1": 1.0}, "beta1"),
    ({"beta2": -0.1}, "beta2"),
    ({"alpha": True}, "alpha"),
    ({"eps": 0.0}, "eps"),
    ({"eps": float("inf")}, "eps"),
    ({"au_decay": 1.5}, "au_decay"),
]


class TestAdaTaskAdam(SolverContract):
    solver = "adatask"
    valid_params = {"variant": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    invalid_params = _INVALID
    optimizer = OptimizerSpec(name="adam", lr=0.01)


class TestAdaTaskRMSProp(SolverContract):
    solver = "adatask"
    valid_params = {"variant": "rmsprop", "alpha": 0.99}
    invalid_params = _INVALID
    # The configured optimizer is SGD with momentum: AdaTask must only read its lr.
    optimizer = OptimizerSpec(name="sgd", lr=0.01, momentum=0.9)


class TestAdaTaskAdaGrad(SolverContract):
    solver = "adatask"
    valid_params = {"variant": "adagrad"}
    invalid_params = _INVALID
    optimizer = OptimizerSpec(name="adam", lr=0.05)
    num_tasks = 3


# -- a small float64 two-task problem, so that tolerances are about eps, not float32 rounding ----
_DTYPE = torch.float64
_gen = torch.Generator().manual_seed(0)
_X = torch.randn(256, 4, generator=_gen, dtype=_DTYPE)
_Y = torch.tanh(_X @ torch.randn(2, 4, generator=_gen, dtype=_DTYPE).T)  # two tasks of equal scale


def _model() -> MultiTaskModel:
    torch.manual_seed(0)  # the same initialization for every run compared
    trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh())
    return MultiTaskModel(trunk, [nn.Linear(8, 1) for _ in range(2)]).to(_DTYPE)


def _losses(model: MultiTaskModel, step: int, scale: Tensor) -> Tensor:
    idx = torch.arange(step * 32, step * 32 + 32) % len(_X)
    outputs = model(_X[idx])
    return scale * torch.stack([((o.squeeze(-1) - _Y[idx, t]) ** 2).mean() for t, o in enumerate(outputs)])


def _train(solver_name: str, params: dict | None, scale: tuple[float, float], steps: int, lr: float = 1e-2):
    """Run ``steps`` solver steps; returns (parameter vector after every step, solver, model)."""
    model = _model()
    solver = build_solver(solver_name, 2, torch.tensor([0.5, 0.5]), params)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)  # AdaTask reads its lr; linear steps it
    weights = torch.tensor(scale, dtype=_DTYPE)
    trajectory = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        losses = _losses(model, step, weights)
        rows = task_gradients(losses, model.shared_parameters()) if solver.needs.task_gradients else None
        ctx = StepContext(losses=losses, model=model, optimizer=optimizer, step=step, task_gradients=rows)
        solver.backward(ctx)
        solver.step(ctx)
        trajectory.append(nn.utils.parameters_to_vector(model.parameters()).detach().clone())
    return torch.stack(trajectory), solver, model


# Tolerances: scaling g_k by c changes task k's step g/(√v + ε) only through ε (it becomes
# ε/c relative to the unscaled gradient), so the trajectories differ by O(ε·lr/|g|) per step,
# amplified a little by the dynamics. Measured over 20 steps (max |Δθ| between scale 1 and 100):
# ε = 1e-8: adam 7.4e-7, rmsprop 1.2e-5, adagrad 2.3e-7; ε = 1e-12: 7.4e-11, 1.2e-9, 2.3e-11
# (linear in ε: nothing else depends on the scale). Adam with equal weights differs by 0.38.
@pytest.mark.parametrize("variant", ["adam", "rmsprop", "adagrad"])
@pytest.mark.parametrize(("eps", "tolerance"), [(1e-8, 1e-4), (1e-12, 1e-7)])
def test_scaling_one_loss_by_100_leaves_the_trajectory_unchanged(variant: str, eps: float, tolerance: float) -> None:
    params = {"variant": variant, "eps": eps}
    plain, _, _ = _train("adatask", params, (1.0, 1.0), steps=20)
    scaled, _, _ = _train("adatask", params, (100.0, 1.0), steps=20)
    assert (plain[-1] - plain[0]).abs().max() > 0.1  # it did move
    assert (plain - scaled).abs().max() < tolerance


def test_adam_with_equal_weights_is_not_scale_invariant() -> None:
    plain, _, _ = _train("linear", None, (1.0, 1.0), steps=20)
    scaled, _, _ = _train("linear", None, (100.0, 1.0), steps=20)
    assert (plain - scaled).abs().max() > 0.1


def test_first_step_is_the_sum_of_the_tasks_sign_steps() -> None:
    # Adam's first step is lr·g/|g| per element (bias-corrected), so AdaTask's first shared step
    # is −lr·Σ_k sign(g_k): 0 where the tasks disagree, ±2·lr where they agree.
    model = _model()
    before = nn.utils.parameters_to_vector(model.shared_parameters()).detach().clone()
    losses = _losses(model, 0, torch.tensor([1.0, 3.0], dtype=_DTYPE))
    rows = task_gradients(losses, model.shared_parameters())
    _, _, trained = _train("adatask", {"eps": 1e-14}, (1.0, 3.0), steps=1, lr=0.1)
    after = nn.utils.parameters_to_vector(trained.shared_parameters()).detach()
    assert torch.allclose(after - before, -0.1 * rows.sign().sum(0), atol=1e-10)


def test_lr_is_read_from_the_optimizer_at_every_step() -> None:
    model = _model()
    solver = build_solver("adatask", 2, torch.tensor([0.5, 0.5]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # The schedule sets lr 0 for the first step (nothing may move), then 0.1.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: float(step >= 1))
    moved = []
    for step in range(2):
        before = nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        optimizer.zero_grad(set_to_none=True)
        losses = _losses(model, step, torch.ones(2, dtype=_DTYPE))
        rows = task_gradients(losses, model.shared_parameters())
        ctx = StepContext(losses=losses, model=model, optimizer=optimizer, step=step, task_gradients=rows)
        solver.backward(ctx)
        solver.step(ctx)
        scheduler.step()
        moved.append(float((nn.utils.parameters_to_vector(model.parameters()).detach() - before).abs().max()))
    assert moved[0] == 0.0 and moved[1] > 0.05
    assert optimizer.state_dict()["state"] == {}  # SGD's momentum was never used


def _plain_adam_relative_au(steps: int, scale: tuple[float, float], lr: float = 1e-2, decay: float = 0.99):
    """Plain Adam on Σ_k L_k with the update split by task as the paper does for existing methods:
    Adam's first moment is linear in the gradient, m = Σ_k m_k, so task k's part of the update is
    −lr·m̂_k/(√v̂ + ε) with the one shared v. Returns (relative AU per shared layer, model)."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    model = _model()
    shared = model.shared_parameters()
    heads = torch.optim.Adam([p for t in range(2) for p in model.task_parameters(t)], lr=lr)
    first = [torch.zeros(2, *p.shape, dtype=_DTYPE) for p in shared]
    second = [torch.zeros_like(p) for p in shared]
    au = [torch.zeros(2, *p.shape, dtype=_DTYPE) for p in shared]
    weights = torch.tensor(scale, dtype=_DTYPE)
    for step in range(1, steps + 1):
        heads.zero_grad(set_to_none=True)
        losses = _losses(model, step - 1, weights)
        rows = task_gradients(losses, shared)
        losses.sum().backward()
        heads.step()
        offset = 0
        with torch.no_grad():
            for i, p in enumerate(shared):
                grads = rows[:, offset : offset + p.numel()].reshape(2, *p.shape)
                offset += p.numel()
                first[i].mul_(beta1).add_(grads, alpha=1 - beta1)
                second[i].mul_(beta2).addcmul_(grads.sum(0), grads.sum(0), value=1 - beta2)
                denominator = (second[i] / (1 - beta2**step)).sqrt() + eps
                updates = -lr * (first[i] / (1 - beta1**step)) / denominator
                p.add_(updates.sum(0))
                au[i].mul_(decay).addcmul_(updates, updates, value=1 - decay)
    # trunk = Linear (params 0, 1), Tanh, Linear (params 2, 3): layers "0" and "2" as AdaTask names them
    layers = {"0": [0, 1], "2": [2, 3]}
    shares = {name: relative_shares(torch.cat([au[i].reshape(2, -1) for i in idx], 1)) for name, idx in layers.items()}
    return shares, model


_IMBALANCE = (10.0, 1.0)  # task 0's loss ×10: its gradients on the shared layers are 10× the weak task 1's
_AU_STEPS = 100


@pytest.fixture(scope="module")
def adam_weak_share() -> dict[str, float]:
    """Plain Adam's relative AU of the weak task per shared layer, checked to be real Adam."""
    adam_shares, adam_model = _plain_adam_relative_au(_AU_STEPS, _IMBALANCE)
    reference = _model()
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for step in range(_AU_STEPS):
        optimizer.zero_grad()
        _losses(reference, step, torch.tensor(_IMBALANCE, dtype=_DTYPE)).sum().backward()
        optimizer.step()
    # The split baseline lands exactly where torch.optim.Adam does.
    assert torch.allclose(
        nn.utils.parameters_to_vector(adam_model.parameters()),
        nn.utils.parameters_to_vector(reference.parameters()),
        atol=1e-12,
    )
    return {layer: float(share[1]) for layer, share in adam_shares.items()}


# Measured weak-task share per layer after 100 steps (1/T = 0.5): plain Adam {0: 0.235, 2: 0.199};
# AdaTask adam {0: 0.470, 2: 0.518}, rmsprop {0: 0.448, 2: 0.482}, adagrad {0: 0.470, 2: 0.502}.
@pytest.mark.parametrize("variant", ["adam", "rmsprop", "adagrad"])
def test_weak_task_relative_au_is_near_one_over_t_under_adatask_not_under_adam(
    variant: str, adam_weak_share: dict[str, float]
) -> None:
    _, solver, _ = _train("adatask", {"variant": variant, "au_decay": 0.99}, _IMBALANCE, steps=_AU_STEPS)
    adatask = {layer: float(share[1]) for layer, share in solver.relative_au().items()}
    assert set(adatask) == set(adam_weak_share) == {"0", "2"}
    for layer, share in adatask.items():
        assert abs(share - 0.5) < 0.1
        assert adam_weak_share[layer] < 0.3
        assert abs(share - 0.5) < abs(adam_weak_share[layer] - 0.5)


def test_weight_decay_is_applied_once_and_decoupled() -> None:
    # First step: θ1 = θ0·(1 − lr·wd) + Δ with Δ independent of wd, so the runs differ by lr·wd·θ0.
    def first_step(weight_decay: float) -> Tensor:
        model = _model()
        solver = build_solver("adatask", 2, torch.tensor([0.5, 0.5]))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=weight_decay)
        losses = _losses(model, 0, torch.ones(2, dtype=_DTYPE))
        rows = task_gradients(losses, model.shared_parameters())
        ctx = StepContext(losses=losses, model=model, optimizer=optimizer, step=0, task_gradients=rows)
        solver.backward(ctx)
        solver.step(ctx)
        return nn.utils.parameters_to_vector(model.parameters()).detach()

    initial = nn.utils.parameters_to_vector(_model().parameters()).detach()
    assert torch.allclose(first_step(0.0) - first_step(0.5), 0.1 * 0.5 * initial, atol=1e-12)


def test_diagnostics_are_mlflow_safe_relative_shares() -> None:
    _, solver, _ = _train("adatask", None, (10.0, 1.0), steps=5)
    diagnostics = solver.diagnostics()
    assert sorted(diagnostics) == ["au/0/t0", "au/0/t1", "au/2/t0", "au/2/t1"]
    assert all(re.fullmatch(r"[A-Za-z0-9_./-]+", name) for name in diagnostics)
    for layer in ("0", "2"):
        assert diagnostics[f"au/{layer}/t0"] + diagnostics[f"au/{layer}/t1"] == pytest.approx(1.0)


def test_state_holds_per_task_moments_and_refuses_another_model() -> None:
    _, solver, _ = _train("adatask", None, (1.0, 1.0), steps=3)
    state = solver.state_dict()
    assert state["step"] == 3
    assert state["exp_avg"][0].shape == (2, 8, 4)  # one first moment per task for the shared weight
    assert state["exp_avg"][-1].shape == (1, 1)  # heads: one accumulator (head 1's bias)
    restored = build_solver("adatask", 2, torch.tensor([0.5, 0.5]))
    restored.load_state_dict(state)
    assert restored.diagnostics() == solver.diagnostics()
    other = MultiTaskModel(nn.Sequential(nn.Linear(4, 3)), [nn.Linear(3, 1) for _ in range(2)]).to(_DTYPE)
    losses = torch.stack([o.sum() for o in other(_X[:4])])
    ctx = StepContext(
        losses=losses,
        model=other,
        optimizer=torch.optim.Adam(other.parameters()),
        step=0,
        task_gradients=task_gradients(losses, other.shared_parameters()),
    )
    restored.backward(ctx)
    with pytest.raises(ValueError, match="restored state does not fit"):
        restored.step(ctx)
