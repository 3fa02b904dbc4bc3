"""Bounded waits for calls that set no timeout of their own (Ray's job client, object stores, MLflow's
HTTP retries): nothing in the service waits forever, and a wait that ends says what it waited for."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A bounded call did not return in time; the message says what was waited for and how long."""


def bounded_call(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """``call()`` on a daemon thread, waiting at most ``timeout_s``; its exception is re-raised here.

    The thread is a daemon so that a call stuck in a socket cannot keep the process alive: the
    caller moves on (and usually exits with a message), the stuck call is abandoned."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name=f"bounded: {what}")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise WaitTimeout(f"{what} did not answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
