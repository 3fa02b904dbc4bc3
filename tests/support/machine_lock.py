"""One holder at a time across the test processes of this machine (pytest-xdist workers, a second suite).

apt-get takes dpkg's lock and fails at once when another apt-get holds it ("Could not get lock"): two workers
installing PostgreSQL and Chromium at the same moment would fail one test for a reason that is not its own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from pareto_search.timeouts import bounded_file_lock


@contextmanager
def machine_lock(name: str, timeout_s: float) -> Iterator[None]:
    """Hold the lock `name` (a file in the temp folder) for the block; waits at most `timeout_s` for it."""
    path = os.path.join(tempfile.gettempdir(), f"pareto_search-tests-{name}.lock")
    with bounded_file_lock(path, timeout_s, f"the machine lock {path}", poll_s=0.5):
        yield
