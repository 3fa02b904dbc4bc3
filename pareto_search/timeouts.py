"""Bounded waits for calls that set no timeout of their own (Ray's job client, object stores, MLflow's
HTTP retries): nothing in the service waits forever, and a wait that ends says what it waited for."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A bounded call did not return in time; the message says what was waited for and how long."""


def bounded_call(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """``call()`` on a daemon thread, waiting at most ``timeout_s``; its exception is re-raised here.

    The thread is a daemon so that a call stuck in a socket cannot keep the process alive: the
    caller moves on (and usually exits with a message), the stuck call is abandoned."""
    values: list[T] = []  # the call's value, once it returned
    errors: list[BaseException] = []  # or what it raised

    def target() -> None:
        try:
            values.append(call())
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=target, daemon=True, name=f"bounded: {what}")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise WaitTimeout(f"{what} did not answer within {timeout_s:g} s")
    if errors:
        raise errors[0]
    return values[0]


# How long opening a search's tracking store may take before the command says it did not answer. A server (an
# MLflow server, a database) that takes longer is not there: a database URI otherwise waits out MLflow's own
# engine retries (about 100 s for a refused port) or, with a listener that never replies, forever. A local
# store (sqlite, a folder) may wait for another process creating its tables (tracking.SQLITE_INIT_WAIT_S).
TRACKING_OPEN_TIMEOUT_S = 30.0
LOCAL_TRACKING_OPEN_TIMEOUT_S = 180.0
LOCAL_TRACKING_SCHEMES = ("sqlite", "file", "")


def tracking_open_timeout_s(uri: str) -> float:
    """The bound on opening the tracking store at `uri` (see TRACKING_OPEN_TIMEOUT_S)."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    return LOCAL_TRACKING_OPEN_TIMEOUT_S if scheme in LOCAL_TRACKING_SCHEMES else TRACKING_OPEN_TIMEOUT_S


def redact_uri(uri: str) -> str:
    """`uri` without the password it may carry (postgresql://user:secret@host/db): for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def bounded_file_lock(path: str, timeout_s: float, what: str, poll_s: float = 0.1) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file `path` (created if missing) for the block, across the processes of
    this machine; waits at most `timeout_s` for another holder, then raises WaitTimeout naming `what`."""
    import fcntl

    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WaitTimeout(f"waited {timeout_s:g} s for {what}") from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
