"""`submit` that its environment cannot break: the job's side is checked first (a cluster `python` without torch
or the project fails in one line saying what to fix), the working dir travels as a snapshot (a file written
while it is packaged cannot fail the job); `status` / `logs` / `stop` against a job server that does not answer
(a dead head) end in one line, boundedly, with exit 3 (state unknown)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pareto_search.search import jobs as client

SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="needs a python outside the project's environment")
def test_a_cluster_python_without_torch_fails_the_job_in_one_line_saying_what_to_fix(tmp_path) -> None:
    """The job's entrypoint, run by a shell whose `python` is not the project's (a head started outside the
    venv): the probe stops it before the search, in one line."""
    assert subprocess.run([SYSTEM_PYTHON, "-c", "import torch"], capture_output=True).returncode != 0  # the fault
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(SYSTEM_PYTHON)
    entrypoint = f"python -c {__import__('shlex').quote(client.JOB_PROBE)} && echo the search would start here"
    done = subprocess.run(
        ["bash", "-c", entrypoint],
        env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "the search would start" not in done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"the cluster python {bin_dir / 'python'} cannot import torch (ModuleNotFoundError" in done.stderr
    assert "start Ray on every node from the environment where pareto_search and torch are installed" in done.stderr
    venv = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ok = subprocess.run(["bash", "-c", entrypoint], env=venv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ok.returncode == 0 and "the search would start here" in ok.stdout, ok.stderr  # the project's python


def test_the_snapshot_leaves_out_the_excluded_and_what_vanishes(tmp_path) -> None:
    source = tmp_path / "project"
    for name in ("a.yaml", "pkg/mod.py", ".venv/lib/x.py", "mlruns/0/meta.yaml", "run.log", "searches/s/f.json"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("x" * 10)
    os.mkfifo(source / "pipe")  # not a file: not sent (reading it would block)
    files, size = client.snapshot_working_dir(source, tmp_path / "snap")
    travelled = sorted(
        p.relative_to(tmp_path / "snap").as_posix() for p in (tmp_path / "snap").rglob("*") if p.is_file()
    )
    assert travelled == ["a.yaml", "pkg/mod.py"] and (files, size) == (2, 20)


@pytest.mark.parametrize("command", [["status", "j"], ["logs", "j", "--follow"], ["logs", "j"], ["stop", "j"]])
def test_a_job_server_that_does_not_answer_is_one_line_exit_3_and_bounded(capsys, command) -> None:
    """A head that died (nothing listens on its port): the job's state is unknown, neither success nor bad input."""
    from pareto_search.cli import main
    from pareto_search.testing.processes import free_port

    address = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main([*command, "--address", address]) == 3
    assert time.monotonic() - started < client.REQUEST_TIMEOUT_S
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"Ray job server {address} does not answer" in err, err
    assert "is the cluster's head running? the job's state is unknown from here" in err


def test_status_prints_what_failed(monkeypatch, capsys) -> None:
    """A FAILED job's last line (the probe's) is shown by `status`, on stderr; stdout stays the state."""
    from pareto_search.cli import main

    monkeypatch.setattr(client, "status", lambda address, job_id: "FAILED")
    monkeypatch.setattr(client, "last_line", lambda address, job_id: "pareto-search job: ... cannot import torch")
    assert main(["status", "j", "--address", "http://127.0.0.1:9"]) == 1
    out, err = capsys.readouterr()
    assert out == "FAILED\n" and err == "job j: pareto-search job: ... cannot import torch\n"


@pytest.mark.slow
@pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="needs a python outside the project's environment")
def test_a_real_head_started_outside_the_project_environment_fails_the_job_in_one_line(tmp_path) -> None:
    """On a real local cluster whose nodes find another `python` first (a head started outside the venv): the
    submitted job fails at its first step, and `status` and `logs` say in one line what to fix."""
    from tests.support.ray_cluster import local_ray_cluster

    assert subprocess.run([SYSTEM_PYTHON, "-c", "import torch"], capture_output=True).returncode != 0  # the fault
    other = tmp_path / "other-env"
    other.mkdir()
    (other / "python").symlink_to(SYSTEM_PYTHON)
    project = tmp_path / "project"
    project.mkdir()
    (project / "search.yaml").write_text(
        "name: elsewhere\nproblem: {name: toy2d}\nsolvers: [{solver: linear}]\n"
        f"storage: {tmp_path / 'searches'}\ntracking: {{uri: 'sqlite:///{tmp_path}/mlflow.db'}}\n"
    )
    cli = [sys.executable, "-m", "pareto_search.cli"]
    with local_ray_cluster(tmp_path / "home", worker_cpus=(), head_cpus=1, node_path_first=other) as cluster:
        address = ["--address", cluster.dashboard]
        run = {"cwd": project, "env": cluster.env, "capture_output": True, "text": True, "timeout": 180}
        submitted = subprocess.run([*cli, "submit", "search.yaml", *address], **run)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        followed = subprocess.run([*cli, "logs", job_id, "--follow", "--timeout", "150", *address], **run)
        status = subprocess.run([*cli, "status", job_id, *address], **run)
    assert followed.returncode == 1 and status.returncode == 1, followed.stdout + followed.stderr
    said = f"the cluster python {other / 'python'} cannot import torch (ModuleNotFoundError"
    assert said in followed.stdout + followed.stderr
    assert "start Ray on every node from the environment" in status.stdout + status.stderr, status
    assert "Traceback" not in followed.stdout + followed.stderr  # one line, not the search's traceback
    assert not (tmp_path / "searches" / "elsewhere").exists()  # the search never started
