"""`pareto-search submit / status / logs / stop / list` against a real 2-node Ray cluster on 127.0.0.1 with
token authentication (slow: starts Ray, runs a real search as a Ray Job)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from sqlalchemy.engine import make_url

from tests.support.mlflow_server import ADMIN_PASSWORD_ENV, ADMIN_USERNAME_ENV, mlflow_server
from tests.support.postgres import postgres_cluster
from tests.support.ray_cluster import local_ray_cluster
from tests.support.s3_server import s3_server

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "pareto_search.cli"]
JOB_TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def _cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _project(tmp_path: Path, name: str, epochs: int, locations: bool = True) -> Path:
    """A user's project folder: a config and the plug-in problem module it imports (it travels with the job)."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    shutil.copytree(ROOT / "examples", project / "examples", dirs_exist_ok=True)
    (project / ".venv").mkdir(exist_ok=True)  # excluded: must not travel
    (project / ".venv" / "big.bin").write_bytes(b"0" * 1024)
    config = {
        "name": name,
        "problem": {"name": "examples.plugin_problem:make", "args": {"n_train": 256, "n_val": 64, "n_test": 64}},
        "epochs": epochs,
        "solvers": [
            {"label": "pop", "solver": "linear", "population": {"size": 2}, "optimizer": {"name": "adam", "lr": 0.01}},
            {"label": "single", "solver": "linear", "optimizer": {"name": "adam", "lr": 0.01}},
        ],
        "search": {"algorithm": "grid", "num_samples": 1},
        "tracking": {"experiment": "jobs"},
    }
    if locations:  # else the client's PARETO_SEARCH_STORAGE and MLFLOW_TRACKING_URI say where
        config["storage"] = str(tmp_path / "shared" / "searches")
        config["tracking"]["uri"] = f"sqlite:///{tmp_path}/shared/mlflow.db"
    (project / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return project


def test_submit_follow_and_read_the_front_on_a_two_node_cluster(tmp_path, monkeypatch) -> None:
    """The team setup end to end: a 2-node Ray cluster, the search's storage on an S3 server, tracking on an
    `mlflow server` (PostgreSQL, basic-auth, artifacts in the same bucket); `submit`, follow, read the front."""
    (tmp_path / "shared").mkdir()  # the stopped search's local storage (see below)
    project = _project(tmp_path, "jobsearch", epochs=2, locations=False)
    with ExitStack() as stack:
        s3 = stack.enter_context(s3_server())
        postgres = stack.enter_context(postgres_cluster(("mlflow", "mlflow_auth")))
        auth_url = make_url(postgres).set(database="mlflow_auth").render_as_string(hide_password=False)
        password = secrets.token_urlsafe(18)
        credentials = {ADMIN_USERNAME_ENV: "admin", ADMIN_PASSWORD_ENV: password}
        server = stack.enter_context(
            mlflow_server(postgres, s3.uri("mlartifacts"), auth_url, env={**os.environ, **s3.env, **credentials})
        )
        # What every node's environment holds on a real cluster: the object store's endpoint and keys, and the
        # MLflow login (ray_cluster.yaml: an instance profile and ~/.mlflow/credentials)
        node_env = {**s3.env, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
        for name, value in node_env.items():
            monkeypatch.setenv(name, value)
        cluster = stack.enter_context(local_ray_cluster(tmp_path / "home", worker_cpus=(1,), head_cpus=1))
        address = cluster.dashboard
        storage = s3.uri("searches")
        env = {**cluster.env, "PARETO_SEARCH_STORAGE": storage, "MLFLOW_TRACKING_URI": server.url}

        # Without the token the job server refuses, and the user is told how to provide it.
        no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
        refused = _cli(["submit", "jobsearch.yaml", "--address", address], project, no_token)
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and "RAY_AUTH_MODE=token" in refused.stderr, refused.stderr

        # Bad input is refused before anything is sent.
        relative = yaml.safe_load((project / "jobsearch.yaml").read_text()) | {"storage": "searches"}
        env_without_tracking = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
        untracked = _cli(["submit", "jobsearch.yaml", "--address", address], project, env_without_tracking)
        assert untracked.returncode == 2 and "`tracking.uri` is not set" in untracked.stderr
        (project / "relative.yaml").write_text(yaml.safe_dump(relative))
        bad = _cli(["submit", "relative.yaml", "--address", address], project, env)
        assert bad.returncode == 2 and "`storage` is 'searches', a relative path" in bad.stderr

        # As users run it: `submit … 2> submit.log` in the folder that travels. The log is written while the working
        # dir is packaged; the job must not fail on it (the working dir travels as a snapshot taken once).
        with (project / "submit.log").open("w") as log:
            submitted = subprocess.run(
                [*CLI, "submit", "jobsearch.yaml", "--address", address],
                cwd=project,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=120,
            )
        said = (project / "submit.log").read_text()
        assert submitted.returncode == 0, said
        job_id = submitted.stdout.strip()
        assert job_id.startswith("jobsearch-") and f"pareto-search logs {job_id} --follow" in said
        assert re.search(r"travelled: +\d+ files", said), said  # submit says what travelled

        followed = _cli(
            ["logs", job_id, "--follow", "--timeout", str(JOB_TIMEOUT_S), "--address", address],
            project,
            env,
            timeout=JOB_TIMEOUT_S + 30,
        )
        assert followed.returncode == 0, followed.stdout[-3000:] + followed.stderr[-3000:]
        assert "points on the front of 3 evaluated" in followed.stdout
        assert f"job {job_id}: SUCCEEDED" in followed.stderr

        status = _cli(["status", job_id, "--address", address], project, env)
        assert (status.returncode, status.stdout.strip()) == (0, "SUCCEEDED")
        listed = _cli(["list", "--format", "json", "--address", address], project, env)
        rows = json.loads(listed.stdout)
        assert [(r["job_id"], r["search"], r["status"]) for r in rows] == [(job_id, "jobsearch", "SUCCEEDED")]
        logs = _cli(["logs", job_id, "--address", address], project, env)
        assert logs.returncode == 0 and "points on the front of 3 evaluated" in logs.stdout

        # The front, from the S3 storage and from the MLflow server, agree; checkpoints and artifacts are in the bucket.
        front = _cli(["front", "jobsearch", "--format", "json", "--storage", storage], project, env)
        assert front.returncode == 0, front.stderr
        stored = json.loads(front.stdout)
        client = MlflowClient(server.url)
        parent = client.search_runs(
            [client.get_experiment_by_name("jobs").experiment_id], "tags.`pareto_search.kind` = 'search'"
        )[0]
        local = Path(client.download_artifacts(parent.info.run_id, "front.json", str(tmp_path)))
        tracked = json.loads(local.read_text())
        assert tracked["points"] == stored["points"] and tracked["hypervolume"] == stored["hypervolume"]
        keys = s3.keys()
        assert any(k.startswith("searches/jobsearch/") and k.endswith("/member_0.pt") for k in keys), keys
        assert any(k.startswith("mlartifacts/") and k.endswith("/front.json") for k in keys), keys
        assert not (project / "searches").exists() and not (project / "mlflow.db").exists()

        # The working dir travelled without .venv; the job's runtime env says so.
        assert ".venv" in json.dumps(_job_runtime_env(address, job_id, env))

        # stop: a long search is stopped and reported STOPPED (exit 130)
        long = _project(tmp_path, "longsearch", epochs=500)
        submitted = _cli(["submit", "longsearch.yaml", "--address", address], long, env)
        assert submitted.returncode == 0, submitted.stderr
        long_id = submitted.stdout.strip()
        _wait_for(lambda: _cli(["status", long_id, "--address", address], long, env).stdout.strip() == "RUNNING")
        stopped = _cli(["stop", long_id, "--address", address], long, env)
        assert stopped.returncode == 0 and "stop requested" in stopped.stdout
        _wait_for(lambda: _cli(["status", long_id, "--address", address], long, env).stdout.strip() == "STOPPED")
        assert _cli(["status", long_id, "--address", address], long, env).returncode == 130


def _job_runtime_env(address: str, job_id: str, env: dict[str, str]) -> dict:
    script = (
        "import json, sys\n"
        "from ray.job_submission import JobSubmissionClient\n"
        f"info = JobSubmissionClient({address!r}).get_job_info({job_id!r})\n"
        "print(json.dumps(info.runtime_env))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout_s} s"
        time.sleep(1.0)


def test_cli_usage_errors_name_what_is_allowed(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    project = _project(tmp_path, "s", epochs=1)
    done = _cli(["submit", "s.yaml"], project, env)
    assert done.returncode == 2 and "--address: the Ray job server's dashboard address" in done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = _cli(["submit", str(project / "s.yaml"), "--address", "http://127.0.0.1:9"], elsewhere, env)
    assert outside.returncode == 2 and "is outside the working directory" in outside.stderr
    down = _cli(["status", "x", "--address", f"http://127.0.0.1:{_closed_port()}"], tmp_path, env)
    assert down.returncode == 3 and down.stderr.count("\n") == 1 and "Ray job server http://127.0.0.1" in down.stderr


def _closed_port() -> int:
    from pareto_search.testing.processes import free_port

    return free_port()
