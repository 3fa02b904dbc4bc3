"""Members on Ray actors survive the loss of the node under one of them (slow): on a real 2-node cluster on
127.0.0.1 with `member_strategy: SPREAD`, the worker node holding a member is removed mid-search; the trial fails,
Tune restores it — every member from the same checkpoint — on the node left, and the front equals the one an
uninterrupted search of the same config finds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ray_cluster import local_ray_cluster, stop_processes

CLI = [sys.executable, "-m", "pareto_search.cli"]
EPOCHS = 5
RUN_TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, name: str) -> Path:
    config = {
        "name": name,
        # 3 tasks on a small MLP; 128 steps an epoch: seconds per epoch with the members apart, time to remove a node
        "problem": {"name": "related3", "args": {"n_train": 4096, "n_val": 256, "n_test": 256, "batch_size": 32}},
        "epochs": EPOCHS,
        "seed": 5,
        "solvers": [
            {
                "label": "mt2o",
                "method": "mt2o",
                "population": {"size": 2, "placement": "actors"},
                "optimizer": {"name": "adam", "lr": 0.01},
            }
        ],
        "search": {"algorithm": "random", "num_samples": 1, "max_failures": 3},
        # The trial's own bundle (2 CPUs) fits only the head, so SPREAD puts a member, not the trial, on the
        # one-CPU worker node; the head (4 CPUs) holds the whole trial again once that node is gone.
        "resources": {"cpus_per_trial": 2, "cpus_per_member": 1, "member_strategy": "SPREAD"},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "faults"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config: Path, cluster: Any, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", str(config), "--address", cluster.gcs_address],
        cwd=cwd,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _front(tmp_path: Path, name: str) -> list[tuple[Any, ...]]:
    front = json.loads((tmp_path / "searches" / name / "pareto_search" / "front_points.json").read_text())
    return sorted((tuple(p["values"]), tuple(p["data"]["preference"]), p["data"].get("epoch")) for p in front["points"])


def _checkpoint_epochs(storage: Path, name: str) -> int:
    folders = list(storage.glob(f"{name}/*/checkpoint_*"))
    return max((int(f.name.rsplit("_", 1)[1]) + 1 for f in folders), default=0)  # Tune numbers them from 0


_STATE_QUERY = """
import json, sys
from ray.util.state import list_actors, list_nodes
address, kind = sys.argv[1], sys.argv[2]
if kind == "actors":
    rows = list_actors(address=address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    print(json.dumps({a.actor_id: a.node_id for a in rows if a.class_name == "MemberWorker"}))
else:
    rows = list_nodes(address=address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
    print(json.dumps([n.node_id for n in rows if not n.is_head_node]))
"""


def _state(cluster: Any, kind: str) -> Any:
    """The cluster's state API, asked from a fresh process with the cluster's token: Ray caches the first auth
    token a process reads, so asking from this one would send the token of a cluster an earlier test started."""
    result = subprocess.run(
        [sys.executable, "-c", _STATE_QUERY, cluster.dashboard, kind],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _member_nodes(cluster: Any) -> dict[str, str]:
    """Alive MemberWorker actors and the node each runs on."""
    return dict(_state(cluster, "actors"))


def _worker_node(cluster: Any) -> str:
    (worker,) = _state(cluster, "nodes")
    return str(worker)


def test_losing_the_node_under_a_member_restores_every_member_and_the_front(tmp_path: Path) -> None:
    with local_ray_cluster(tmp_path / "home", worker_cpus=(1,), head_cpus=4) as cluster:
        # The front to match: the same search, nothing removed.
        uninterrupted = _run(_config(tmp_path, "whole"), cluster, tmp_path)
        output, _ = uninterrupted.communicate(timeout=RUN_TIMEOUT_S)
        assert uninterrupted.returncode == 0, output[-3000:]

        driver = _run(_config(tmp_path, "cut"), cluster, tmp_path)
        try:
            deadline = time.monotonic() + 300
            worker = _worker_node(cluster)
            while _checkpoint_epochs(tmp_path / "searches", "cut") < 2:
                assert driver.poll() is None, driver.stdout.read()[-3000:] if driver.stdout else ""
                assert time.monotonic() < deadline, "the trial did not checkpoint epoch 2 within 300 s"
                time.sleep(0.5)
            members = _member_nodes(cluster)
            # The fault is the one meant: the search runs, and one of its members lives on the node removed.
            assert len(members) == 2 and worker in members.values(), members
            stop_processes(str(cluster.worker_dirs[0]))  # the worker node is gone, with the member on it
            output, _ = driver.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(timeout=30)
    assert driver.returncode == 0, output[-4000:]
    state = json.loads(max((tmp_path / "searches" / "cut").glob("experiment_state-*.json")).read_text())
    failures = [json.loads(metadata).get("num_failures", 0) for _, metadata in state["trial_data"]]
    assert sum(failures) >= 1, f"the trial was not interrupted by the node removal: {failures}"
    assert _front(tmp_path, "cut") == _front(tmp_path, "whole")
