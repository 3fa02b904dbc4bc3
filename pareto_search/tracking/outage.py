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

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from pareto_search.console import say
from pareto_search.tracking.connection import fail_fast_http, is_outage

RETRY_EVERY_S = 5.0  # how often a new result may re-try a server that did not answer (each try costs ≤ timeout)
FLUSH_POLL_S = 2.0  # at the end of a search: the wait between tries while buffered writes remain
# At the end of a search, how long the writer thread may take to hand over the writes it holds. Each write is one
# fail-fast try (fail_fast_http), and in an outage only the first of a batch is tried: minutes means it is stuck.
WRITER_JOIN_S = 300.0


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
            say(
                f"tracking server {self.uri} is back after {self._clock() - self._outage_since:.0f} s: "
                f"{self.replayed} buffered writes done"
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
            say(
                f"tracking server {self.uri} did not answer ({what}: {_first_line(exc)}); training goes on, the "
                f"front is kept in storage, MLflow writes are buffered and retried for up to {self.bound_s:g} s"
            )

    def _check_bound(self) -> None:
        if self._outage_since is not None and self._clock() - self._outage_since > self.bound_s:
            raise TrackingUnavailable(
                f"tracking server {self.uri} unreachable for {self._clock() - self._outage_since:.0f} s "
                f"(bound `tracking.outage_timeout_s` = {self.bound_s:g} s); {len(self._pending)} MLflow writes "
                "not done"
            )


class BackgroundWrites:
    """A :class:`TrackingQueue` whose writes run on a thread of their own, in order.

    A trial waits for the driver at every report, and the driver's Tune loop ran the MLflow writes of each result
    (two, ~15 ms each on sqlite): every trial paid for them. Here the loop hands a write over and goes on. The
    queue's order, outage bound and replay are unchanged; an error on the thread (a write the store refused, or an
    outage past the bound) is raised in the driver by the next `submit` or by `flush`."""

    def __init__(self, queue: TrackingQueue) -> None:
        self.queue = queue
        self._inbox: deque[tuple[str, Callable[[], object]]] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pareto-search-mlflow-writes", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def close(self) -> None:
        """Hand over what was submitted (bounded) without waiting out an outage: a driver that ends without
        `flush` (an interrupted Tune run) still writes what it can."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=WRITER_JOIN_S)

    def submit(self, what: str, write: Callable[[], object]) -> None:
        self._raise_error()
        with self._wake:
            if not self._closing:
                self._inbox.append((what, write))
                self._wake.notify()
                return
        self.queue.submit(what, write)  # after the end (the thread is gone): in this thread, as before

    def flush(self) -> None:
        """Wait until every write is done (bounded: the thread's hand-over, then the queue's outage bound)."""
        self.close()
        if self._thread.is_alive():
            raise TrackingUnavailable(
                f"MLflow writes to {self.queue.uri} did not finish within {WRITER_JOIN_S:g} s at the end of the search"
            )
        self._raise_error()
        self.queue.flush()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._inbox and not self._closing:
                    # In an outage nothing new may arrive for a while: wake anyway to retry the buffered writes.
                    if not self._wake.wait(timeout=RETRY_EVERY_S) and self.queue.pending:
                        break
                if self._closing and not self._inbox:
                    return
                batch = list(self._inbox)
                self._inbox.clear()
            try:
                for what, write in batch:
                    self.queue.submit(what, write)
                if not batch:
                    self.queue.drain()
            except BaseException as exc:  # handed to the driver, which raises it
                self._error = exc
                return


_LIVE: weakref.WeakSet[BackgroundWrites] = weakref.WeakSet()


@atexit.register
def _close_live_writers() -> None:
    for writes in list(_LIVE):
        writes.close()
