"""`submit` that its environment cannot break: the job's side is checked first (a cluster `python` without torch
or the project fails in one line saying what to fix), the working dir travels as a snapshot (a file written
while it is packaged cannot fail the job) and says what travelled; `status` / `logs` / `stop` against a head
that died mid-job answer in one line, boundedly, with exit 3 (state unknown)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pareto_search.jobs import client
from tests.ray_cluster import local_ray_cluster, stop_processes
from tests.test_jobs import _cli, _project, _wait_for

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


@pytest.mark.slow
def test_submit_while_a_file_changes_then_the_head_dies_mid_job(tmp_path) -> None:
    project = _project(tmp_path, "snap", epochs=1)
    (tmp_path / "long").mkdir()
    long = _project(tmp_path / "long", "longsnap", epochs=500)
    with local_ray_cluster(tmp_path / "home", worker_cpus=(1,), head_cpus=1) as cluster:
        address, env = cluster.dashboard, cluster.env
        # A file that keeps changing while `submit` packages the folder (what `submit ... 2> submit.log` is)
        changing = project / "progress.txt"
        stop = threading.Event()

        def write() -> None:
            with changing.open("a") as out:
                while not stop.is_set():
                    out.write("x" * 4096)
                    out.flush()
                    time.sleep(0.001)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            time.sleep(0.2)
            before = changing.stat().st_size
            submitted = _cli(["submit", "snap.yaml", "--address", address], project, env)
            grew = changing.stat().st_size > before
        finally:
            stop.set()
            writer.join(10)
        assert grew  # the fault happened: the file changed while the job was submitted
        assert submitted.returncode == 0, submitted.stderr
        assert "travelled:  " in submitted.stderr and "files" in submitted.stderr and "*.log" in submitted.stderr
        job_id = submitted.stdout.strip()
        followed = _cli(["logs", job_id, "--follow", "--timeout", "300", "--address", address], project, env, 330)
        assert followed.returncode == 0, followed.stdout[-3000:] + followed.stderr[-3000:]

        submitted = _cli(["submit", "longsnap.yaml", "--address", address], long, env)
        assert submitted.returncode == 0, submitted.stderr
        long_id = submitted.stdout.strip()
        _wait_for(lambda: _cli(["status", long_id, "--address", address], long, env).stdout.strip() == "RUNNING")
        stop_processes(str(cluster.temp_dir))  # the head dies mid-job (its workers' node stays)
        for command in (["status", long_id], ["logs", long_id, "--follow"], ["stop", long_id]):
            started = time.monotonic()
            done = _cli([*command, "--address", address], long, env, timeout=120)
            assert done.returncode == 3, (command, done.stdout[-2000:], done.stderr[-2000:])
            assert done.stderr.count("\n") == 1 and f"Ray job server {address} does not answer" in done.stderr
            assert time.monotonic() - started < 90, command


def test_status_prints_what_failed(monkeypatch, capsys) -> None:
    """A FAILED job's last line (the probe's) is shown by `status`, on stderr; stdout stays the state."""
    from pareto_search.cli import main

    monkeypatch.setattr(client, "status", lambda address, job_id: "FAILED")
    monkeypatch.setattr(client, "last_line", lambda address, job_id: "pareto-search job: ... cannot import torch")
    assert main(["status", "j", "--address", "http://127.0.0.1:9"]) == 1
    out, err = capsys.readouterr()
    assert out == "FAILED\n" and err == "job j: pareto-search job: ... cannot import torch\n"
