"""Tests of the MLflow adapter (`pareto_search.tracking`) against a throwaway sqlite store.

mlflow's import and the creation of a sqlite store's tables take ~1-2 s each, so one tracker (one store)
is shared by the module; tests that need isolation use their own experiment or search name in it.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from pareto_search.tracking.client import (
    TAG_COMPARED,
    TAG_ERROR,
    TAG_KIND,
    TAG_ON_FRONT,
    TAG_ON_FRONT_MEMBERS,
    TAG_RESUME_COUNT,
    TAG_SEARCH,
    TAG_TRIAL_ID,
    SearchTracker,
)
from pareto_search.tracking.params import flatten_params
from pareto_search.tracking.store import resolve_tracking_uri

CONFIG = {
    "problem": {"name": "multi_mnist", "tasks": ["left", "right"]},
    "solvers": [{"name": "mgda", "lr": 1e-3}, {"name": "pcgrad", "lr": [1e-3, 1e-2]}],
    "reference_point": [0.0, 0.0],
    "budget": {"trials": 3},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/mlflow.db", root


@pytest.fixture(scope="module")
def tracker(store: tuple[str, Path]) -> SearchTracker:
    uri, root = store
    return SearchTracker(uri, "tests", artifact_location=str(root / "artifacts"))


def test_resolve_tracking_uri_prefers_argument_then_env_then_cwd_sqlite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert resolve_tracking_uri(None) == "http://tracking:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri(None)
    assert uri == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()


def test_tracker_uses_env_uri_without_touching_mlflow_global_state(
    monkeypatch: pytest.MonkeyPatch, store: tuple[str, Path], tracker: SearchTracker
) -> None:
    uri, root = store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow.get_tracking_uri() != uri  # the module's tracker did not set the global URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    other = SearchTracker(None, "tests-env", artifact_location=str(root / "artifacts-env"))
    assert other.tracking_uri == uri
    assert other.experiment_id != tracker.experiment_id
    # Same experiment name again: found, not created twice.
    assert SearchTracker(uri, "tests-env").experiment_id == other.experiment_id
    assert mlflow.active_run() is None


def test_parent_and_nested_children_are_found_by_parent_run_id(
    tracker: SearchTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tracker.start_search("nested", CONFIG)
    children = [tracker.start_trial(parent, f"trial_{i}", {"solver": "mgda", "lr": 10.0**-i}) for i in range(3)]
    # The fluent `mlflow.search_runs` reads the global tracking URI, which falls back to the env var
    # (tests/conftest.py makes sure no earlier test left a global URI behind).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    df = mlflow.search_runs(
        experiment_ids=[tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    assert sorted(df["run_id"]) == sorted(children)
    assert sorted(df["tags.mlflow.runName"]) == ["trial_0", "trial_1", "trial_2"]
    assert set(df[f"tags.{TAG_KIND}"]) == {"trial"}
    assert set(df[f"tags.{TAG_SEARCH}"]) == {"nested"}
    assert tracker.list_trials(parent) == {f"trial_{i}": children[i] for i in range(3)}

    record = tracker.get_run(parent)
    assert record.name == "nested"
    assert record.status == "RUNNING"
    assert record.tags[TAG_SEARCH] == "nested"
    assert record.tags[TAG_KIND] == "search"
    assert record.params["problem.name"] == "multi_mnist"
    assert record.params["problem.tasks"] == '["left", "right"]'
    assert record.params["solvers.1.lr"] == "[0.001, 0.01]"
    assert tracker.get_run(children[2]).params == {"solver": "mgda", "lr": "0.01"}
    # The config is also stored verbatim.
    assert tracker.find_search("nested") == parent
    assert tracker.find_search("no such search") is None


def test_config_artifact_round_trips(tracker: SearchTracker, tmp_path: Path) -> None:
    parent = tracker.start_search("config", {**CONFIG, "weights": np.array([0.5, 0.5])})
    local = tracker.download_artifact(parent, "config.yaml", tmp_path)
    assert yaml.safe_load(local.read_text()) == {**CONFIG, "weights": [0.5, 0.5]}


def test_failed_child_has_status_and_error_tag(tracker: SearchTracker) -> None:
    parent = tracker.start_search("failing", CONFIG)
    ok = tracker.start_trial(parent, "ok", {})
    bad = tracker.start_trial(parent, "bad", {})
    tracker.end_run(ok, "FINISHED")
    traceback = "Traceback (most recent call last):\n" + "  frame\n" * 2000 + "RuntimeError: loss is NaN"
    tracker.end_run(bad, "FAILED", error=traceback)
    record = tracker.get_run(bad)
    assert record.status == "FAILED"
    assert len(record.tags[TAG_ERROR]) <= 5000
    assert record.tags[TAG_ERROR].endswith("RuntimeError: loss is NaN")  # the end of a traceback is kept
    assert record.tags[TAG_ERROR].startswith("[... first ")
    assert tracker.get_run(ok).status == "FINISHED"
    assert TAG_ERROR not in tracker.get_run(ok).tags
    with pytest.raises(ValueError, match=r"`status` should be one of .*Found 'DONE'"):
        tracker.end_run(ok, "DONE")  # type: ignore[arg-type]


def test_resume_reopens_parent_and_reuses_trial_runs(tracker: SearchTracker) -> None:
    parent = tracker.start_search("resumable", CONFIG)
    trial = tracker.start_trial(parent, "t0", {"lr": 0.1})
    tracker.log_metrics(trial, {"loss": 1.0}, step=0)
    tracker.end_run(trial, "KILLED")
    tracker.end_run(parent, "KILLED")

    found = tracker.find_search("resumable")
    assert found == parent
    assert tracker.start_search("resumable", CONFIG, run_id=found) == parent
    assert tracker.get_run(parent).status == "RUNNING"
    assert tracker.get_run(parent).tags[TAG_RESUME_COUNT] == "1"
    # New param keys are added, a changed value keeps the first one (MLflow params are immutable).
    assert tracker.start_trial(parent, "t0", {"lr": 0.2, "seed": 3}) == trial
    record = tracker.get_run(trial)
    assert record.status == "RUNNING"
    assert record.params == {"lr": "0.1", "seed": "3"}
    assert record.tags[TAG_TRIAL_ID] == "t0"
    tracker.log_metrics(trial, {"loss": 0.5}, step=1)
    assert tracker.get_metric_history(trial, "loss") == [(0, 1.0), (1, 0.5)]
    assert tracker.list_trials(parent) == {"t0": trial}


def test_resume_with_wrong_run_is_an_error(tracker: SearchTracker) -> None:
    parent = tracker.start_search("first", CONFIG)
    trial = tracker.start_trial(parent, "t", {})
    with pytest.raises(ValueError, match="not the parent run of search 'second'"):
        tracker.start_search("second", CONFIG, run_id=parent)
    with pytest.raises(ValueError, match="not the parent run of search 'first'"):
        tracker.start_search("first", CONFIG, run_id=trial)


def test_find_search_returns_the_latest(tracker: SearchTracker) -> None:
    tracker.start_search("twice", CONFIG)
    second = tracker.start_search("twice", CONFIG)
    assert tracker.find_search("twice") == second
    assert tracker.find_search("it's") is None  # quotes in names do not break the filter string


def test_metrics_with_steps_and_non_finite_values(tracker: SearchTracker) -> None:
    run = tracker.start_trial(tracker.start_search("metrics", CONFIG), "m", {})
    for step in range(3):
        tracker.log_metrics(run, {"left_acc": 0.5 + 0.1 * step, "right_loss": np.float32(1.0 / (step + 1))}, step)
    tracker.log_metrics(run, {"left_acc": float("nan"), "bad": "not a number", "hv": float("inf")}, step=3)
    client = mlflow.MlflowClient(tracking_uri=tracker.tracking_uri)
    history = client.get_metric_history(run, "left_acc")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert [m.value for m in history][:3] == pytest.approx([0.5, 0.6, 0.7])
    assert math.isnan(history[3].value)
    assert [v for _, v in tracker.get_metric_history(run, "right_loss")] == pytest.approx([1.0, 0.5, 1 / 3])
    assert tracker.get_metric_history(run, "bad") == []
    assert tracker.get_metric_history(run, "hv")[0][1] > 1e300  # sqlite keeps +inf as the largest double


def test_json_artifact_round_trip(tracker: SearchTracker, tmp_path: Path) -> None:
    run = tracker.start_search("artifacts", CONFIG)
    front = {
        "search": "artifacts",
        "objectives": ["left_acc", "right_acc"],
        "directions": ["max", "max"],
        "reference_point": (0.0, 0.0),
        "hypervolume": np.float64(0.81),
        "points": [{"trial_id": "t0", "member": 0, "values": np.array([0.9, 0.9]), "preference": None}],
    }
    tracker.log_json(run, front, "front/front.json")
    loaded = tracker.load_json_artifact(run, "front/front.json")
    assert loaded == {
        **front,
        "reference_point": [0.0, 0.0],
        "hypervolume": 0.81,
        "points": [{"trial_id": "t0", "member": 0, "values": [0.9, 0.9], "preference": None}],
    }
    tracker.log_json(run, [1, 2], "list.json")
    with pytest.raises(ValueError, match=r"should hold a JSON object\. Found list"):
        tracker.load_json_artifact(run, "list.json")

    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "front.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "plots" / "front.html").write_text("<html></html>")
    tracker.log_artifact_file(run, tmp_path / "plots" / "front.png", "single")
    tracker.log_artifact_dir(run, tmp_path / "plots", "all")
    tracker.log_text(run, "hello", "notes/readme.txt")
    assert set(tracker.list_artifacts(run)) >= {"config.yaml", "front", "single", "all", "notes"}
    assert sorted(tracker.list_artifacts(run, "all")) == ["all/front.html", "all/front.png"]
    got = tracker.download_artifact(run, "single/front.png", tmp_path / "dl")
    assert got.read_bytes() == b"\x89PNG fake"
    assert (tracker.download_artifact(run, "notes", tmp_path / "dl") / "readme.txt").read_text() == "hello"
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        tracker.log_artifact_file(run, tmp_path / "missing.png")
    assert tracker.artifact_uri(run, "/members/0/model") == f"runs:/{run}/members/0/model"


def test_comparison_run(tracker: SearchTracker) -> None:
    run = tracker.start_comparison(["a", "b"])
    tracker.log_metrics(run, {"hv/a": 0.5, "hv/b": 0.7}, step=0)
    tracker.end_run(run, "FINISHED")
    record = tracker.get_run(run)
    assert record.name == "compare a vs b"
    assert (record.tags[TAG_KIND], record.tags[TAG_COMPARED]) == ("comparison", "a,b")
    assert record.parent_run_id is None
    assert record.metrics == {"hv/a": 0.5, "hv/b": 0.7}
    assert tracker.find_search("a") is None  # a comparison is not a search
    with pytest.raises(ValueError, match="at least one search"):
        tracker.start_comparison([])


def test_front_member_tags(tracker: SearchTracker) -> None:
    trial = tracker.start_trial(tracker.start_search("tags", CONFIG), "t", {})
    tracker.set_front_members(trial, [3, 0, 2])
    tags = tracker.get_run(trial).tags
    assert tags[TAG_ON_FRONT_MEMBERS] == "0,2,3"
    assert tags[TAG_ON_FRONT] == "true"
    tracker.set_front_members(trial, [])  # tags can change as the global front moves
    tags = tracker.get_run(trial).tags
    assert tags[TAG_ON_FRONT_MEMBERS] == ""
    assert tags[TAG_ON_FRONT] == "false"
    tracker.set_tags(trial, {"note": "x" * 10_000})
    assert len(tracker.get_run(trial).tags["note"]) == 8000


def test_long_and_odd_params_are_logged_safely(tracker: SearchTracker) -> None:
    config = {
        "long": "v" * 7000,
        "k" * 300: 1,
        "k" * 299 + "x": 2,
        "weird[0]": "a",
        "weird(0)": "b",
        "many": {f"p{i}": i for i in range(150)},  # more than MLflow's 100 params per batch
    }
    flat = flatten_params(config, full_value_in="full value in config.yaml")
    assert len(flat["long"]) == 6000
    assert flat["long"].endswith("[truncated from 7000 chars; full value in config.yaml]")
    assert all(len(k) <= 250 for k in flat)
    assert len(flat) == len(config) - 1 + 150  # no key collided
    assert "weird_0_" in flat
    run = tracker.start_search("odd params", config)
    assert tracker.get_run(run).params == flat


def test_deleted_experiment_is_a_clear_error(store: tuple[str, Path]) -> None:
    uri, root = store
    doomed = SearchTracker(uri, "doomed", artifact_location=str(root / "doomed"))
    mlflow.MlflowClient(tracking_uri=uri).delete_experiment(doomed.experiment_id)
    with pytest.raises(ValueError, match=r"'doomed' .* is deleted"):
        SearchTracker(uri, "doomed")
