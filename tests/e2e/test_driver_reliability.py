"""The search driver's reliability: SIGTERM, one driver per search, a full storage, bounded tracking waits."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml

from pareto_search.search import driver_lock as lock_module
from pareto_search.search.driver_lock import LOCK_FILE, DriverLockHeld, Holder, driver_lock, refuse_if_held
from pareto_search.storage import Location
from pareto_search.testing.processes import free_port
from pareto_search.tracking.connection import is_outage
from pareto_search.tracking.outage import TrackingQueue
from tests.e2e.test_search_service import (  # the fault tests' search and helpers (one definition of each)
    _cli,
    _fault_config,
    _front_json,
    _points,
    _wait_for_points,
    uninterrupted,  # noqa: F401 - a fixture (the uninterrupted search's front), found here by pytest
)
from tests.support.s3_server import s3_server

REPO = Path(__file__).resolve().parents[2]
REFUSED = "is already being run by another driver"
CONFIG = {"name": "one", "problem": {"name": "toy2d"}, "epochs": 1, "solvers": [{"label": "l", "solver": "linear"}]}


# -- SIGTERM and one driver per search, end to end ------------------------------------------------------------


def _wait_for_lock(lock_file: Path, process: subprocess.Popen) -> dict:
    """The holder a driver wrote into its lock (bounded)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        holder = Holder.parse(lock_file.read_text()) if lock_file.is_file() else None
        if holder is not None:
            return holder.__dict__
        time.sleep(0.2)
    raise AssertionError(f"the driver ended (exit {process.poll()}) or never took its lock")


@pytest.mark.slow
def test_sigterm_exits_143_with_a_partial_front_and_of_two_resumes_one_is_refused(tmp_path, request) -> None:
    """SIGTERM (Kubernetes, systemd, Slurm) stops the driver like Ctrl-C: Tune saves, the partial front is printed,
    the last line says how to resume, exit 143. Then two `resume`s at once: the second is refused in one line
    naming the first, which finishes to the front of the uninterrupted search."""
    straight = request.getfixturevalue("uninterrupted")  # the same search run straight through
    stopped = _cli(["run", str(_fault_config(tmp_path, "terminated", "run"))], tmp_path / "run")
    storage = tmp_path / "run" / "searches"
    files = storage / "terminated" / "pareto_search"
    _wait_for_points(files / "front_points.json", stopped, done_points=3)
    os.kill(stopped.pid, signal.SIGTERM)  # to the driver alone, as `kill PID` or a pod's stop does
    out, _ = stopped.communicate(timeout=120)
    assert stopped.returncode == 143, out[-3000:]
    assert "PARTIAL front (the search was stopped by SIGTERM)" in out
    assert out.rstrip().endswith("terminated (SIGTERM) — `pareto-search resume terminated` continues it"), out[-3000:]
    assert "Traceback" not in out and "core dumped" not in out, out[-3000:]
    partial = json.loads((files / "front_points.json").read_text())["points"]
    assert partial, "the partial front kept no point"
    assert not (files / LOCK_FILE).exists(), "the driver left its lock behind"

    first = _cli(["resume", "terminated", "--storage", str(storage)], tmp_path / "run")
    holder = _wait_for_lock(files / LOCK_FILE, first)
    assert holder["pid"] == first.pid and holder["command"] == "resume"
    started = time.monotonic()
    second = _cli(["resume", "terminated", "--storage", str(storage)], tmp_path / "run")
    out_second, _ = second.communicate(timeout=120)
    refused_in = time.monotonic() - started
    lines = out_second.strip().splitlines()
    assert second.returncode == 1, out_second[-3000:]
    assert len(lines) == 1 and REFUSED in lines[0] and f"pid {first.pid} " in lines[0], out_second
    out_first, _ = first.communicate(timeout=400)
    assert first.returncode == 0, out_first[-3000:]
    front = _front_json("terminated", str(storage))
    assert _points(front) == _points(straight) and front["hypervolume"] == straight["hypervolume"]
    print(f"second resume refused in {refused_in:.1f} s")


# -- the lock itself ------------------------------------------------------------------------------------------

HOLD = """
import sys, time
from pareto_search.search.driver_lock import driver_lock
from pareto_search.storage import Location
with driver_lock("held", Location(sys.argv[1]), "resume"):
    print("held", flush=True)
    time.sleep(600)
"""


@contextmanager
def _holding(files: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the search's driver lock (a driver, as far as the lock can tell)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(files)], cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_a_lock_left_by_a_driver_killed_with_sigkill_does_not_block_the_next(tmp_path) -> None:
    files = tmp_path / "searches" / "held" / "pareto_search"
    with _holding(files) as holder:
        with pytest.raises(DriverLockHeld) as refused:  # a live holder refuses: the quick check and the lock
            refuse_if_held("held", Location(files))
        assert f"pid {holder.pid} " in str(refused.value) and "\n" not in str(refused.value)
        with pytest.raises(DriverLockHeld), driver_lock("held", Location(files), "resume"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    left = Holder.parse((files / LOCK_FILE).read_text())
    assert left is not None and left.pid == holder.pid, "the killed driver left no lock file: nothing was tested"
    refuse_if_held("held", Location(files))
    with driver_lock("held", Location(files), "resume"):
        assert Holder.parse((files / LOCK_FILE).read_text()).pid == os.getpid()
    assert not (files / LOCK_FILE).exists()


def test_a_refused_new_search_leaves_no_folder(tmp_path) -> None:
    """The lock's folders are made for it: a command refused later (bad input) leaves none behind."""
    files = tmp_path / "searches" / "new" / "pareto_search"
    with pytest.raises(RuntimeError, match="bad input"), driver_lock("new", Location(files), "run"):
        raise RuntimeError("bad input")
    assert not (tmp_path / "searches").exists()


def test_the_lock_on_an_object_store_is_a_heartbeat(tmp_path, monkeypatch) -> None:
    """S3 has no locks: a lock object whose holder is alive and beats refuses; one whose pid is gone here, or whose
    heartbeat is old, does not."""
    with s3_server(bucket="driverlock") as s3:
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        files = Location(s3.uri("searches", "beat", "pareto_search"))
        lock_object = files / LOCK_FILE
        monkeypatch.setattr(lock_module, "SETTLE_S", 0.1)
        with driver_lock("beat", files, "run"):
            assert Holder.parse(lock_object.read_text()).pid == os.getpid()
            with pytest.raises(DriverLockHeld, match=REFUSED):
                refuse_if_held("beat", files)
        assert not lock_object.is_file(), "the lock object was not deleted at the end"

        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        now = time.time()
        cases = {  # holder written into the lock object -> refused?
            "alive elsewhere": (Holder(1, "other-host", now, "run", "t1", now), True),
            "pid gone here": (Holder(int(dead.stdout), socket.gethostname(), now, "run", "t2", now), False),
            "old heartbeat": (Holder(1, "other-host", now - 3600, "run", "t3", now - 3600), False),
        }
        for what, (holder, refused) in cases.items():
            lock_object.write_text(holder.to_json())
            if refused:
                with pytest.raises(DriverLockHeld, match="pid 1 on other-host"):
                    refuse_if_held("beat", files)
                with pytest.raises(DriverLockHeld), driver_lock("beat", files, "resume"):
                    pass
            else:
                refuse_if_held("beat", files)
                with driver_lock("beat", files, "resume"):
                    assert Holder.parse(lock_object.read_text()).pid == os.getpid(), what


# -- storage errors are no tracking outage --------------------------------------------------------------------


def test_a_file_error_is_a_storage_error_not_a_tracking_outage() -> None:
    assert not is_outage(FileNotFoundError(errno.ENOENT, "No such file", "/s/checkpoint_000003"))
    assert not is_outage(OSError(errno.ENOSPC, "No space left on device"))
    assert is_outage(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert is_outage(requests.exceptions.ConnectionError("Max retries exceeded"))
    assert is_outage(TimeoutError("timed out"))

    queue = TrackingQueue("http://127.0.0.1:1", bound_s=600)

    def full_disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    started = time.monotonic()
    with pytest.raises(OSError, match="No space left"):  # at once: not buffered and retried as an outage
        queue.submit("weights of t1", full_disk)
    assert time.monotonic() - started < 5 and not queue.in_outage


# Without root (no tmpfs to mount) the storage fills up by fault injection: every process of the search (the
# driver, Ray's workers: they inherit PYTHONPATH) gets an `open` that, once the flag file exists, refuses to create
# files under the storage with ENOSPC — the way the trials' checkpoint copies (atomic_fs.py) meet a full disk.
FULL_DISK_HOOK = """
import builtins, errno, os

_open, _storage, _flag = builtins.open, os.environ["PS_TEST_FULL_STORAGE"], os.environ["PS_TEST_FULL_FLAG"]


def _full(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and str(file).startswith(_storage) and os.path.exists(_flag):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
    return _open(file, mode, *args, **kwargs)


builtins.open = _full
"""


def _fill(folder: Path) -> None:
    """Write until the file system says it is full (the fault this test is about)."""
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


@contextmanager
def _storage_that_fills_up(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """A storage folder and the call that fills it up: a small tmpfs filled with a file (root), else the hook."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode == 0:
        try:
            yield lambda: _fill(path)
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False, timeout=60)
        return
    hook = path.parent / "full_disk_hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FULL_DISK_HOOK)
    flag = path.parent / "storage_is_full"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PS_TEST_FULL_STORAGE", str(path))
    monkeypatch.setenv("PS_TEST_FULL_FLAG", str(flag))
    yield flag.touch


@pytest.mark.slow
def test_a_full_storage_stops_the_search_in_one_line_and_keeps_its_points(tmp_path, monkeypatch) -> None:
    """Storage (a small tmpfs) fills up mid-search: the search stops at the first write that fails, in one line
    naming the storage and that it is full, exit 1; the points found are kept; no wait for a tracking 'outage'
    (the bound is 900 s here)."""
    config_path = _fault_config(tmp_path, "full", "run")
    config = yaml.safe_load(config_path.read_text())
    storage = tmp_path / "run" / "searches"
    config["tracking"]["outage_timeout_s"] = 900
    config_path.write_text(yaml.safe_dump(config))
    with _storage_that_fills_up(storage, monkeypatch) as fill_up:
        driver = _cli(["run", str(config_path)], tmp_path / "run")
        front_file = storage / "full" / "pareto_search" / "front_points.json"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            if front_file.is_file() and json.loads(front_file.read_text())["points"]:
                break
            time.sleep(0.2)
        fill_up()
        filled = time.monotonic()
        kept = len(json.loads(front_file.read_text())["points"])
        out, _ = driver.communicate(timeout=600)
        stopped_after = time.monotonic() - filled
        assert "No space left on device" in out, out[-3000:]  # the fault reached the search
        assert driver.returncode == 1, out[-3000:]
        last = out.strip().splitlines()[-1]
        assert re.fullmatch(
            rf"pareto-search run: error: storage {re.escape(str(storage / 'full'))}: No space left on device"
            r"( \(.*\))?; search 'full' stopped: its \d+ evaluated points are kept in .*front_points\.json; .*",
            last,
        ), last
        assert "Traceback" not in out and out.count("No space left on device") == 1, out[-3000:]  # that line only
        assert len(json.loads(front_file.read_text())["points"]) >= kept > 0
        assert stopped_after < 180, f"the driver took {stopped_after:.0f} s to stop after the storage filled up"
    print(f"stopped {stopped_after:.1f} s after the storage filled up; {kept} points kept; its output:\n{out}")


# -- bounded tracking waits -----------------------------------------------------------------------------------


@contextmanager
def _silent_listener() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers a byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


# In a process of its own: the abandoned attempt keeps MLflow's process-wide store-building lock while its engine
# retries (~100 s of backoff), and in this process it would hold up every later test that opens a new store.
BOUNDED_RUN = (
    "import sys; import pareto_search.timeouts as t; t.TRACKING_OPEN_TIMEOUT_S = 3.0; "
    "from pareto_search.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("server", ["silent", "closed"])
def test_a_postgres_tracking_store_that_does_not_answer_is_one_line_within_the_bound(tmp_path, server: str) -> None:
    with _silent_listener() as silent:
        port = silent if server == "silent" else free_port()
        uri = f"postgresql://mlflow:secret@127.0.0.1:{port}/mlflow"
        config = {**CONFIG, "name": "unanswered", "storage": str(tmp_path / "searches"), "tracking": {"uri": uri}}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", BOUNDED_RUN, "run", str(path)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert err == (
        f"pareto-search run: error: `tracking.uri`: postgresql://mlflow:***@127.0.0.1:{port}/mlflow "
        "did not answer within 3 s"
    ), err
    assert took < 60, f"refused after {took:.0f} s"  # the bound (3 s) plus a process start with torch
    assert not (tmp_path / "searches").exists(), "a refused search left its storage folder"


def test_a_local_storage_that_hangs_is_one_line_within_the_bound(tmp_path, monkeypatch) -> None:
    """A mounted folder whose server is away hangs every look at it: the check says so instead of waiting."""
    from pareto_search import storage

    def hangs(self: Path) -> bool:
        time.sleep(5)
        return True

    monkeypatch.setattr(storage, "CHECK_TIMEOUT_S", 0.5)
    monkeypatch.setattr(Path, "exists", hangs)
    started = time.monotonic()
    with pytest.raises(storage.StorageError, match=r"did not answer within 0.5 s \(a mounted folder"):
        storage.check_reachable(Location(tmp_path / "searches"))
    assert time.monotonic() - started < 3


def test_a_storage_error_in_tunes_chain_is_one_line_and_a_network_error_is_not_one(tmp_path) -> None:
    from pareto_search.config import parse_config
    from pareto_search.plan import make_plan
    from pareto_search.search.runner import _storage_failure, _storage_stop_message

    plan = make_plan(parse_config({**CONFIG, "storage": str(tmp_path / "searches")}))
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", "/s/t1/checkpoint_000003")
    try:
        try:
            raise gone
        except OSError as inner:
            raise RuntimeError("Tune: a callback failed") from inner
    except RuntimeError as wrapped:
        found = _storage_failure(wrapped)
    assert found is gone
    line = _storage_stop_message(plan, found)
    assert "\n" not in line and line.startswith(f"storage {plan.storage_dir}: No such file or directory (/s/t1/")
    assert "once the storage works again, `pareto-search resume one` continues it" in line
    assert _storage_failure(RuntimeError("trial t1 failed: OSError: [Errno 28] No space left on device")) is not None
    assert _storage_failure(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")) is None
    assert _storage_failure(RuntimeError("a bug")) is None
