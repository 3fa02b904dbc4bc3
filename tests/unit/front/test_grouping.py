"""TAG task grouping: exact on hand-made matrices, equal to brute force, and on two related tasks
plus a conflicting one, the B=2 grouping isolates the conflict and beats one network for all."""

from __future__ import annotations

import itertools
import json
import re

import mlflow
import numpy as np
import pytest
import ray
import torch

from pareto_search.cli import main
from pareto_search.config import parse_config
from pareto_search.front.grouping import GroupingError, group_score, select_groups
from pareto_search.front.groups import affinity_path, record_affinity
from pareto_search.plan import make_plan
from pareto_search.search.runner import run_search
from pareto_search.search.trainable import affinity_metrics
from trials.loop import Trainer
from trials.problems.related_conflicting import RelatedConflicting
from trials.spec import OptimizerSpec, TrialSpec

# Two related tasks (0, 1) and a conflicting one (2): rows are sources, columns targets.
RELATED3 = np.array([[0.9, 0.3, -0.2], [0.5, 4.0, -0.5], [-3.0, -7.0, 0.4]])


def _groups(grouping) -> set[tuple[tuple[int, ...], tuple[int, ...]]]:
    return {(g.tasks, g.serves) for g in grouping.groups}


def test_group_score_is_the_mean_inflow_from_the_other_members() -> None:
    assert group_score(RELATED3, (0, 1, 2), 0) == pytest.approx((0.5 - 3.0) / 2)
    assert group_score(RELATED3, (0, 1), 1) == pytest.approx(0.3)
    assert group_score(RELATED3, (2,), 2) == 0.0  # alone: no transfer in
    with pytest.raises(GroupingError, match="`target`"):
        group_score(RELATED3, (0, 1), 2)


def test_budget_one_two_three_on_related_and_conflicting() -> None:
    one = select_groups(RELATED3, 1)
    assert _groups(one) == {((0, 1, 2), (0, 1, 2))}
    assert one.total == pytest.approx((0.5 - 3.0) / 2 + (0.3 - 7.0) / 2 + (-0.2 - 0.5) / 2)
    two = select_groups(RELATED3, 2)
    assert _groups(two) == {((0, 1), (0, 1)), ((2,), (2,))}
    assert two.task_scores == pytest.approx((0.5, 0.3, 0.0)) and two.total == pytest.approx(0.8)
    assert two.serving_group(2).tasks == (2,)
    assert _groups(select_groups(RELATED3, 3)) == _groups(two)  # a third network adds nothing: not used


def test_all_helpful_tasks_share_one_network() -> None:
    z = np.full((4, 4), 0.1)
    assert _groups(select_groups(z, 4)) == {((0, 1, 2, 3), (0, 1, 2, 3))}


def test_two_clusters_are_found() -> None:
    z = -0.2 * np.ones((4, 4))
    z[np.ix_([0, 2], [0, 2])] = 0.4
    z[np.ix_([1, 3], [1, 3])] = 0.3
    assert _groups(select_groups(z, 2)) == {((0, 2), (0, 2)), ((1, 3), (1, 3))}


def test_groups_overlap_when_a_helper_is_hurt_by_those_it_helps() -> None:
    # task 0 helps 1 and 2 a lot; they hurt 0. Best with 2 networks: 0 trains with 1 and 2 as
    # a helper (serving 1, 2) and once more alone (serving 0).
    z = np.array([[0.0, 1.0, 1.0], [-1.0, 0.0, 0.1], [-1.0, 0.1, 0.0]])
    grouping = select_groups(z, 2)
    assert _groups(grouping) == {((0,), (0,)), ((0, 1, 2), (1, 2))}
    assert grouping.total == pytest.approx(0.0 + 1.1 / 2 + 1.1 / 2)


def test_without_singletons_a_task_cannot_be_isolated() -> None:
    grouping = select_groups(RELATED3, 2, allow_singletons=False)
    assert all(len(g.tasks) >= 2 for g in grouping.groups)
    assert grouping.serving_group(2).tasks != (2,)


def _brute_force(z: np.ndarray, budget: int, allow_singletons: bool) -> float:
    t = len(z)
    smallest = 1 if allow_singletons else 2
    groups = [g for r in range(smallest, t + 1) for g in itertools.combinations(range(t), r)]
    best = -np.inf
    for b in range(1, budget + 1):
        for chosen in itertools.combinations(groups, b):
            if set().union(*chosen) == set(range(t)):
                best = max(best, sum(max(group_score(z, g, j) for g in chosen if j in g) for j in range(t)))
    return best


def test_exhaustive_search_equals_brute_force_over_group_sets() -> None:
    rng = np.random.default_rng(0)
    for _ in range(25):
        t = int(rng.integers(2, 5))
        z = rng.normal(size=(t, t))
        for budget in (1, 2, 3):
            for singletons in (True, False):
                grouping = select_groups(z, budget, allow_singletons=singletons)
                assert len(grouping.groups) <= budget
                assert set().union(*(g.serves for g in grouping.groups)) == set(range(t))
                assert grouping.total == pytest.approx(_brute_force(z, budget, singletons), abs=1e-12)
                recomputed = sum(group_score(z, grouping.serving_group(j).tasks, j) for j in range(t))
                assert grouping.total == pytest.approx(recomputed, abs=1e-12)


def test_ten_tasks_are_fast_and_eleven_refused() -> None:
    z = np.random.default_rng(1).normal(size=(10, 10))
    grouping = select_groups(z, 4)
    assert len(grouping.groups) <= 4
    with pytest.raises(GroupingError, match=r"`affinity` has 11 tasks; .* at most 10"):
        select_groups(np.zeros((11, 11)), 2)


@pytest.mark.parametrize(
    ("affinity", "budget", "message"),
    [
        (np.zeros((2, 3)), 1, r"`affinity` must be a square"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), 1, r"`affinity` must hold finite numbers"),
        (np.zeros((3, 3)), 0, r"`budget` must be an integer >= 1, found 0"),
        (np.zeros((3, 3)), 1.5, r"`budget` must be an integer >= 1, found 1.5"),
    ],
)
def test_invalid_input_names_the_argument(affinity, budget, message) -> None:
    with pytest.raises(GroupingError, match=message):
        select_groups(affinity, budget)


# -- the claim: measured affinities -> grouping -> better networks ------------------------------------

OPTIMIZER = OptimizerSpec(name="sgd", lr=0.05)
EPOCHS = 20  # 160 steps: every network of the test gets the same training budget


def _train(tasks: tuple[int, ...], affinity_every: int = 0) -> Trainer:
    spec = TrialSpec(
        problem="related3",
        optimizer=OPTIMIZER,
        epochs=EPOCHS,
        seed=0,
        affinity_every=affinity_every,
        affinity_lookahead="sgd",
    )
    trainer = Trainer(spec, problem=RelatedConflicting(tasks=tasks), num_threads=1)
    trainer.run()
    return trainer


def test_grouping_isolates_the_conflicting_task_and_beats_one_network() -> None:
    threads = torch.get_num_threads()
    try:
        together = _train((0, 1, 2), affinity_every=1)
        affinity = together.history[-1].extra["affinity_total"]
        grouping = select_groups(affinity, 2)
        assert _groups(grouping) == {((0, 1), (0, 1)), ((2,), (2,))}
        all_in_one = sum(together.evaluate("test")[0].values())
        grouped = 0.0
        for group in grouping.groups:
            network = _train(group.tasks)
            metrics = network.evaluate("test")[0]
            grouped += sum(metrics[f"{network.problem.task_names[group.tasks.index(j)]}_mse"] for j in group.serves)
    finally:
        torch.set_num_threads(threads)
    assert grouped < 0.5 * all_in_one, (grouped, all_in_one)


# -- `pareto-search groups` on a search's storage ---------------------------------------------------


def _search_config(tmp_path, name: str, every: int, **changes):
    config = {
        "name": name,
        "problem": {"name": "related3"},
        "epochs": 4,
        "solvers": [{"solver": "linear", "optimizer": {"name": "sgd", "lr": 0.05}}],
        "search": {"num_samples": 1, "max_failures": 0},
        "diagnostics": {"affinity_every": every, "affinity_lookahead": "sgd"},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    config.update(changes)
    return config


def _stored_search(tmp_path, name: str, every: int, trials: dict[str, list[list[float]]]) -> None:

    plan = make_plan(parse_config(_search_config(tmp_path, name, every)))
    plan.save(None)
    for trial_id, total in trials.items():
        tasks = ["related_a", "related_b", "conflict"]
        record_affinity(affinity_path(plan.front_path), trial_id, tasks=tasks, total=total, epoch=4, label="linear")


def test_groups_command_prints_the_grouping_of_a_stored_search(tmp_path, capsys) -> None:

    other = (RELATED3 + 0.1).tolist()
    _stored_search(tmp_path, "tag", 1, {"t1": RELATED3.tolist(), "t2": other})
    storage = str(tmp_path / "searches")
    assert main(["groups", "tag", "--budget", "2", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "group 1: related_a, related_b | serves related_a" in out and "group 2: conflict | serves conflict" in out
    assert "the mean of 2 trials" in out
    assert main(["groups", "tag", "--budget", "1", "--trial", "t1", "--format", "json", "--storage", storage]) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["trials"] == ["t1"] and data["groups"] == [
        {
            "tasks": ["related_a", "related_b", "conflict"],
            "serves": ["related_a", "related_b", "conflict"],
            "scores": pytest.approx([-1.25, -3.35, -0.35]),
        }
    ]


@pytest.mark.parametrize(
    ("every", "trials", "argv", "message"),
    [
        (0, {}, ["--budget", "2"], r"search 'tag' measured no task affinity: `diagnostics.affinity_every` is 0"),
        (1, {}, ["--budget", "2"], r"search 'tag' has no trial result with task affinity yet"),
        (1, {"t1": RELATED3.tolist()}, ["--budget", "0"], r"`--budget` must be an integer >= 1, found 0"),
        (1, {"t1": RELATED3.tolist()}, ["--budget", "2", "--trial", "t9"], r"`--trial` 't9' recorded no task"),
    ],
)
def test_groups_command_errors_are_one_line(tmp_path, capsys, every, trials, argv, message) -> None:

    _stored_search(tmp_path, "tag", every, trials)
    assert main(["groups", "tag", *argv, "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pareto-search groups: error: ")
    assert re.search(message, err), err


def test_affinity_metrics_name_every_pair() -> None:

    extra = {"affinity_tasks": ["a", "b"], "affinity": [[1.0, 2.0], [3.0, 4.0]], "affinity_total": [[1, 2], [3, 4]]}
    metrics = affinity_metrics(extra)
    assert {k: v for k, v in metrics.items() if k.startswith("affinity/")} == {
        "affinity/a_to_a": 1.0,
        "affinity/a_to_b": 2.0,
        "affinity/b_to_a": 3.0,
        "affinity/b_to_b": 4.0,
    }
    assert metrics["affinity_total"] == [[1, 2], [3, 4]]
    assert affinity_metrics({}) == {}


@pytest.mark.slow
def test_search_logs_affinity_and_groups_reads_it(tmp_path, monkeypatch, capsys) -> None:
    """End to end through Ray Tune and MLflow: per-epoch affinity metrics and the heatmap on the
    trial's run, then `groups` on the finished search isolates the conflicting task."""
    monkeypatch.chdir(tmp_path)
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        run_search(make_plan(parse_config(_search_config(tmp_path, "tag", 1, epochs=EPOCHS))))
    finally:
        ray.shutdown()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("tests").experiment_id
    (child,) = client.search_runs([experiment], filter_string="tags.`pareto_search.kind` = 'trial'")
    history = client.get_metric_history(child.info.run_id, "affinity/related_a_to_related_b")
    assert [m.step for m in history] == list(range(1, EPOCHS + 1))
    assert {"affinity.png", "affinity.json"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
    capsys.readouterr()
    assert main(["groups", "tag", "--budget", "2", "--storage", str(tmp_path / "searches")]) == 0
    assert "group 2: conflict | serves conflict" in capsys.readouterr().out
