"""End-to-end searches through Ray Tune and MLflow on toy problems (slow: they start Ray)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow.fs as pafs
import pytest
import ray
import torch
import yaml

from pareto_search.cli import main
from pareto_search.config import parse_config
from pareto_search.front.pareto import Front, FrontPoint, Objective
from pareto_search.plan import make_plan
from pareto_search.search.runner import run_search
from tests.support.s3_server import s3_server
from trials.problems import make_problem

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "pareto_search.cli"]


@pytest.fixture(scope="module", autouse=True)
def _ray_once():
    """One embedded Ray for the in-process searches of this module (start-up costs seconds);
    its workers import the test plug-in problems from the repository root."""
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield
    ray.shutdown()


def _config(tmp_path: Path, name: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 20}},
        "reference_point": [1.0, 1.0],
        "epochs": 2,
        "solvers": [
            {
                "label": "mt2o",
                "solver": "tchebycheff",
                "solver_args": {"ideal": [0.0, 0.0]},
                "population": {"size": 3, "transfer": {"eps0": 0.3, "period": 5}},
                "optimizer": {"name": "adam", "lr": {"loguniform": [0.01, 0.05]}},
            },
            {"label": "linear", "solver": "linear", "optimizer": {"name": "adam", "lr": {"choice": [0.01, 0.03]}}},
        ],
        "search": {"algorithm": "random", "num_samples": 2, "max_failures": 0},
        "resources": {"cpus_per_trial": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    config.update(overrides)
    return config


def _runs(tmp_path: Path, name: str):
    # A client bound to this test's store, never the process-wide fluent URI: setting that
    # globally would leak into every later test in the session.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_ids = [client.get_experiment_by_name("tests").experiment_id]
    parent = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`pareto_search.search` = '{name}' and tags.`pareto_search.kind` = 'search'",
    )
    assert len(parent) == 1
    children = client.search_runs(
        experiment_ids, filter_string=f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'"
    )
    return parent[0], children


def test_four_trial_search_tracks_everything(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    plan = make_plan(parse_config(_config(tmp_path, "four")))
    front = run_search(plan).front
    parent, children = _runs(tmp_path, "four")

    assert parent.info.status == "FINISHED"
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"front.json", "front.csv", "front.png", "front.html", "config.yaml"} <= artifacts
    for child in children:  # two epochs of metrics per trial
        assert [m.step for m in client.get_metric_history(child.info.run_id, "trial_hv")] == [1, 2]

    # `front --format json` is exactly the MLflow artifact
    capsys.readouterr()
    assert main(["front", "four", "--format", "json", "--storage", str(tmp_path / "searches")]) == 0
    printed = json.loads(capsys.readouterr().out)
    local = client.download_artifacts(parent.info.run_id, "front.json", str(tmp_path))
    assert printed == json.loads(Path(local).read_text())

    # its HV is recomputable from its points and reference point, and is the global HV
    objectives = [Objective(n, d) for n, d in zip(printed["objectives"], printed["directions"], strict=True)]
    points = tuple(FrontPoint(f"p{i}", tuple(p["values"])) for i, p in enumerate(printed["points"]))
    recomputed = Front(objectives, points).hypervolume(printed["reference_point"]).value
    assert recomputed == pytest.approx(printed["hypervolume"], rel=1e-12)
    assert printed["hypervolume"] == pytest.approx(front.hypervolume().value, rel=1e-12)
    assert 0.0 < printed["hypervolume"] < 0.342116  # below the exact continuous front's HV

    # every front point's weights are stored cheaply on its trial's run (a member's latest epoch) or in the
    # search's storage (an earlier epoch kept on the front) and load into the model
    model = make_problem("toy2d").make_model()
    for point in printed["points"]:
        if "@e" in point["point"]:
            path = point["model_uri"]
            assert Path(path).is_file() and "epoch_weights" in path
        else:
            assert point["model_uri"].startswith("runs:/")
            path = mlflow.artifacts.download_artifacts(point["model_uri"], dst_path=str(tmp_path / "dl"))
        model.load_state_dict(torch.load(path, weights_only=True))
        f = torch.stack([1 - torch.exp(-((model.trunk.x - s / np.sqrt(20)) ** 2).sum()) for s in (1, -1)])
        assert f.tolist() == pytest.approx(point["values"], abs=1e-6)
    on_front = [c for c in children if c.data.tags.get("pareto_search.on_front") == "true"]
    assert {c.data.tags["pareto_search.trial_id"] for c in on_front} == {p["trial_id"] for p in printed["points"]}


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_max_concurrent_trials_runs_one_trial_at_a_time(tmp_path, monkeypatch, algorithm: str) -> None:
    """`search.max_concurrent_trials: 1` on 2 free CPUs: no two trials' MLflow runs (created at a trial's start,
    ended at its end) overlap. Tune ignores `TuneConfig.max_concurrent_trials` for a variant-generator instance (it
    only logs a warning), so `random` and `grid` once ran every trial at once."""
    monkeypatch.chdir(tmp_path)
    name = f"one-at-a-time-{algorithm}"
    config = _config(
        tmp_path,
        name,
        solvers=[_config(tmp_path, name)["solvers"][1]],
        search={"algorithm": algorithm, "num_samples": 3, "max_failures": 0, "max_concurrent_trials": 1},
    )
    assert run_search(make_plan(parse_config(config))).trials == 3
    _, children = _runs(tmp_path, name)
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    assert len(spans) == 3 and all(end is not None for _, end in spans)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans


@pytest.mark.parametrize(("mode", "error"), [("nan", "NonFiniteLossError"), ("raise", "simulated crash")])
def test_failing_trial_is_marked_failed_and_excluded(tmp_path, monkeypatch, mode: str, error: str) -> None:
    monkeypatch.chdir(tmp_path)
    config = _config(
        tmp_path,
        f"fail-{mode}",
        problem={"name": "tests.support.fault_problems:diverging", "args": {"mode": mode}},
        reference_point=None,
        solvers=[
            {"label": "ok", "solver": "linear", "optimizer": {"name": "sgd", "lr": 0.1}},
            {"label": "diverges", "solver": "linear", "optimizer": {"name": "sgd", "lr": 10.0}},
        ],
        search={"algorithm": "grid", "num_samples": 1, "max_failures": 0},
    )
    outcome = run_search(make_plan(parse_config(config)))
    front = outcome.front
    assert outcome.trials == 2 and len(outcome.failures) == 1
    assert error in outcome.failures[0].error and "error.txt" in outcome.failures[0].where
    parent, children = _runs(tmp_path, f"fail-{mode}")
    assert parent.info.status == "FINISHED"  # the search finished despite the failure
    by_status = {c.info.status: c for c in children}
    assert sorted(by_status) == ["FAILED", "FINISHED"]
    assert error in by_status["FAILED"].data.tags["pareto_search.error"]
    failed_trial = by_status["FAILED"].data.tags["pareto_search.trial_id"]
    assert all(p.data["trial_id"] != failed_trial for p in front.points.values())
    # the ok trial's latest point; its earlier epochs on the way there are other trade-offs, kept on the front
    (latest,) = (p for p in front.front().points if "@e" not in p.id)
    assert latest.values == pytest.approx((1.0, 1.0), abs=1e-3)


def _cli(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "pareto_search.cli", *args],
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _points(front_json: dict[str, Any]) -> list[tuple[str, int, tuple[float, ...]]]:
    # trial ids carry a random prefix per run; the suffix (the trial's index) is stable
    return sorted((p["trial_id"].split("_")[-1], p["member"], tuple(p["values"])) for p in front_json["points"])


def _wait_for_points(front_file: Path, process: subprocess.Popen, done_points: int, epochs: int = 5) -> None:
    """Until `done_points` points reached the last epoch (a trial finished, the search goes on); bounded."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if front_file.is_file():
            reached = [p["data"].get("epoch", 0) for p in json.loads(front_file.read_text())["points"]]
            if reached.count(epochs) >= done_points:
                return
        time.sleep(0.5)
    raise AssertionError(f"the search ended (exit {process.poll()}) or stalled before it could be interrupted")


def _fault_config(tmp_path: Path, name: str, run: str, **search: Any) -> Path:
    """The search every fault test interrupts: 2 trials, one at a time, 5 epochs; `run` names its folder;
    `search` adds settings of the `search` section."""
    config = _config(
        tmp_path,
        name,
        epochs=5,
        problem={"name": "toy2d", "args": {"steps_per_epoch": 150}},
        search={"algorithm": "random", "num_samples": 2, "max_concurrent_trials": 1, **search},
    )
    (tmp_path / run).mkdir()
    settings = {"storage": str(tmp_path / run / "searches"), "tracking": {"uri": f"sqlite:///{tmp_path}/{run}/m.db"}}
    path = tmp_path / run / "config.yaml"
    path.write_text(yaml.safe_dump({**config, **settings}))
    return path


def _front_json(name: str, storage: str) -> dict[str, Any]:
    printed = subprocess.run(
        [*CLI, "front", name, "--format", "json", "--storage", storage], capture_output=True, text=True, check=True
    )
    return json.loads(printed.stdout)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The front of the fault tests' search run straight through (the same seed: the same trials and values)."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    straight = _cli(["run", str(_fault_config(tmp_path, "straight", "straight"))], tmp_path / "straight")
    out, _ = straight.communicate(timeout=400)
    assert straight.returncode == 0, out[-3000:]
    return _front_json("straight", str(tmp_path / "straight" / "searches"))


def test_ctrl_c_exits_130_with_a_partial_front_and_resume_finishes_it(tmp_path, uninterrupted) -> None:
    stopped = _cli(["run", str(_fault_config(tmp_path, "interrupted", "stopped"))], tmp_path / "stopped")
    front_file = tmp_path / "stopped" / "searches" / "interrupted" / "pareto_search" / "front_points.json"
    _wait_for_points(front_file, stopped, done_points=3)
    os.kill(stopped.pid, signal.SIGINT)  # Ctrl-C reaches the driver
    out_stopped, _ = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, out_stopped[-3000:]
    assert "PARTIAL front (the search was interrupted)" in out_stopped
    assert out_stopped.rstrip().endswith("interrupted — `pareto-search resume interrupted` continues it")

    storage = str(tmp_path / "stopped" / "searches")
    resumed = _cli(["resume", "interrupted", "--storage", storage], tmp_path / "stopped")
    out_resumed, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, out_resumed[-3000:]
    front = _front_json("interrupted", storage)
    assert _points(front) == _points(uninterrupted) and front["hypervolume"] == uninterrupted["hypervolume"]


def test_killed_driver_resumes_to_the_same_front_from_a_copy_on_s3(tmp_path, monkeypatch, uninterrupted) -> None:
    """A driver is killed mid-search; its search folder is copied to S3 (a folder moved to shared storage) and
    resumed from there: the front equals the uninterrupted search's, and the original folder is untouched."""
    killed = _cli(["run", str(_fault_config(tmp_path, "resumable", "killed"))], tmp_path / "killed")
    search_dir = tmp_path / "killed" / "searches" / "resumable"
    front_file = search_dir / "pareto_search" / "front_points.json"
    _wait_for_points(front_file, killed, done_points=3)  # kill once a trial is done, mid-search
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    left_behind = front_file.read_bytes()

    with s3_server() as s3:
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        pafs.copy_files(str(search_dir), f"{s3.bucket}/moved/resumable", destination_filesystem=s3.filesystem())
        resumed = _cli(["resume", "resumable", "--storage", s3.uri("moved")], tmp_path / "killed")
        out_resumed, _ = resumed.communicate(timeout=400)
        assert resumed.returncode == 0, out_resumed[-3000:]
        front = _front_json("resumable", s3.uri("moved"))
    assert _points(front) == _points(uninterrupted), out_resumed[-6000:]
    assert front["hypervolume"] == uninterrupted["hypervolume"]
    assert front_file.read_bytes() == left_behind, "resuming the copy wrote into the original folder"


def test_checkpoints_every_few_epochs_a_killed_driver_resumes_to_the_same_front(tmp_path, uninterrupted) -> None:
    """`search.checkpoint_every: 2` with reused workers (the default): a driver killed between two checkpoints
    resumes from the older one, trains the epochs since again, and ends with the front of the uninterrupted run
    (which checkpointed every epoch) — no point lost, none different; every checkpoint kept is of an even epoch or
    the last."""
    driver = _cli(["run", str(_fault_config(tmp_path, "sparse", "run", checkpoint_every=2))], tmp_path / "run")
    search_dir = tmp_path / "run" / "searches" / "sparse"
    front_file = search_dir / "pareto_search" / "front_points.json"
    deadline = time.monotonic() + 240

    def epochs_reported() -> set[int]:
        points = json.loads(front_file.read_text())["points"] if front_file.is_file() else []
        return {p["data"]["epoch"] for p in points}

    while 3 not in epochs_reported():
        assert driver.poll() is None and time.monotonic() < deadline, "the search ended before epoch 3 of a trial"
        time.sleep(0.02)
    os.killpg(driver.pid, signal.SIGKILL)  # epoch 3 reported, not checkpointed
    driver.wait(timeout=30)
    resumed = _cli(["resume", "sparse", "--storage", str(search_dir.parent)], tmp_path / "run")
    out, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, out[-3000:]
    front = _front_json("sparse", str(search_dir.parent))
    assert _points(front) == _points(uninterrupted) and front["hypervolume"] == uninterrupted["hypervolume"]
    epochs = {
        torch.load(folder / "trainer.pt", weights_only=False)["epoch"]
        for folders in _checkpoints(search_dir).values()
        for folder in folders
    }
    assert epochs and epochs <= {2, 4, 5}, epochs


def _checkpoints(search_dir: Path) -> dict[str, list[Path]]:
    """Each trial folder's checkpoints, oldest first."""
    trials: dict[str, list[Path]] = {}
    for folder in sorted(search_dir.glob("*/checkpoint_*")):
        trials.setdefault(folder.parent.name, []).append(folder)
    return trials


def _trial_workers(session: int) -> list[int]:
    """Pids of the Tune trial actors (function trainables) started under the driver's session `session`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
                if title.startswith(b"ray::ImplicitFunc") and os.getsid(int(entry.name)) == session:
                    pids.append(int(entry.name))
            except (OSError, ProcessLookupError):
                continue
    return pids


def test_a_killed_trial_worker_is_retried_to_the_same_front(tmp_path, uninterrupted) -> None:
    """SIGKILL the process a trial trains in, mid-trial: Tune retries it (search.max_failures, default 1) from its
    last checkpoint; the search exits 0 and the front equals the uninterrupted run's."""
    driver = _cli(["run", str(_fault_config(tmp_path, "worker", "run"))], tmp_path / "run")
    front_file = tmp_path / "run" / "searches" / "worker" / "pareto_search" / "front_points.json"
    deadline, killed = time.monotonic() + 240, []
    while not killed and time.monotonic() < deadline and driver.poll() is None:
        points = json.loads(front_file.read_text())["points"] if front_file.is_file() else []
        epochs = [p["data"]["epoch"] for p in points]
        if any(2 <= e < 5 for e in epochs):  # a trial is mid-way
            for pid in _trial_workers(driver.pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    assert killed, "no trial worker was found mid-trial"
    out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, out[-3000:]
    front = _front_json("worker", str(tmp_path / "run" / "searches"))
    assert _points(front) == _points(uninterrupted) and front["hypervolume"] == uninterrupted["hypervolume"]


def test_two_searches_writing_one_sqlite_store_at_once_both_complete(tmp_path, uninterrupted) -> None:
    """Two drivers (each with its own Ray) log to one sqlite MLflow store at the same time: both exit 0, both
    fronts equal the uninterrupted run's, and the store holds both searches' runs, finished."""
    configs = [_fault_config(tmp_path, name, name) for name in ("one", "two")]
    shared = f"sqlite:///{tmp_path}/shared.db"
    for path in configs:
        config = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**config, "tracking": {"uri": shared, "experiment": "tests"}}))
    drivers = [_cli(["run", str(path)], path.parent) for path in configs]
    outputs = [driver.communicate(timeout=600)[0] for driver in drivers]
    for driver, out in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, out[-3000:]
    for name in ("one", "two"):
        front = _front_json(name, str(tmp_path / name / "searches"))
        assert _points(front) == _points(uninterrupted) and front["hypervolume"] == uninterrupted["hypervolume"]
    client = mlflow.MlflowClient(shared)
    searches = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id], "tags.`pareto_search.kind` = 'search'"
    )
    assert sorted((r.data.tags["pareto_search.search"], r.info.status) for r in searches) == [
        ("one", "FINISHED"),
        ("two", "FINISHED"),
    ]
