"""The population and the loop: independence at ε0 = 0, exact resume, transfer rules, specs."""

from __future__ import annotations

import math

import pytest
import torch

from trials.loop import Trainer
from trials.preferences import make_preferences, pull_to_centre
from trials.spec import OptimizerSpec, PopulationSpec, SpecError, TransferSpec, TrialSpec
from trials.testing.contract import ConflictingRegression
from trials.transfer import ParameterTransfer, similarity_matrix


def _spec(**overrides) -> TrialSpec:
    base = dict(
        problem="contract",
        solver="tchebycheff",
        epochs=6,
        seed=3,
        optimizer=OptimizerSpec(name="adam", lr=0.01, schedule="cosine"),
    )
    base.update(overrides)
    return TrialSpec(**base)


def _metrics(trainer: Trainer) -> list[list[dict[str, float]]]:
    return [[m.metrics for m in report.members] for report in trainer.history]


def test_eps0_zero_equals_k_separate_runs() -> None:
    problem = ConflictingRegression()
    prefs = make_preferences(2, 4)
    population = Trainer(_spec(population=PopulationSpec(size=4, transfer=TransferSpec(eps0=0.0))), problem=problem)
    population.run()
    for k in range(4):
        single = Trainer(
            _spec(population=PopulationSpec(size=1, preferences=(tuple(prefs[k].tolist()),))), problem=problem
        )
        single.run()
        for epoch_pop, epoch_single in zip(population.history, single.history, strict=True):
            assert epoch_pop.members[k].metrics == epoch_single.members[0].metrics
        for p_pop, p_single in zip(
            population.population.members[k].model.parameters(),
            single.population.members[0].model.parameters(),
            strict=True,
        ):
            assert torch.equal(p_pop, p_single)


def test_transfer_changes_the_members() -> None:
    problem = ConflictingRegression()
    plain = Trainer(
        _spec(epochs=2, population=PopulationSpec(size=4, transfer=TransferSpec(eps0=0.0))), problem=problem
    )
    mixed = Trainer(
        _spec(epochs=2, population=PopulationSpec(size=4, transfer=TransferSpec(eps0=0.5, period=2))), problem=problem
    )
    plain.run()
    mixed.run()
    assert _metrics(plain) != _metrics(mixed)


@pytest.mark.parametrize(
    ("solver", "configured", "effective"),
    [
        ("linear", None, 0.3),  # unset: MT2O's default for scalarizations
        ("tchebycheff", None, 0.3),
        ("pmtl", None, 0.0),  # finite-set methods keep their members apart unless asked
        ("epo", None, 0.0),
        ("pmtl", 0.2, 0.2),  # an explicit value always wins
        ("linear", 0.0, 0.0),
    ],
)
def test_unset_eps0_takes_the_solvers_default(solver: str, configured: float | None, effective: float) -> None:
    spec = _spec(solver=solver, epochs=1, population=PopulationSpec(size=3, transfer=TransferSpec(eps0=configured)))
    trainer = Trainer(spec, problem=ConflictingRegression())
    assert trainer.population.transfer.spec.eps0 == effective
    assert trainer.population.transfer.enabled == (effective > 0)


@pytest.mark.parametrize("mode", ["symmetric", "beneficial"])
def test_resume_from_epoch_3_is_bit_identical(tmp_path, mode: str) -> None:
    problem = ConflictingRegression()
    spec = _spec(population=PopulationSpec(size=3, transfer=TransferSpec(eps0=0.4, period=3, mode=mode)))
    uninterrupted = Trainer(spec, problem=problem)
    uninterrupted.run()

    first = Trainer(spec, problem=problem)
    for _ in range(3):
        first.train_epoch()
    path = first.save_checkpoint(tmp_path / "ckpt.pt")
    torch.manual_seed(12345)  # the resumed process's RNG state must not matter
    resumed = Trainer(spec, problem=problem)
    resumed.load_checkpoint(path)
    assert resumed.epoch == 3
    resumed.run()
    assert _metrics(resumed) == _metrics(uninterrupted)
    assert resumed.history[-1].epoch == 6


def test_checkpoint_of_another_spec_is_refused(tmp_path) -> None:
    problem = ConflictingRegression()
    trainer = Trainer(_spec(epochs=1), problem=problem)
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    other = Trainer(_spec(epochs=1, seed=4), problem=problem)
    with pytest.raises(ValueError, match="different trial spec"):
        other.load_checkpoint(path)


def test_similarity_is_row_stochastic_with_zero_diagonal() -> None:
    s = similarity_matrix(make_preferences(2, 5), sigma=0.2)
    assert torch.allclose(s.sum(dim=1), torch.ones(5, dtype=torch.float64))
    assert torch.all(torch.diagonal(s) == 0)
    # nearer preferences weigh more: member 0's nearest neighbour is member 1
    assert s[0, 1] > s[0, 2] > s[0, 3]


def test_transfer_rule_and_decay() -> None:
    prefs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    transfer = ParameterTransfer(TransferSpec(eps0=0.5, period=1, decay="linear"), prefs, total_steps=10)
    assert transfer.epsilon(0) == 0.5 and transfer.epsilon(5) == 0.25 and transfer.epsilon(10) == 0.0
    a, b = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(3.0)
    transfer.apply([a, b], step=5)  # ε = 0.25, S = [[0,1],[1,0]]
    assert a.weight.item() == pytest.approx(0.75 * 1 + 0.25 * 3)
    assert b.weight.item() == pytest.approx(0.75 * 3 + 0.25 * 1)


def test_beneficial_transfer_only_takes_what_helps() -> None:
    prefs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    transfer = ParameterTransfer(TransferSpec(eps0=0.5, decay="constant", mode="beneficial"), prefs, total_steps=10)
    a, b = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        a.weight.fill_(1.0)  # member 0 wants w = 2: moving toward b (w = 3) helps it
        b.weight.fill_(3.0)  # member 1 wants w = 3: moving toward a hurts it

    def objective(k: int, params: dict[str, torch.Tensor]) -> float:
        return float((params["weight"] - (2.0 if k == 0 else 3.0)) ** 2)

    used = transfer.apply([a, b], step=1, objective=objective)
    assert used[0, 1] == 1.0 and used[1, 0] == 0.0
    assert a.weight.item() == pytest.approx(2.0) and b.weight.item() == 3.0


def test_preferences_quarter_circle_and_das_dennis() -> None:
    prefs = make_preferences(2, 5)
    assert torch.allclose(prefs.sum(dim=1), torch.ones(5, dtype=torch.float64))
    angles = torch.atan2(prefs[:, 1], prefs[:, 0])
    assert torch.allclose(angles.diff(), torch.full((4,), math.pi / 8, dtype=torch.float64))
    three = make_preferences(3, 10)
    assert three.shape == (10, 3) and torch.allclose(three.sum(dim=1), torch.ones(10, dtype=torch.float64))
    # Not a Das–Dennis count (the mt2o preset's K = 5 on 3 tasks): Riesz-energy directions, spread and distinct.
    for tasks, size in ((3, 5), (3, 7), (4, 5)):
        spread = make_preferences(tasks, size)
        assert spread.shape == (size, tasks) and bool((spread >= 0).all())
        assert torch.allclose(spread.sum(dim=1), torch.ones(size, dtype=torch.float64))
        assert float(torch.pdist(spread).min()) > 0.3, spread  # no two members share a preference
        assert torch.equal(make_preferences(tasks, size), spread)  # deterministic
    assert make_preferences(2, 1).tolist() == [[0.5, 0.5]]


def test_interior_pulls_generated_preferences_toward_equal_weights_and_keeps_explicit_ones() -> None:
    pulled = pull_to_centre(make_preferences(3, 6), 0.3)  # Das–Dennis K = 6: three corners, three edge midpoints
    assert torch.allclose(pulled.sum(dim=1), torch.ones(6, dtype=torch.float64))
    assert float(pulled.min()) == pytest.approx(0.1) and float(pulled.max()) == pytest.approx(0.8)
    assert torch.equal(pull_to_centre(make_preferences(2, 5), 0.0), make_preferences(2, 5))
    members = Trainer(_spec(problem="toy2d", population=PopulationSpec(size=5, interior=0.3))).population.preferences
    assert torch.allclose(members, 0.7 * make_preferences(2, 5) + 0.15)
    explicit = ((1.0, 0.0), (0.0, 1.0))
    spec = _spec(problem="toy2d", population=PopulationSpec(size=2, preferences=explicit, interior=0.3))
    kept = Trainer(spec).population.preferences
    assert kept.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"problem": "toy2d", "epoch": 3}, r"unknown key `epoch`; allowed: problem, "),
        ({"problem": "toy2d", "population": {"sise": 3}}, r"unknown key `population.sise`"),
        ({"problem": "toy2d", "population": {"transfer": {"eps": 1}}}, r"unknown key `population.transfer.eps`"),
        ({"problem": "toy2d", "optimizer": {"lr": -1}}, r"`optimizer.lr` must be a float > 0, found -1"),
        (
            {"problem": "toy2d", "optimizer": {"name": "lbfgs"}},
            r"`optimizer.name` must be one of sgd, adam, adamw, found 'lbfgs'",
        ),
        (
            {"problem": "toy2d", "population": {"transfer": {"eps0": 1.5}}},
            r"`population.transfer.eps0` must be in \[0, 1\], found 1.5",
        ),
        (
            {"problem": "toy2d", "population": {"transfer": {"mode": "greedy"}}},
            r"`population.transfer.mode` must be symmetric or beneficial",
        ),
        (
            {"problem": "toy2d", "population": {"size": 2, "preferences": [[1, 0]]}},
            r"`population.preferences` must be 2 rows",
        ),
        (
            {"problem": "toy2d", "population": {"interior": 1.0}},
            r"`population.interior` must be a number in \[0, 1\), found 1.0",
        ),
        ({"problem": "toy2d", "device": "tpu"}, r"`device` must be cpu, cuda, cuda:N or auto, found 'tpu'"),
        ({"problem": "toy2d", "epochs": 0}, r"`epochs` must be an integer >= 1, found 0"),
    ],
)
def test_invalid_specs_name_the_field(data, message) -> None:
    with pytest.raises(SpecError, match=message):
        TrialSpec.from_dict(data)


def test_cuda_device_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path cannot happen")
    with pytest.raises(ValueError, match=r"`device` is 'cuda' but CUDA is not available here"):
        Trainer(_spec(device="cuda"), problem=ConflictingRegression())


def test_nan_loss_raises_a_clear_error() -> None:
    from trials.population import NonFiniteLossError

    problem = ConflictingRegression()
    problem.y[0, 0] = float("nan")
    trainer = Trainer(_spec(epochs=1, solver="linear"), problem=problem)
    with pytest.raises(NonFiniteLossError, match=r"member 0 at step \d+: non-finite losses"):
        trainer.run()
