"""One holder at a time across the test processes of this machine (pytest-xdist workers, a second suite).

apt-get takes dpkg's lock and fails at once when another apt-get holds it ("Could not get lock"): two workers
installing PostgreSQL and Chromium at the same moment would fail one test for a reason that is not its own.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

POLL_S = 0.5


@contextmanager
def machine_lock(name: str, timeout_s: float) -> Iterator[None]:
    """Hold the lock `name` (a file in the temp folder) for the block; waits at most `timeout_s` for it."""
    path = os.path.join(tempfile.gettempdir(), f"pareto_search-tests-{name}.lock")
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout_s:g} s for the machine lock {path}") from None
                time.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
