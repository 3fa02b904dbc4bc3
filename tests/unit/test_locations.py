"""Where a search keeps things (locations.py): one resolution of its storage and tracking store, recorded as the
user gave it and resolved again by every command where it runs — a search addressed from another folder opens
its own store, and a working folder moved with its search and its mlflow.db keeps working where it now is."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from pareto_search.config import parse_config
from pareto_search.locations import TrackingRecord, find_search, resolve_locations
from pareto_search.plan import PLAN_DIR, PLAN_FILE, SearchPlan, load_plan
from pareto_search.storage import Location
from pareto_search.tracking.client import SearchTracker
from pareto_search.tracking.store import rebase_moved_artifacts, sqlite_store
from tests.e2e.test_search_service import (  # the fault tests' search and helpers (one definition of each)
    _fault_config,
    _front_json,
    _points,
    _wait_for_points,
    uninterrupted,  # noqa: F401 - a fixture (the uninterrupted search's front), found here by pytest
)

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "pareto_search.cli"]
ENV_NAMES = ("MLFLOW_TRACKING_URI", "PARETO_SEARCH_STORAGE")


def _config(name: str = "s", **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "problem": {"name": "toy2d"},
        "reference_point": [1.0, 1.0],
        "solvers": [{"label": "l", "solver": "linear"}],
        **overrides,
    }


def _saved_plan(workdir: Path, config: dict[str, Any], env: dict[str, str]) -> SearchPlan:
    """What `run` saves for `config` started in `workdir` with `env` (its search.json), without training."""
    parsed = parse_config(config)
    locations = resolve_locations(parsed, cwd=workdir, env=env)
    assert locations.storage_dir is not None
    plan = SearchPlan(parsed, (), (1.0, 1.0), locations.storage_dir, tracking=locations.tracking)
    plan.save("parent-run")
    return plan


# -- the resolution itself -------------------------------------------------------------------------------------


def test_default_is_recorded_relative_and_resolved_from_another_folder(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    plan = _saved_plan(a, _config(storage="searches"), env={})
    recorded = json.loads((a / "searches" / "s" / PLAN_DIR / PLAN_FILE).read_text())["locations"]["tracking"]
    assert recorded == {"source": "default", "store": "the working folder's mlflow.db", "working_folder": "../.."}
    assert str(tmp_path) not in json.dumps(recorded), "the default store was recorded as an absolute path"
    assert plan.tracking == TrackingRecord("default", working_folder="../..")

    # From folder b (with its own environment) through --storage a/searches: a's store, not b's.
    loaded, parent, locations = find_search(str(a / "searches"), "s", cwd=b, env={"MLFLOW_TRACKING_URI": "http://x"})
    assert parent == "parent-run" and loaded.tracking == plan.tracking
    assert locations.tracking_uri == sqlite_store(a) and locations.storage_dir == Location(a / "searches" / "s")
    # A relative --storage is taken from the command's folder.
    _, _, relative = find_search("../a/searches", "s", cwd=b, env={})
    assert relative.tracking_uri == sqlite_store(a) and locations.note is None

    # The folder moved (with its searches): the store is the one where it now is.
    moved = tmp_path / "moved"
    shutil.move(a, moved)
    _, _, here = find_search("searches", "s", cwd=moved, env={})
    assert here.tracking_uri == sqlite_store(moved) and here.storage_dir == Location(moved / "searches" / "s")


def test_storage_outside_the_working_folder_uses_the_commands_folder(tmp_path) -> None:
    work, shared, other = tmp_path / "work", tmp_path / "shared", tmp_path / "other"
    for folder in (work, shared, other):
        folder.mkdir()
    plan = _saved_plan(work, _config(storage=str(shared)), env={})
    assert plan.tracking == TrackingRecord("default", working_folder=None)
    assert resolve_locations(load_plan(shared, "s")[0], cwd=other, env={}).tracking_uri == sqlite_store(other)
    # A search folder moved away from its store without it: the command's folder, where the store is found.
    (other / "mlflow.db").write_bytes(b"")
    copied = tmp_path / "copy"
    shutil.copytree(shared, copied)
    assert resolve_locations(load_plan(copied, "s")[0], cwd=other, env={}).tracking_uri == sqlite_store(other)


def test_explicit_and_environment_uris_are_recorded_as_written(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _saved_plan(a, _config("e", storage="searches", tracking={"uri": "sqlite:///rel.db"}), env={})
    plan, _, locations = find_search(a / "searches", "e", cwd=b, env={"MLFLOW_TRACKING_URI": "http://elsewhere"})
    assert plan.tracking == TrackingRecord("explicit", uri="sqlite:///rel.db")
    assert locations.tracking_uri == "sqlite:///rel.db"  # as written: MLflow takes it from the command's folder

    _saved_plan(a, _config("v", storage="searches"), env={"MLFLOW_TRACKING_URI": " http://team:5000 "})
    recorded = json.loads((a / "searches" / "v" / PLAN_DIR / PLAN_FILE).read_text())["locations"]["tracking"]
    assert recorded == {"source": "env", "uri": "http://team:5000"}
    # The environment at the time the command runs; without one, the value the search was started with.
    assert find_search(a / "searches", "v", cwd=b, env={})[2].tracking_uri == "http://team:5000"
    moved_server = {"MLFLOW_TRACKING_URI": "http://tunnel:5001"}
    assert find_search(a / "searches", "v", cwd=b, env=moved_server)[2].tracking_uri == "http://tunnel:5001"


def test_an_old_search_json_with_a_gone_absolute_store_uses_this_folders_mlflow_db(tmp_path) -> None:
    old, now = tmp_path / "old", tmp_path / "now"
    old.mkdir()
    config = _config("legacy", storage="searches", tracking={"uri": f"sqlite:///{old}/mlflow.db"})
    _saved_plan(old, config, env={})
    plan_file = old / "searches" / "legacy" / PLAN_DIR / PLAN_FILE
    data = json.loads(plan_file.read_text())
    del data["locations"]  # as written before searches recorded their locations
    plan_file.write_text(json.dumps(data))
    (old / "mlflow.db").write_bytes(b"")
    shutil.move(old, now)

    plan, _, locations = find_search("searches", "legacy", cwd=now, env={})
    assert plan.tracking is None
    assert locations.tracking_uri == sqlite_store(now)
    assert locations.note is not None and "\n" not in locations.note
    assert f"{old}/mlflow.db" in locations.note and str(now / "mlflow.db") in locations.note
    # Where the recorded store still exists, it is used as written.
    (old).mkdir()
    (old / "mlflow.db").write_bytes(b"")
    assert find_search("searches", "legacy", cwd=now, env={})[2].tracking_uri == f"sqlite:///{old}/mlflow.db"
    # An old search.json without tracking.uri: the environment, else this folder's store (as before).
    data["config"]["tracking"]["uri"] = None
    plan_file = now / "searches" / "legacy" / PLAN_DIR / PLAN_FILE
    plan_file.write_text(json.dumps(data))
    env = {"MLFLOW_TRACKING_URI": "http://x"}
    assert find_search("searches", "legacy", cwd=now, env=env)[2].tracking_uri == "http://x"
    assert find_search("searches", "legacy", cwd=now, env={})[2].tracking_uri == sqlite_store(now)


def test_a_moved_default_store_keeps_its_artifacts_where_it_now_is(tmp_path, monkeypatch) -> None:
    old, now = tmp_path / "old", tmp_path / "now"
    old.mkdir()
    monkeypatch.chdir(old)  # the default store: ./mlflow.db, its artifacts in ./mlruns
    tracker = SearchTracker(sqlite_store(old), "moving")
    run_id = tracker.start_search("m", {"a": 1})
    tracker.log_text(run_id, "before", "before.txt")
    tracker.end_run(run_id, "KILLED")
    assert tracker.moved_note is None
    monkeypatch.chdir(tmp_path)
    shutil.move(old, now)

    moved = SearchTracker(sqlite_store(now), "moving")
    assert moved.moved_note is not None and f"{old}/mlruns" in moved.moved_note
    assert rebase_moved_artifacts(sqlite_store(now)) is None  # once
    client = mlflow.MlflowClient(sqlite_store(now))
    assert client.get_run(run_id).info.artifact_uri.startswith(f"{now}/mlruns/")
    moved.log_text(run_id, "after", "after.txt")
    downloaded = Path(client.download_artifacts(run_id, "before.txt", str(tmp_path)))
    assert downloaded.read_text() == "before"
    assert sorted(p.name for p in (now / "mlruns").rglob("*.txt")) == ["after.txt", "before.txt"]
    assert not old.exists(), "the moved store wrote into the folder it was moved from"


# -- end to end ------------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """The CLI's environment: no tracking URI or storage of the caller's; the plug-in problem importable."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, limit_s: float = 400) -> str:
    try:
        return process.communicate(timeout=limit_s)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out = process.communicate(timeout=60)[0]
        pytest.fail(f"{' '.join(process.args[3:])!r} did not end in {limit_s} s; killed with its Ray:\n{out[-3000:]}")


@pytest.mark.slow
def test_a_shared_store_named_from_elsewhere_keeps_its_artifact_paths(tmp_path, monkeypatch) -> None:
    """A sqlite store named by an explicit URI from another folder, whose artifacts live in that folder's mlruns:
    a `mlruns` beside the store is no reason to rewrite its paths (its runs would point at files not there)."""
    shared, work = tmp_path / "shared", tmp_path / "work"
    shared.mkdir()
    work.mkdir()
    (shared / "mlruns").mkdir()  # e.g. a server's artifact folder beside the file
    monkeypatch.chdir(work)  # MLflow puts the artifacts in ./mlruns of this folder
    tracker = SearchTracker(sqlite_store(shared), "shared")
    run_id = tracker.start_search("s", {"a": 1})
    tracker.log_text(run_id, "kept", "kept.txt")
    tracker.end_run(run_id, "FINISHED")
    assert (work / "mlruns").is_dir()  # the setting meant: artifacts written beside the command, not the store
    again = SearchTracker(sqlite_store(shared), "shared")
    assert again.moved_note is None
    client = mlflow.MlflowClient(sqlite_store(shared))
    assert client.get_run(run_id).info.artifact_uri.startswith(f"{work}/mlruns/")
    assert Path(client.download_artifacts(run_id, "kept.txt", str(tmp_path))).read_text() == "kept"


def test_select_register_from_another_folder_lands_in_the_searchs_own_store(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    config = {
        "name": "there",
        "problem": {"name": "examples.plugin_problem:make", "args": {"n_train": 256, "n_val": 64, "n_test": 64}},
        "epochs": 2,
        "solvers": [{"label": "pop", "solver": "linear", "population": {"size": 2}}],
        "search": {"algorithm": "grid", "num_samples": 1},
        "tracking": {"experiment": "tests"},  # default store: a's mlflow.db; default storage: a/searches
    }
    (a / "search.yaml").write_text(yaml.safe_dump(config))
    out = _finish(_start(["run", "search.yaml"], a))
    assert (a / "mlflow.db").is_file() and (a / "searches" / "there").is_dir(), out[-3000:]

    selected = subprocess.run(
        [*CLI, "select", "there", "--knee", "--register", "far-model", "--storage", str(a / "searches")],
        cwd=b,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert selected.returncode == 0, selected.stderr[-3000:]
    assert f"--tracking-uri {sqlite_store(a)}" in selected.stdout
    client = mlflow.MlflowClient(sqlite_store(a), registry_uri=sqlite_store(a))
    assert str(client.get_model_version_by_alias("far-model", "champion").version) == "1"
    assert sorted(p.name for p in b.iterdir()) == [], "the command's own folder got a store (or its artifacts)"


@pytest.mark.slow
def test_a_killed_search_moved_with_its_store_resumes_where_it_now_is(tmp_path, request) -> None:
    straight = request.getfixturevalue("uninterrupted")  # the same search run straight through
    config = yaml.safe_load(_fault_config(tmp_path, "portable", "run").read_text())
    config.update(storage="searches", tracking={"experiment": "tests"})  # the working folder holds both
    run = tmp_path / "run"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    driver = _start(["run", "config.yaml"], run)
    files = run / "searches" / "portable" / PLAN_DIR
    _wait_for_points(files / "front_points.json", driver, done_points=3)  # one trial done, the search goes on
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    partial = _front_json("portable", str(run / "searches"))
    assert partial["points"] and _points(partial) != _points(straight), "nothing to resume: no fault happened"
    parent_run_id = json.loads((files / PLAN_FILE).read_text())["parent_run_id"]
    store = mlflow.MlflowClient(sqlite_store(run))
    assert store.get_run(parent_run_id).info.status == "RUNNING"  # killed: never ended
    del store

    moved = tmp_path / "moved" / "here"
    moved.parent.mkdir()
    shutil.move(run, moved)
    resumed = _start(["resume", "portable"], moved)
    out = _finish(resumed)
    assert resumed.returncode == 0, out[-4000:]
    assert "Run with id" not in out and "Unable to set up cluster storage" not in out, out[-4000:]
    front = _front_json("portable", str(moved / "searches"))
    assert _points(front) == _points(straight) and front["hypervolume"] == straight["hypervolume"]
    client = mlflow.MlflowClient(sqlite_store(moved))
    assert client.get_run(parent_run_id).info.status == "FINISHED"
    assert client.get_run(parent_run_id).info.artifact_uri.startswith(f"{moved}/mlruns/")
    assert "front.json" in {a.path for a in client.list_artifacts(parent_run_id)}
    assert not run.exists(), f"resuming the moved search wrote into its old folder: {sorted(run.rglob('*'))[:10]}"
