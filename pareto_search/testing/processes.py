"""Process plumbing shared by the tests that start servers (MLflow, model servers, PostgreSQL, Ray, Chromium):
a free port on 127.0.0.1, the end of a log for error messages, and stopping what a test started by its pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

STOP_TIMEOUT_S = 15.0  # SIGTERM, then this long before SIGKILL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path | str, chars: int = 3000) -> str:
    """The end of a log file, for an error message; never raises."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or not ours to wait for
        return False
    return True


def stop_process_group(process: subprocess.Popen[Any], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process group of `process` (started with `start_new_session=True`), SIGKILL after
    `timeout_s`. The group is awaited even when the leader has exited: its workers may outlive it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (process.poll() is None or _group_alive(process.pid)):
        time.sleep(0.2)
    if _group_alive(process.pid):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
