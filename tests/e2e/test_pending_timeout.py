"""A search whose trials no node can place stops after `search.pending_timeout_s`, saying what was asked."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from pareto_search.config import ResourcesConfig
from pareto_search.search import resources
from pareto_search.search.resources import PendingWatch, PlacementTimeout
from tests.support.ray_cluster import local_ray_cluster

CLI = [sys.executable, "-m", "pareto_search.cli"]


def _trials(*statuses: str) -> list:
    return [SimpleNamespace(status=s) for s in statuses]


def test_the_watch_stops_only_a_search_that_places_nothing_for_the_bound(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(resources.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(resources, "node_resources", lambda: [{"CPU": 1.0}, {"CPU": 2.0, "GPU": 0.0}])
    watch = PendingWatch(ResourcesConfig(cpus_per_trial=4), timeout_s=60)
    watch.on_step_begin(0, _trials("PENDING", "PENDING"))
    clock[0] += 59
    watch.on_step_begin(1, _trials("PENDING", "PENDING"))  # within the bound
    clock[0] += 30
    watch.on_step_begin(2, _trials("RUNNING", "PENDING"))  # a trial runs: the clock starts again
    clock[0] += 1
    watch.on_step_begin(3, _trials("TERMINATED", "PENDING"))
    clock[0] += 60
    watch.on_step_begin(4, _trials("TERMINATED", "PENDING"))  # exactly the bound: still waiting
    clock[0] += 1
    with pytest.raises(PlacementTimeout) as stopped:
        watch.on_step_begin(5, _trials("TERMINATED", "PENDING"))
    assert str(stopped.value) == (
        "no trial could be placed for 60 s (`search.pending_timeout_s`): each asks for 4 CPU and 0 GPU "
        "(`resources`), the cluster's nodes offer 1 CPU/0 GPU, 2 CPU/0 GPU"
    )
    watch.on_step_begin(6, _trials("TERMINATED", "TERMINATED"))  # nothing waits: never stops


@pytest.mark.slow
def test_a_search_asking_more_than_any_cluster_node_has_stops_with_exit_1(tmp_path) -> None:
    config = {
        "name": "toobig",
        "problem": {"name": "toy2d"},
        "reference_point": [1.0, 1.0],
        "epochs": 1,
        "solvers": [{"solver": "linear"}],
        "resources": {"cpus_per_trial": 2},  # the one node has 1 CPU
        "search": {"pending_timeout_s": 10},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/m.db"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with local_ray_cluster(tmp_path / "home", worker_cpus=(), head_cpus=1) as cluster:
        done = subprocess.run(
            [*CLI, "run", str(tmp_path / "c.yaml"), "--address", cluster.gcs_address],
            cwd=tmp_path,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "no trial could be placed for 10 s (`search.pending_timeout_s`): each asks for 2 CPU and 0 GPU" in last
    assert "the cluster's nodes offer 1 CPU/0 GPU" in last and "`pareto-search resume toobig` continues it" in last
