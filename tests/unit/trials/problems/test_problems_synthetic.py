"""Synthetic problems: exact fronts, gradients, and that Adam actually reaches the fronts."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from trials.models import MultiTaskModel
from trials.problems.synthetic import ZDT1, ZDT2, Toy2D, _SyntheticProblem

CPU = torch.device("cpu")
# The convergence sweeps take ~0.5 s per case; the ends and the middle of the front stay in
# the fast suite, the rest of the sweep is marked slow.
slow = pytest.mark.slow


# -- helpers -------------------------------------------------------------------------------------


def toy2d_front_f2(f1: float) -> float:
    """Toy2d's front as a function f2 = φ(f1): invert f1 = 1 − e^{−(1−t)²} for t ∈ [−1, 1]."""
    t = 1.0 - math.sqrt(-math.log1p(-f1))
    return 1.0 - math.exp(-((1.0 + t) ** 2))


def curve_hypervolume(phi: Callable[[float], float], f1_max: float, ref: tuple[float, float]) -> float:
    """HV of the front {(f1, φ(f1)) : 0 ≤ f1 ≤ f1_max} (φ decreasing) w.r.t. ``ref``, integrated
    numerically: the band under the curve plus the strip right of its last point."""
    band, err = quad(lambda f: ref[1] - phi(f), 0.0, f1_max, epsabs=1e-13, epsrel=1e-13, limit=200)
    assert err < 1e-10
    return band + (ref[0] - f1_max) * (ref[1] - phi(f1_max))


def staircase_hv(points: np.ndarray, ref: tuple[float, float]) -> float:
    """Exact HV of a finite 2-D point set (for the 'a sample is below the exact value' check)."""
    pts = points[np.argsort(points[:, 0])]
    hv, best_f2 = 0.0, ref[1]
    for f1, f2 in pts:
        if f2 < best_f2:
            hv += (ref[0] - f1) * (best_f2 - f2)
            best_f2 = f2
    return hv


def set_decision(problem: _SyntheticProblem, model: MultiTaskModel, x: torch.Tensor) -> None:
    with torch.no_grad():
        model.trunk.x.copy_(problem.parameter_for(x))


def train(
    problem: _SyntheticProblem, scalarize: Callable[[torch.Tensor], torch.Tensor], lr: float, steps: int
) -> dict[str, float]:
    model = problem.make_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    done = 0
    while done < steps:
        for batch in problem.train_batches(gen):
            opt.zero_grad()
            scalarize(problem.task_losses(model(batch.inputs), batch)).backward()
            opt.step()
            done += 1
    return problem.evaluate(model, "val", CPU)


FRONTS: dict[str, tuple[Callable[[float], float], float]] = {
    "toy2d": (toy2d_front_f2, 1.0 - math.exp(-4.0)),
    "zdt1": (lambda f: 1.0 - math.sqrt(f), 1.0),
    "zdt2": (lambda f: 1.0 - f * f, 1.0),
}
PROBLEMS = {"toy2d": Toy2D, "zdt1": ZDT1, "zdt2": ZDT2}


# -- exact fronts --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_stored_hypervolumes_match_numerical_integration(name: str) -> None:
    front = PROBLEMS[name]().exact_front
    assert front is not None
    phi, f1_max = FRONTS[name]
    for ref, stored in front.hypervolumes.items():
        assert len(ref) == 2
        assert stored == pytest.approx(curve_hypervolume(phi, f1_max, (ref[0], ref[1])), abs=1e-9)
        # A dense sample's HV is below the exact value and converges to it.
        sampled = staircase_hv(front.sample(20_001), (ref[0], ref[1]))
        assert stored - 1e-3 < sampled < stored


def test_hypervolumes_agree_with_the_documented_exact_values() -> None:
    """The exact HVs listed in docs/problems.md, "Synthetic problems with exact fronts"."""
    assert Toy2D.exact_front is not None and ZDT1.exact_front is not None and ZDT2.exact_front is not None
    assert Toy2D.exact_front.hypervolumes[(1.0, 1.0)] == pytest.approx(0.342116, abs=1e-6)
    assert ZDT1.exact_front.hypervolumes == pytest.approx({(1.0, 1.0): 2 / 3, (1.1, 1.1): 0.876667}, abs=1e-6)
    assert ZDT2.exact_front.hypervolumes == pytest.approx({(1.0, 1.0): 1 / 3, (1.1, 1.1): 0.543333}, abs=1e-6)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_sampled_front_points_satisfy_the_front_equation(name: str) -> None:
    front = PROBLEMS[name]().exact_front
    assert front is not None
    phi, f1_max = FRONTS[name]
    pts = front.sample(101)
    assert pts.shape == (101, 2)
    assert pts[0, 0] == pytest.approx(0.0) and pts[-1, 0] == pytest.approx(f1_max)
    assert np.all(np.diff(pts[:, 0]) > 0)  # listed by increasing f1
    for f1, f2 in pts:
        assert f2 == pytest.approx(phi(float(f1)), abs=1e-12)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_pareto_set_maps_to_the_front_through_the_model(name: str) -> None:
    problem = PROBLEMS[name]()
    phi, _ = FRONTS[name]
    model = problem.make_model()
    ts = np.linspace(-1, 1, 21) if name == "toy2d" else np.linspace(0, 1, 21)
    for t in ts:
        set_decision(problem, model, problem.pareto_set_point(float(t)))
        f = problem.evaluate(model, "test", CPU)
        assert set(f) == {"f1", "f2"}
        assert 0.0 <= f["f1"] <= 1.0
        # float32 parameters: the front holds to ~1e-6.
        assert f["f2"] == pytest.approx(phi(min(max(f["f1"], 0.0), FRONTS[name][1])), abs=2e-5)


# -- gradients -----------------------------------------------------------------------------------


def test_toy2d_gradient_matches_the_analytic_one() -> None:
    problem = Toy2D()
    torch.manual_seed(3)
    model = problem.make_model()
    with torch.no_grad():
        model.trunk.x.copy_(torch.randn(problem.n) * 0.3)
    x = model.trunk.x.detach().clone()
    a = problem.a
    batch = next(problem.train_batches(torch.Generator()))
    losses = problem.task_losses(model(batch.inputs), batch)
    for t, shift in enumerate((a, -a)):
        (grad,) = torch.autograd.grad(losses[t], model.trunk.x, retain_graph=True)
        d2 = ((x - shift) ** 2).sum()
        analytic = 2.0 * torch.exp(-d2) * (x - shift)
        assert losses[t].item() == pytest.approx(1.0 - math.exp(-d2.item()), abs=1e-6)
        torch.testing.assert_close(grad, analytic, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", [ZDT1, ZDT2])
def test_zdt_objectives_pass_gradcheck_in_float64(cls: type[_SyntheticProblem]) -> None:
    problem = cls()
    torch.manual_seed(0)
    x = (0.05 + 0.9 * torch.rand(problem.n, dtype=torch.float64)).requires_grad_()
    for t in range(2):
        assert torch.autograd.gradcheck(lambda v, t=t: problem.objective(t, v), (x,))


def test_zdt1_gradient_stays_finite_at_f1_zero() -> None:
    problem = ZDT1()
    model = problem.make_model()
    set_decision(problem, model, problem.pareto_set_point(0.0))
    batch = next(problem.train_batches(torch.Generator()))
    problem.task_losses(model(batch.inputs), batch).sum().backward()
    assert model.trunk.x.grad is not None and torch.isfinite(model.trunk.x.grad).all()


# -- optimization reaches the front (the point of these problems) --------------------------------


@pytest.mark.parametrize(
    "lam1",
    [0.02, pytest.param(0.1, marks=slow), 0.3, pytest.param(0.5, marks=slow), 0.7, pytest.param(0.9, marks=slow), 0.98],
)
def test_adam_on_tchebycheff_reaches_the_toy2d_front(lam1: float) -> None:
    # Ideal point (0, 0); measured worst front distances: 1e-3 (lr 0.01), 4e-3 (lr 0.05).
    problem = Toy2D()
    phi, _ = FRONTS["toy2d"]
    lam = torch.tensor([lam1, 1.0 - lam1])
    torch.manual_seed(int(lam1 * 100))
    f = train(problem, lambda losses: (lam * losses).max(), lr=0.01, steps=1000)
    dense = problem.exact_front.sample(200_001) if problem.exact_front else None
    assert dense is not None
    distance = np.min(np.hypot(dense[:, 0] - f["f1"], dense[:, 1] - f["f2"]))
    assert distance < 1e-2, f
    assert f["f2"] >= phi(min(f["f1"], FRONTS["toy2d"][1])) - 1e-5  # never below the front


def zdt1_linear_optimum(lam1: float) -> tuple[float, float]:
    """argmin over the front of λ1·f1 + λ2·(1 − √f1): √f1 = λ2/(2λ1), clipped to [0, 1]."""
    lam2 = 1.0 - lam1
    f1 = 1.0 if lam1 == 0.0 else min(1.0, (lam2 / (2.0 * lam1)) ** 2)
    return f1, 1.0 - math.sqrt(f1)


@pytest.mark.parametrize(
    ("lam1", "lr"),
    [(lam1, 0.05) for lam1 in (0.0, 0.25, 0.5, 1.0)]
    + [pytest.param(lam1, 0.05, marks=slow) for lam1 in (0.1, 0.75, 0.9)]
    + [pytest.param(lam1, 0.01, marks=slow) for lam1 in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)],
)
def test_adam_on_linear_scalarization_reaches_the_zdt1_optimum(lam1: float, lr: float) -> None:
    # Measured: within 1e-2 after 30–110 steps at lr 0.05 and 190–420 steps at lr 0.01.
    problem = ZDT1()
    lam = torch.tensor([lam1, 1.0 - lam1])
    torch.manual_seed(int(lam1 * 100))
    f = train(problem, lambda losses: (lam * losses).sum(), lr=lr, steps=1000)
    opt = zdt1_linear_optimum(lam1)
    value = lam1 * f["f1"] + (1 - lam1) * f["f2"]
    assert value - (lam1 * opt[0] + (1 - lam1) * opt[1]) < 1e-2, f
    if 0.0 < lam1 < 1.0:  # unique optimum in objective space (at the ends, one objective is free)
        assert math.hypot(f["f1"] - opt[0], f["f2"] - opt[1]) < 1e-2, f


@pytest.mark.parametrize("lam1", [pytest.param(0.2, marks=slow), 0.5, pytest.param(0.8, marks=slow)])
def test_adam_on_tchebycheff_reaches_the_nonconvex_zdt2_front(lam1: float) -> None:
    problem = ZDT2()
    lam = torch.tensor([lam1, 1.0 - lam1])
    torch.manual_seed(0)
    f = train(problem, lambda losses: (lam * losses).max(), lr=0.01, steps=1000)
    assert abs(f["f2"] - (1.0 - f["f1"] ** 2)) < 1e-2, f  # on the front (g ≈ 1)
    assert 0.05 < f["f1"] < 0.95, f  # an interior point, which linear scalarization cannot reach


# -- interface -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_interface(name: str) -> None:
    problem = PROBLEMS[name](steps_per_epoch=7)
    assert problem.name == name
    assert problem.num_tasks == 2
    assert [m.name for m in problem.metrics] == ["f1", "f2"]
    assert all(m.direction == "min" for m in problem.metrics)
    assert problem.default_objectives == ("f1", "f2")
    batches = list(problem.train_batches(torch.Generator()))
    assert len(batches) == problem.steps_per_epoch() == 7
    assert batches[0].inputs.numel() == 0 and batches[0].targets == ()
    torch.manual_seed(5)
    m1 = problem.make_model()
    torch.manual_seed(5)
    m2 = problem.make_model()
    m3 = problem.make_model()
    assert torch.equal(m1.trunk.x, m2.trunk.x) and not torch.equal(m1.trunk.x, m3.trunk.x)
    assert len(m1.shared_parameters()) == 1 and m1.task_parameters(0) == []
    f = problem.evaluate(m1, "val", CPU)
    assert f == problem.evaluate(m1, "test", CPU)
    assert all(math.isfinite(v) for v in f.values())


def test_init_points_start_in_the_domain() -> None:
    torch.manual_seed(0)
    for cls in (ZDT1, ZDT2):
        problem = cls()
        x = problem.make_model().representation(torch.empty(0)).detach()
        assert x.shape == (30,) and bool(((x >= 0) & (x <= 1)).all())
    toy = Toy2D()
    x = toy.make_model().representation(torch.empty(0)).detach()
    assert x.shape == (20,) and float(x.abs().max()) <= 0.5 / math.sqrt(20)


@pytest.mark.parametrize(
    ("cls", "kwargs", "needle"),
    [
        (Toy2D, {"n": 0}, "`n`"),
        (ZDT1, {"n": 1}, "`n`"),
        (ZDT2, {"steps_per_epoch": 0}, "`steps_per_epoch`"),
        (Toy2D, {"n": 2.5}, "2.5"),
    ],
)
def test_bad_arguments_name_the_value(cls: type[_SyntheticProblem], kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        cls(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_default_reference_point_has_an_exact_hypervolume(name: str) -> None:
    problem = PROBLEMS[name]()
    ref = problem.default_reference_point
    assert ref is not None and len(ref) == len(problem.default_objectives)
    assert problem.exact_front is not None and ref in problem.exact_front.hypervolumes
    # The whole exact front lies inside the reference box.
    assert np.all(problem.exact_front.sample(1001) <= np.asarray(ref))
