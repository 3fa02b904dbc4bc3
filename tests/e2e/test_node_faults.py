"""A worker node removed while its trials run, on a real 2-node Ray cluster on 127.0.0.1 (slow): the search
completes, the interrupted trials continue from their last checkpoint, and nothing is lost or duplicated in
the front or in MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.support.ray_cluster import local_ray_cluster, stop_processes

CLI = [sys.executable, "-m", "pareto_search.cli"]
EPOCHS = 8
RUN_TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    config = {
        "name": "faults",
        # ~1 s per epoch: long enough to remove a node mid-trial
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 400}},
        "epochs": EPOCHS,
        "solvers": [
            {
                "label": "pop",
                "solver": "linear",
                "population": {"size": 2},
                "optimizer": {"name": "adam", "lr": {"grid": [0.01, 0.02, 0.03]}},
            }
        ],
        "search": {"algorithm": "grid", "num_samples": 1, "max_failures": 3},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "faults"},
    }
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _checkpointed_trials(storage: Path, epoch: int) -> int:
    """Trials whose checkpoint of `epoch` (or later) is in storage."""
    trials = set()
    for folder in storage.glob("faults/*/checkpoint_*"):
        if int(folder.name.rsplit("_", 1)[1]) >= epoch - 1:  # Tune numbers checkpoints from 0
            trials.add(folder.parent.name)
    return len(trials)


def test_removing_a_worker_node_loses_and_duplicates_nothing(tmp_path) -> None:
    config = _config(tmp_path)
    with local_ray_cluster(tmp_path / "home", worker_cpus=(2,), head_cpus=1) as cluster:
        driver = subprocess.Popen(
            [*CLI, "run", str(config), "--address", cluster.gcs_address],
            cwd=tmp_path,
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 240
            # three trials, one CPU each: one on the head, two on the worker; wait until all have 2 epochs saved
            while _checkpointed_trials(tmp_path / "searches", 2) < 3:
                assert driver.poll() is None, driver.stdout.read()[-3000:]
                assert time.monotonic() < deadline, "trials did not reach epoch 2 within 240 s"
                time.sleep(0.5)
            stop_processes(str(cluster.worker_dirs[0]))  # the worker node is gone, with its trials
            output, _ = driver.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(timeout=30)
    assert driver.returncode == 0, output[-4000:]

    front = json.loads((tmp_path / "searches" / "faults" / "pareto_search" / "front_points.json").read_text())
    latest = [p for p in front["points"] if "@e" not in p["id"]]  # not the earlier epochs kept on the front
    ids = [p["id"] for p in latest]
    assert len(ids) == len(set(ids)) == 3 * 2  # every member of every trial, once
    assert all(p["data"]["epoch"] == EPOCHS for p in latest)

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("faults").experiment_id
    children = client.search_runs([experiment], "tags.`pareto_search.kind` = 'trial'")
    assert sorted(r.data.tags["pareto_search.trial_id"] for r in children) == sorted({i.split("/")[0] for i in ids})
    for run in children:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "trial_hv"))
        trial = run.data.tags["pareto_search.trial_id"]
        assert sorted(set(steps)) == list(range(1, EPOCHS + 1)), (trial, steps)
        # A trial that lost its node continues from its last checkpoint the driver had registered: at most the
        # epoch in flight is run again (its result may have arrived before its checkpoint was recorded), and
        # never epoch 1 (the node went away after every trial had checkpointed epoch 2): no restart from scratch.
        repeated = [step for step in set(steps) if steps.count(step) > 1]
        assert len(steps) - len(set(steps)) <= 1 and all(step >= 2 for step in repeated), (trial, steps)
    state = json.loads(max((tmp_path / "searches" / "faults").glob("experiment_state-*.json")).read_text())
    # Tune keeps each trial as (its state, its run metadata); the metadata counts the trial's failures
    failures = [json.loads(metadata).get("num_failures", 0) for _, metadata in state["trial_data"]]
    assert sum(failures) >= 1, f"no trial was interrupted by the node removal: {failures}"
