"""A tracking server that goes away mid-search: writes are buffered in order, replayed when it returns, and a
server that stays away stops the search after the bound with the front still in storage.

The queue's rules are checked with a fake clock; the end-to-end tests stop a real `mlflow server` (basic-auth,
sqlite store) under a running `pareto-search run` (slow).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from pareto_search.testing.processes import free_port, stop_process_group
from pareto_search.tracking.outage import BackgroundWrites, TrackingQueue, TrackingUnavailable
from tests.support.mlflow_server import ADMIN_PASSWORD_ENV, ADMIN_USERNAME_ENV, mlflow_server

OUTAGE_S = 30.0


class Server:
    """A flaky tracking server for the queue: refuses while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.written: list[str] = []

    def write(self, name: str) -> Any:
        def call() -> None:
            if self.down:
                raise MlflowException("API request to http://127.0.0.1:1/api failed with exception refused")
            self.written.append(name)

        return call


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_background_writes_leave_the_driver_at_once_keep_their_order_and_are_all_done_at_flush() -> None:
    server, release = Server(), threading.Event()
    writes = BackgroundWrites(TrackingQueue("http://tracking", bound_s=60))
    writes.submit("slow", lambda: release.wait(timeout=30))  # the thread is busy with this one
    start = time.monotonic()
    for k in range(50):
        writes.submit(f"w{k}", server.write(f"w{k}"))
    assert time.monotonic() - start < 1.0 and server.written == []  # handed over, not done in the caller
    release.set()
    writes.flush()
    assert server.written == [f"w{k}" for k in range(50)]
    writes.submit("late", server.write("late"))  # after the end: done in the caller, not lost
    assert server.written[-1] == "late"


def test_an_error_on_the_writer_thread_is_raised_in_the_driver() -> None:
    def refused() -> None:
        raise RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad metric"})

    writes = BackgroundWrites(TrackingQueue("http://tracking", bound_s=60))
    writes.submit("bad", refused)
    with pytest.raises(RestException, match="bad metric"):
        for _ in range(200):  # the next submit after the thread met the error raises it
            writes.submit("next", lambda: None)
            time.sleep(0.01)
        writes.flush()


def test_writes_wait_in_order_through_an_outage_and_replay_when_the_server_returns(capsys) -> None:
    server, clock = Server(), Clock()
    queue = TrackingQueue("http://tracking", bound_s=60, clock=clock)
    queue.submit("a", server.write("a"))
    server.down = True
    for name in ("b", "c", "d"):  # b is tried and fails at t=1; c and d come within RETRY_EVERY_S: kept
        clock.now += 1
        queue.submit(name, server.write(name))
    assert server.written == ["a"] and queue.pending == 3 and queue.in_outage
    server.down = False
    clock.now += 1  # 3 s since the last try (less than RETRY_EVERY_S): kept, no request
    queue.submit("e", server.write("e"))
    assert server.written == ["a"]
    clock.now += 3
    queue.submit("f", server.write("f"))
    assert server.written == ["a", "b", "c", "d", "e", "f"] and queue.pending == 0 and not queue.in_outage
    err = capsys.readouterr().err
    assert "tracking server http://tracking did not answer (b: API request to" in err
    assert "is back after" in err and "5 buffered writes done" in err


def test_an_outage_longer_than_the_bound_stops_with_a_message() -> None:
    server, clock = Server(), Clock()
    queue = TrackingQueue("http://tracking", bound_s=30, clock=clock)
    server.down = True
    queue.submit("a", server.write("a"))
    clock.now += 29
    queue.submit("b", server.write("b"))
    clock.now += 2
    with pytest.raises(TrackingUnavailable, match=r"unreachable for 31 s \(bound `tracking.outage_timeout_s` = 30"):
        queue.submit("c", server.write("c"))


def test_the_end_of_a_search_waits_for_the_server_at_most_the_bound(monkeypatch) -> None:
    server, clock = Server(), Clock()
    queue = TrackingQueue("http://tracking", bound_s=10, clock=clock)
    server.down = True
    queue.submit("a", server.write("a"))
    monkeypatch.setattr("pareto_search.tracking.outage.time.sleep", lambda s: setattr(clock, "now", clock.now + s))
    with pytest.raises(TrackingUnavailable, match="1 MLflow writes not done"):
        queue.flush()
    assert clock.now <= 10 + 2 * 2.0


def test_an_error_the_server_answers_with_is_not_an_outage() -> None:
    queue = TrackingQueue("http://tracking", bound_s=10)

    def bad_request() -> None:
        raise RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad metric"})

    with pytest.raises(RestException, match="bad metric"):
        queue.submit("bad", bad_request)


# -- against a real server --------------------------------------------------------------------------------------


def _config(tmp_path: Path, name: str, tracking: str, epochs: int, bound_s: float) -> Path:
    config = {
        "name": name,
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 300}},
        "epochs": epochs,
        "solvers": [
            {"label": "pop", "solver": "linear", "population": {"size": 3}, "optimizer": {"lr": 0.01}},
            {"label": "single", "solver": "linear", "optimizer": {"lr": 0.01}},
        ],
        "search": {"algorithm": "grid", "num_samples": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": tracking, "experiment": "outage", "outage_timeout_s": bound_s},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _front_points(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / "searches" / name / "pareto_search" / "front_points.json"
    return json.loads(path.read_text())["points"] if path.is_file() else []


def _await_results(tmp_path: Path, name: str, search: subprocess.Popen, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and search.poll() is None:
        if sum(int(p["data"].get("epoch", 0)) >= 2 for p in _front_points(tmp_path, name)) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"the search did not reach epoch 2 in {timeout_s:.0f} s (exit {search.poll()})")


@pytest.fixture
def credentials(monkeypatch) -> dict[str, str]:
    password = secrets.token_urlsafe(16)
    env = {
        ADMIN_USERNAME_ENV: "admin",
        ADMIN_PASSWORD_ENV: password,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _search(tmp_path: Path, config: Path) -> subprocess.Popen:
    """`pareto-search run` with its output in files (a pipe nobody reads while the test waits would fill up)."""
    with (tmp_path / "out.log").open("wb") as out, (tmp_path / "err.log").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "pareto_search.cli", "run", str(config)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def _finished(tmp_path: Path, search: subprocess.Popen, timeout_s: float) -> str:
    """Wait (bounded) for the search to exit; its stderr."""
    search.wait(timeout=timeout_s)
    return (tmp_path / "err.log").read_text(errors="replace")


def _stores(tmp_path: Path, port: int) -> dict[str, Any]:
    """One server's stores on a fixed port: started again with these, it is the same server."""
    return {
        "backend_store_uri": f"sqlite:///{tmp_path}/server.db",
        "artifacts_destination": tmp_path / "artifacts",
        "auth_database_uri": f"sqlite:///{tmp_path}/auth.db",
        "port": port,
        "workers": 1,
    }


@pytest.mark.slow
def test_a_search_outlives_a_30_s_tracking_outage_and_every_record_arrives(tmp_path, credentials) -> None:
    port, epochs = free_port(), 12
    stores = _stores(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    config = _config(tmp_path, "outlives", url, epochs, bound_s=300)
    search: subprocess.Popen | None = None
    try:
        with mlflow_server(**stores):
            search = _search(tmp_path, config)
            _await_results(tmp_path, "outlives", search, count=1)
        time.sleep(OUTAGE_S)  # the server is gone; training goes on
        with mlflow_server(**stores):
            err = _finished(tmp_path, search, 300)
            assert search.returncode == 0, err[-4000:]
            assert f"tracking server {url} did not answer" in err and "is back after" in err
            _check_every_record_arrived(tmp_path, MlflowClient(url), epochs)
    finally:
        if search is not None:
            stop_process_group(search)


def _check_every_record_arrived(tmp_path: Path, client: MlflowClient, epochs: int) -> None:
    experiment = client.get_experiment_by_name("outage").experiment_id
    parent = client.search_runs([experiment], "tags.`pareto_search.kind` = 'search'")[0]
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    for child in children:  # every epoch once: nothing lost, nothing twice
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "m0/f1"))
        assert steps == list(range(1, epochs + 1)), (child.info.run_name, steps)
        assert "weights/member_0.pt" in [f.path for f in client.list_artifacts(child.info.run_id, "weights")]
    steps = sorted(m.step for m in client.get_metric_history(parent.info.run_id, "global_hv"))
    assert steps == list(range(1, 2 * epochs + 1))
    local = Path(client.download_artifacts(parent.info.run_id, "front.json", str(tmp_path)))
    tracked = json.loads(local.read_text())
    assert tracked["points"] and all(p["model_uri"] for p in tracked["points"])
    stored = {p["id"] for p in _front_points(tmp_path, "outlives")}
    assert {f"{p['trial_id']}/m{p['member']}" for p in tracked["points"]} <= stored


@pytest.mark.slow
def test_a_tracking_server_that_never_returns_stops_the_search_after_the_bound(tmp_path, credentials) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = _config(tmp_path, "abandoned", url, epochs=40, bound_s=8)
    stores = _stores(tmp_path, port)
    with mlflow_server(**stores):
        search = _search(tmp_path, config)
        try:
            _await_results(tmp_path, "abandoned", search, count=1)
        except BaseException:
            stop_process_group(search)
            raise
    try:
        started = time.monotonic()
        err = _finished(tmp_path, search, 120)
        stopped_after = time.monotonic() - started
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
    assert search.returncode == 1, err[-4000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"pareto-search run: error: tracking server {url} unreachable for "), last
    assert "`tracking.outage_timeout_s` = 8 s" in last and "evaluated points are in" in last
    assert "pareto-search resume abandoned" in last
    assert stopped_after < 60, stopped_after
    points = _front_points(tmp_path, "abandoned")
    assert len(points) >= 4, "the points found before the outage stay in storage"
    assert "Traceback" not in err
