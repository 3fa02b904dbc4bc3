"""Pareto set learning (``method: psl``, trials/psl/): one conditioned model against exact fronts, its budget,
exact resume, its points on the service's global front, and its config errors."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from pareto_search.config import ConfigError, parse_config
from pareto_search.front.pareto import hypervolume
from trials.loop import Trainer
from trials.models import MultiTaskModel, ParameterVector
from trials.presets import PSL
from trials.problems.base import Batch, MetricSpec, Problem, Split
from trials.problems.synthetic import TOY2D_HV_11, ZDT1_HYPERVOLUMES, ZDT2_HYPERVOLUMES
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


class Quadratic(Problem):
    """A plug-in problem (``tests.unit.trials.test_psl:Quadratic``) with a convex exact front:
    f1 = ‖x − a‖², f2 = ‖x + a‖²,
    ‖a‖ = 1/2. The linear scalarization with weights (w, 1 − w) has the unique optimum x = (2w − 1)·a, i.e.
    f = ((1 − w)², w²), and its value grows quadratically away from it in every direction, so a point's distance
    to its preference's optimum is determined by the loss (on ZDT1 the scalarization is nearly flat where the
    optimum reaches x1 = 1: a point 0.07 away costs 1e-3)."""

    name = "quadratic"
    task_names = ("f1", "f2")
    metrics = (MetricSpec("f1", "min"), MetricSpec("f2", "min"))
    default_objectives = ("f1", "f2")
    default_reference_point = (1.0, 1.0)

    def __init__(self, n: int = 10) -> None:
        self.a = torch.full((n,), 0.5 / math.sqrt(n))

    def make_model(self) -> MultiTaskModel:
        return MultiTaskModel(ParameterVector(torch.rand(len(self.a)) * 0.1), [nn.Identity(), nn.Identity()])

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        for _ in range(self.steps_per_epoch()):
            yield Batch(torch.empty(0), ())

    def steps_per_epoch(self) -> int:
        return 50

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        return torch.stack([((outputs[0] - self.a) ** 2).sum(), ((outputs[1] + self.a) ** 2).sum()])

    @torch.no_grad()
    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        f1, f2 = self.task_losses(model(torch.empty(0)), Batch(torch.empty(0), ())).tolist()
        return {"f1": f1, "f2": f2}


def test_linear_on_a_convex_front_puts_each_preference_on_its_own_optimum() -> None:
    """Under the linear scalarization each evaluation preference's point is that preference's optimum within
    1e-2: the conditioned model is the Pareto set, not a few points near one. A plug-in problem: nothing about
    PSL is specific to the built-in ones."""
    spec = _spec("tests.unit.trials.test_psl:Quadratic", "linear", 6, 0.03)
    trainer = Trainer(spec)
    trainer.run()
    points = _points(trainer)
    weights = trainer.population.preferences[:, 0].numpy()
    optima = np.stack([(1 - weights) ** 2, weights**2], axis=1)
    distances = np.linalg.norm(points - optima, axis=1)
    assert len(points) == 11 and distances.max() < 1e-2, distances.round(4).tolist()


def test_zdt1_points_of_one_trial_reach_the_exact_hypervolume() -> None:
    """ZDT1's convex front under the linear scalarization, 101 points of one model."""
    trainer = Trainer(_spec("zdt1", "linear", 6, 0.02, points=101))
    trainer.run()
    hv = hypervolume(_points(trainer), [1.1, 1.1]).value
    assert hv >= 0.98 * ZDT1_HYPERVOLUMES[(1.1, 1.1)], (hv, hv / ZDT1_HYPERVOLUMES[(1.1, 1.1)])


def test_zdt2_points_of_one_trial_reach_the_exact_hypervolume() -> None:
    """ZDT2's front is concave, where a linear scalarization's optima are only its two ends: under tchebycheff one
    conditioned model covers it, 101 points reaching >= 0.98 of the exact HV (0.988 measured)."""
    trainer = Trainer(_spec("zdt2", "tchebycheff", 6, 0.02, points=101))
    trainer.run()
    points = _points(trainer)
    hv = hypervolume(points, [1.1, 1.1]).value
    assert hv >= 0.98 * ZDT2_HYPERVOLUMES[(1.1, 1.1)], (hv, hv / ZDT2_HYPERVOLUMES[(1.1, 1.1)])
    interior = (points[:, 0] > 0.2) & (points[:, 0] < 0.8)
    assert interior.sum() >= 30, "the concave middle of the front is covered, not only its ends"


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


@pytest.mark.parametrize(
    ("solver", "solver_args", "cosmos_penalty"),
    [("epo", {}, 0.0), ("tchebycheff", {"ideal": [0.0, 0.0]}, 0.0), ("linear", {}, 1.0)],
)
def test_every_scalarization_spreads_the_points(solver: str, solver_args: dict, cosmos_penalty: float) -> None:
    """EPO's subproblem, Tchebycheff with the solver's own `ideal`, and COSMOS's cosine penalty each give one model
    whose first and last points (preferences (1, 0) and (0, 1)) trade f1 for f2."""
    spec = TrialSpec.from_dict(
        {
            "problem": "toy2d",
            "problem_args": {"steps_per_epoch": 25},
            "solver": solver,
            "solver_args": solver_args,
            "epochs": 2,
            "optimizer": {"lr": 0.03},
            "population": {"psl": {"cosmos_penalty": cosmos_penalty, "points": 3}},
        }
    )
    trainer = Trainer(spec)
    trainer.run()
    first, _, last = _points(trainer)
    assert first[0] < last[0] - 0.5 and first[1] > last[1] + 0.5, (first, last)


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
    for text in ("Chen & Kwok", "Navon", "COSMOS", "solver: linear", "population.psl.conditioning = 'auto'"):
        assert text in block, text
    config = parse_config({**BASE, "solvers": [{"method": "psl"}]})
    assert config.solvers[0].population.model_dump() == PSL.population


@pytest.fixture(scope="module")
def local_ray():
    import ray

    repo = str(Path(__file__).resolve().parents[3])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": repo}})
    yield
    ray.shutdown()


def test_a_psl_search_puts_the_trials_points_on_the_front(tmp_path, local_ray, monkeypatch) -> None:
    """Through the service: one PSL trial's N points enter the global front as points of that trial, each with
    its evaluation preference, and the trial reports its budget in model-epochs."""
    from ray.tune import ExperimentAnalysis

    from pareto_search.plan import make_plan
    from pareto_search.search.runner import run_search

    monkeypatch.chdir(tmp_path)
    config = {
        "name": "psl",
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 50}},
        "epochs": 1,
        "seed": 3,
        "solvers": [{"method": "psl", "solver": "tchebycheff", "optimizer": {"lr": 0.03}}],  # toy2d: non-convex
        "search": {"algorithm": "random", "num_samples": 1, "max_failures": 0},
        "resources": {"cpus_per_trial": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    outcome = run_search(make_plan(parse_config(config)))
    assert outcome.trials == 1 and not outcome.failures
    points = list(outcome.front.front().points)
    assert len({p.data["trial_id"] for p in points}) == 1
    expected = {tuple(round(v, 9) for v in row) for row in evaluation_preferences(2, None).tolist()}
    assert {tuple(round(v, 9) for v in p.data["preference"]) for p in points} == expected
    assert len(points) == 11 and {p.data["member"] for p in points} == set(range(11))
    (trial,) = ExperimentAnalysis(str(tmp_path / "searches" / "psl")).trials
    assert trial.last_result["model_epochs"] == PSL.population["psl"]["samples"]
    # The one conditioned model is stored once, not once per point: in the checkpoint, next to the front (the
    # epoch's weights its points keep), and on the trial's MLflow run, which every point's model URI names.
    import mlflow

    from pareto_search.search.trainable import CONDITIONED_FILE

    checkpoint = Path(trial.checkpoint.path)
    assert sorted(p.name for p in checkpoint.glob("*.pt")) == [CONDITIONED_FILE, "trainer.pt"]
    kept = {p.data.get("weights_file") for p in outcome.front.points.values()} - {None}
    files = sorted(p.name for p in (tmp_path / "searches" / "psl" / "pareto_search" / "epoch_weights").rglob("*.pt"))
    assert len(kept) == 1 and files == sorted(Path(k).name for k in kept), (kept, files)
    uris = {p.data["model_uri"] for p in points}
    assert len(uris) == 1 and next(iter(uris)).endswith(f"/weights/{CONDITIONED_FILE}"), uris
    run_id = next(iter(uris)).removeprefix("runs:/").split("/")[0]
    stored = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(run_id, "weights")
    assert [a.path for a in stored] == [f"weights/{CONDITIONED_FILE}"]
