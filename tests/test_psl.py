"""Pareto set learning (``method: psl``, trials/psl/): one conditioned model against exact fronts, its budget,
exact resume, its points on the service's global front, and its config errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from pareto_search.config import ConfigError, parse_config
from pareto_search.pareto import hypervolume
from trials.loop import Trainer
from trials.presets import PSL
from trials.problems.synthetic import TOY2D_HV_11, ZDT1_HYPERVOLUMES
from trials.psl.conditioning import HYPER_MAX_PARAMETERS
from trials.psl.sampling import drawn_preferences, evaluation_preferences
from trials.spec import TrialSpec


def _spec(problem: str, solver: str, epochs: int, lr: float, **psl: object) -> TrialSpec:
    return TrialSpec.from_dict(
        {
            "problem": problem,
            "solver": solver,
            "epochs": epochs,
            "optimizer": {"lr": lr, "schedule": "cosine"},
            "population": {"psl": psl},
        }
    )


def _points(trainer: Trainer) -> np.ndarray:
    return np.array([[m.metrics["f1"], m.metrics["f2"]] for m in trainer.history[-1].members])


def test_toy2d_points_of_one_trial_reach_the_exact_hypervolume() -> None:
    """toy2d's front is not convex: under tchebycheff one conditioned model covers it, linear ends included. Its
    101 points (a continuous front evaluated densely: 101 exact points hold 0.9867 of the HV) reach >= 0.98."""
    trainer = Trainer(_spec("toy2d", "tchebycheff", 3, 0.03, points=101))
    trainer.run()
    points = _points(trainer)
    assert points.shape == (101, 2)
    hv = hypervolume(points, [1.0, 1.0]).value
    assert hv >= 0.98 * TOY2D_HV_11, (hv, hv / TOY2D_HV_11)


def _zdt1_linear_optimum(weight: float) -> tuple[float, float]:
    """The ZDT1 point minimizing weight·f1 + (1 − weight)·f2 on its front f2 = 1 − √f1: √f1 = (1 − w)/(2w), at
    most 1."""
    f1 = 1.0 if weight == 0 else min(1.0, ((1.0 - weight) / (2.0 * weight)) ** 2)
    return f1, 1.0 - math.sqrt(f1)


def test_zdt1_linear_each_preference_lands_on_its_own_optimum() -> None:
    """ZDT1's front is convex: under the linear scalarization each evaluation preference's point is that
    preference's optimum (within 1e-2), so the model is the Pareto set, not a few points of it."""
    trainer = Trainer(_spec("zdt1", "linear", 4, 0.03))
    trainer.run()
    points = _points(trainer)
    prefs = trainer.population.preferences.numpy()
    assert len(points) == 11
    for pref, point in zip(prefs, points, strict=True):
        if pref[0] == 1.0:  # f2 has weight 0: every (0, g) is optimal, only f1 = 0 is determined
            assert point[0] < 1e-2, (pref, point)
            continue
        optimum = np.array(_zdt1_linear_optimum(float(pref[0])))
        assert np.linalg.norm(point - optimum) < 1e-2, (pref, point, optimum)
    hv = hypervolume(points, [1.1, 1.1]).value
    assert hv >= 0.95 * ZDT1_HYPERVOLUMES[(1.1, 1.1)]  # 11 points of the front


@pytest.mark.parametrize(
    ("problem", "args", "conditioning"),
    [
        ("toy2d", {"steps_per_epoch": 5}, "lowrank"),
        ("toy2d", {"steps_per_epoch": 5}, "hyper"),
        ("logic_gates", {"batch_size": 1}, "film"),  # a trunk with features; data drawn in a shuffled order
    ],
)
def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, problem: str, args: dict, conditioning: str) -> None:
    spec = TrialSpec.from_dict(
        {
            "problem": problem,
            "problem_args": args,
            "solver": "tchebycheff",  # its running minimum is state the checkpoint must carry
            "epochs": 3,
            "optimizer": {"lr": 0.02, "schedule": "cosine"},
            "population": {"psl": {"conditioning": conditioning, "samples": 3, "points": 5}},
        }
    )
    straight = Trainer(spec)
    straight.run()
    first = Trainer(spec)
    first.train_epoch()
    first.save_checkpoint(tmp_path / "trainer.pt")
    torch.manual_seed(12345)  # a resumed process's global RNG is anything until the checkpoint restores it
    resumed = Trainer(spec)
    resumed.load_checkpoint(tmp_path / "trainer.pt")
    resumed.run()
    assert [r.members for r in resumed.history] == [r.members for r in straight.history]
    a, b = straight.state_dict()["population"], resumed.state_dict()["population"]
    assert a["step"] == b["step"] == 3 * straight.problem.steps_per_epoch()
    for name, tensor in a["psl"]["model"].items():
        assert torch.equal(tensor, b["psl"]["model"][name]), name
    assert torch.equal(a["psl"]["scalarizer"]["running_min"], b["psl"]["scalarizer"]["running_min"])


def test_budget_counts_one_model_epoch_per_drawn_preference() -> None:
    spec = _spec("toy2d", "linear", 2, 0.02, samples=3, points=7)
    trainer = Trainer(dataclasses.replace(spec, problem_args={"steps_per_epoch": 5}))
    trainer.run()
    assert trainer.model_epochs == 2 * 3  # P per epoch, whatever the N = 7 points evaluated
    assert len(trainer.history[-1].members) == 7


def test_drawn_and_evaluated_preferences() -> None:
    drawn = drawn_preferences(0, 5, 3, 4, 0.2)
    assert drawn.shape == (4, 3) and torch.allclose(drawn.sum(dim=1), torch.ones(4))
    assert torch.equal(drawn, drawn_preferences(0, 5, 3, 4, 0.2))  # a pure function of (seed, step)
    assert not torch.equal(drawn, drawn_preferences(0, 6, 3, 4, 0.2))
    two = evaluation_preferences(2, None)
    assert two.shape == (11, 2) and torch.allclose(two[:, 0], torch.linspace(1, 0, 11, dtype=torch.float64))
    assert evaluation_preferences(3, None).shape == (10, 3)  # Das–Dennis, 3 partitions


def test_film_is_refused_on_a_decision_vector() -> None:
    with pytest.raises(ValueError, match=r"`population.psl.conditioning` is film, but .* allowed here: lowrank, hyper"):
        Trainer(TrialSpec.from_dict({"problem": "zdt1", "population": {"psl": {"conditioning": "film"}}}))


def test_hyper_is_refused_above_its_parameter_limit() -> None:
    spec = TrialSpec.from_dict(
        {
            "problem": "toy2d",
            "problem_args": {"n": HYPER_MAX_PARAMETERS + 1},
            "population": {"psl": {"conditioning": "hyper"}},
        }
    )
    with pytest.raises(ValueError, match=r"`population.psl.conditioning` is hyper, but .* allowed here: lowrank, film"):
        Trainer(spec)


BASE = {"name": "psl", "problem": {"name": "toy2d"}, "epochs": 1, "search": {"num_samples": 1}}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"method": "psl", "population": {"psl": {"samples": 0}}}, r"`solvers\[0\].population.psl.samples` must be"),
        ({"method": "psl", "population": {"psl": {"rnk": 2}}}, r"unknown key `solvers\[0\].population.psl.rnk`"),
        ({"method": "psl", "solver": "mgda"}, r"`solvers\[0\].solver` must be one of linear, tchebycheff, epo"),
        ({"method": "psl", "population": {"size": 3}}, r"`solvers\[0\].population.size` must be 1 with"),
    ],
)
def test_a_bad_psl_entry_is_one_line(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config({**BASE, "solvers": [entry]})
    assert "\n" not in str(caught.value)


def test_solvers_lists_psl_with_its_papers_and_defaults(capsys) -> None:
    from pareto_search.cli import main

    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("psl (method: `method: psl`") :].split("\n\n")[0]
    for text in ("Chen & Kwok", "Navon", "COSMOS", "solver: tchebycheff", "population.psl.conditioning = 'lowrank'"):
        assert text in block, text
    config = parse_config({**BASE, "solvers": [{"method": "psl"}]})
    assert config.solvers[0].population == PSL.population
