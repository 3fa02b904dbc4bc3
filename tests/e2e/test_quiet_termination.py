"""A trial worker that Ray terminates while it runs a weakref callback ends without a traceback.

Ray's SIGTERM handler raises SystemExit wherever the worker happens to be; inside a weakref callback (or a
``__del__``) Python cannot raise it and prints "Exception ignored …" with a traceback, which Ray forwards to the
user's terminal while a stopped search shuts its workers down (seen once in CI: tests/e2e/test_tracking_outage.py).
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, weakref
from pareto_search.search.trainable import quiet_termination
if sys.argv[1] == "quiet":
    quiet_termination()

class Thing:
    pass

def exits(_):
    raise SystemExit(1)  # what Ray's SIGTERM handler raises

def fails(_):
    raise ValueError("a real bug in a callback")

a, b = Thing(), Thing()
ref_a, ref_b = weakref.ref(a, exits), weakref.ref(b, fails)
del a, b
print("still running", flush=True)
"""


def _run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)


def test_a_system_exit_python_cannot_raise_is_dropped_and_other_errors_still_print() -> None:
    default, quiet = _run("default"), _run("quiet")
    assert "SystemExit" in default.stderr and "Exception ignored" in default.stderr  # what users saw before
    assert "SystemExit" not in quiet.stderr
    assert "ValueError: a real bug in a callback" in quiet.stderr  # anything else is still shown
    assert quiet.stdout.strip() == "still running" and quiet.returncode == 0
