"""Tracking that survives a tracking-server outage: the search's MLflow writes, in order, with a bound.

The driver writes every result to the front in storage first; what goes to MLflow afterwards passes through
:class:`TrackingQueue`. While the server answers, each write happens at once. When it does not (connection
refused, timeouts, 5xx after retries), the write and every later one are kept in order and retried at most
every ``RETRY_EVERY_S`` as new results arrive, so training never waits on the server and no point's record is
lost: when the server returns the buffered writes are replayed in their original order (metrics keep the step
and the time they were measured at). An outage longer than the bound raises :class:`TrackingUnavailable`,
which ends the search with a message saying where the front is.

MLflow's own HTTP retries (7 tries with exponential back-off: about four minutes per request) would hide an
outage inside one call and stall the driver; inside the queue each request is tried once with a short
timeout (``fail_fast_http``) and the queue does the retrying. A server that answers with an error of its own
(a 4xx: a bad request) is not an outage: that error propagates as before.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable

from pareto_search.tracking import fail_fast_http, is_outage

RETRY_EVERY_S = 5.0  # how often a new result may re-try a server that did not answer (each try costs ≤ timeout)
FLUSH_POLL_S = 2.0  # at the end of a search: the wait between tries while buffered writes remain


class TrackingUnavailable(RuntimeError):
    """The tracking server stayed unreachable for longer than the bound."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class TrackingQueue:
    """In-order MLflow writes that outlive an outage of up to ``bound_s`` seconds."""

    def __init__(self, uri: str, bound_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.uri = uri
        self.bound_s = bound_s
        self._clock = clock
        self._pending: deque[tuple[str, Callable[[], object]]] = deque()
        self._outage_since: float | None = None
        self._last_try = -float("inf")
        self.replayed = 0  # writes done late, after an outage (reported when the server is back)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def in_outage(self) -> bool:
        return self._outage_since is not None

    def submit(self, what: str, write: Callable[[], object]) -> None:
        """Do `write` now, or keep it (in order) when the server is unreachable. `what` names it in messages."""
        self._pending.append((what, write))
        if self._outage_since is None or self._clock() - self._last_try >= RETRY_EVERY_S:
            self.drain()
        else:
            self._check_bound()

    def drain(self) -> bool:
        """Try the pending writes in order; True when none is left. Raises past the bound."""
        self._last_try = self._clock()
        with fail_fast_http():
            while self._pending:
                what, write = self._pending[0]
                try:
                    write()
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    self._note_outage(what, exc)
                    self._check_bound()
                    return False
                self._pending.popleft()
                if self._outage_since is not None:
                    self.replayed += 1
        if self._outage_since is not None:
            print(
                f"tracking server {self.uri} is back after {self._clock() - self._outage_since:.0f} s: "
                f"{self.replayed} buffered writes done",
                file=sys.stderr,
                flush=True,
            )
            self._outage_since = None
            self.replayed = 0
        return True

    def flush(self) -> None:
        """Wait (bounded) until every buffered write is done: the end of a search."""
        while not self.drain():
            time.sleep(FLUSH_POLL_S)

    def _note_outage(self, what: str, exc: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = self._clock()
            print(
                f"tracking server {self.uri} did not answer ({what}: {_first_line(exc)}); training goes on, the "
                f"front is kept in storage, MLflow writes are buffered and retried for up to {self.bound_s:g} s",
                file=sys.stderr,
                flush=True,
            )

    def _check_bound(self) -> None:
        if self._outage_since is not None and self._clock() - self._outage_since > self.bound_s:
            raise TrackingUnavailable(
                f"tracking server {self.uri} unreachable for {self._clock() - self._outage_since:.0f} s "
                f"(bound `tracking.outage_timeout_s` = {self.bound_s:g} s); {len(self._pending)} MLflow writes "
                "not done"
            )
