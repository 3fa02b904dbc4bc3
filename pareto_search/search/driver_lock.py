"""One driver per search: a lock in the search's own storage folder, held while `run` or `resume` drives it.

Two drivers of one search would each restore Tune's state, and the second deletes the checkpoints the first is
about to read. The lock lives beside the search (``<storage>/<name>/pareto_search/driver.lock``) so that every
machine that can reach the search sees it, and it names its holder (pid, host, start) so that the refusal says
who drives the search.

- A local folder (or a mounted shared one): the file is held with ``flock`` for the driver's lifetime. The
  kernel lets go of it when the driver ends, however it ends (``kill -9`` included), so a lock left by a dead
  driver never blocks the next one.
- Object stores (``s3://``, ``gs://``, ``hdfs://``) have no locks: the object carries a heartbeat the driver
  rewrites every ``HEARTBEAT_S``. It is stale once its heartbeat is older than ``STALE_AFTER_S`` or, on the
  same host, once its pid is gone. Two drivers that write it at the same moment both read it back after
  ``SETTLE_S``: the last write wins and the other steps back.

Released (the file deleted) when the driver ends normally; every storage request is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_search.console import say
from pareto_search.errors import SearchStopped
from pareto_search.storage import CHECK_TIMEOUT_S, Location, StorageError
from pareto_search.timeouts import WaitTimeout, bounded_call

LOCK_FILE = "driver.lock"
HEARTBEAT_S = 15.0  # how often a driver on an object store says it is alive
STALE_AFTER_S = 120.0  # a heartbeat older than this is a dead driver's (generous: clocks of two hosts differ)
PROBE_TRIES = 5  # a shared probe of the lock file (refuse_if_held) holds it for microseconds: tries 0.1 s apart
SETTLE_S = 1.0  # after writing the lock object: how long before reading it back to see who won


class DriverLockHeld(SearchStopped):
    """Another driver is running this search; the message names it (one line)."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: float  # time.time() when it took the lock
    command: str = ""
    token: str = ""
    heartbeat: float = 0.0

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None  # being written, or damaged: treated as no holder named

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        what = f"`pareto-search {self.command}` " if self.command else ""
        return f"{what}(pid {self.pid} on {self.host}, since {since})"


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _refusal(search: str, holder: Holder | None) -> DriverLockHeld:
    who = holder.describe() if holder else "(its details are being written)"
    stop = f"; to stop it: `kill {holder.pid}` on {holder.host} (it saves, `resume` continues it)" if holder else ""
    return DriverLockHeld(
        f"search '{search}' is already being run by another driver {who}: one driver per search, "
        f"wait for it to end{stop}"
    )


class _LocalLock:
    """``flock`` on a file in a local (or mounted) folder: the kernel releases it when the process ends."""

    def __init__(self, path: Path, search: str, holder: Holder) -> None:
        self.path, self.search, self.holder = path, search, holder
        self._fd: int | None = None

    def acquire(self) -> None:
        for _ in range(10):  # a holder that releases between our open and our flock unlinks the file we hold
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._flock(fd)
            except BlockingIOError:
                os.close(fd)
                raise _refusal(self.search, self._read()) from None
            except OSError:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, self.holder.to_json().encode())
                os.fsync(fd)
                self._fd = fd
                return
            os.close(fd)
        raise _refusal(self.search, self._read())

    @staticmethod
    def _flock(fd: int) -> None:
        """Exclusive, without waiting for a driver; a moment's patience for refuse_if_held's probe of the file."""
        import fcntl

        for attempt in range(PROBE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if attempt == PROBE_TRIES - 1:
                    raise
                time.sleep(0.1)

    def _read(self) -> Holder | None:
        try:
            return Holder.parse(self.path.read_text(encoding="utf-8"))
        except OSError:
            return None

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlinked while still held: a driver that opens the path afterwards creates a new file (and checks it).
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


class _HeartbeatLock:
    """A lock object with a heartbeat, for storage that has no locks (object stores)."""

    def __init__(self, location: Location, search: str, holder: Holder) -> None:
        self.location, self.search, self.holder = location, search, holder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _bounded(self, call: Any, what: str) -> Any:
        try:
            return bounded_call(call, CHECK_TIMEOUT_S, f"storage {self.location} ({what})")
        except WaitTimeout as exc:
            raise StorageError(str(exc)) from None
        except FileNotFoundError:
            raise
        except OSError as exc:  # refused, reset, denied: one line naming the storage, not pyarrow's traceback
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise StorageError(f"storage {self.location}: {what} failed: {first[:300]}") from None

    def _read(self) -> Holder | None:
        def read() -> str | None:
            try:
                return self.location.read_text()
            except FileNotFoundError:
                return None

        text = self._bounded(read, "reading the driver lock")
        return Holder.parse(text) if text is not None else None

    def _stale(self, holder: Holder) -> bool:
        if holder.host == socket.gethostname() and not _alive_here(holder.pid):
            return True
        return time.time() - max(holder.heartbeat, holder.started) > STALE_AFTER_S

    def _write(self) -> None:
        beat = Holder(**{**self.holder.__dict__, "heartbeat": time.time()})
        self._bounded(lambda: self.location.write_text(beat.to_json()), "writing the driver lock")

    def acquire(self) -> None:
        found = self._read()
        if found is not None and found.token != self.holder.token and not self._stale(found):
            raise _refusal(self.search, found)
        self._write()
        time.sleep(SETTLE_S)
        back = self._read()
        if back is None or back.token != self.holder.token:
            raise _refusal(self.search, back)
        self._thread = threading.Thread(target=self._beat, name="pareto-search-driver-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except Exception as exc:  # storage away for a moment: the next beat tries again
                first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                say(f"[{self.search}] driver lock heartbeat not written: {first}")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=CHECK_TIMEOUT_S)
        with contextlib.suppress(Exception):  # gone already, or storage away: it goes stale by itself
            self._bounded(self.location.delete, "deleting the driver lock")


def refuse_if_held(search: str, files: Location) -> None:
    """Raise DriverLockHeld at once when a live driver holds the search's lock; takes nothing (driver_lock does).

    For the CLI: a refusal answers before Ray and torch are imported (seconds on a busy machine)."""
    location = files / LOCK_FILE
    if not location.is_local:
        lock = _HeartbeatLock(location, search, Holder(os.getpid(), socket.gethostname(), time.time()))
        try:
            found = lock._read()
        except (OSError, StorageError):  # storage that cannot be read: driver_lock says so, in one line
            return
        if found is not None and not lock._stale(found):
            raise _refusal(search, found)
        return
    import fcntl

    path = location.local_path
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file (or none readable): driver_lock decides
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refusal(search, _LocalLock(path, search, Holder(0, "", 0.0))._read()) from None
    except OSError:
        return
    finally:
        os.close(fd)


def _made_folders(path: Path) -> list[Path]:
    """The folders above `path` that do not exist yet (made for the lock; removed again if left empty)."""
    missing = []
    for folder in path.parents:
        if folder.exists():
            break
        missing.append(folder)
    return missing


@contextlib.contextmanager
def driver_lock(search: str, files: Location, command: str) -> Iterator[None]:
    """Hold the search's driver lock for the block, or raise DriverLockHeld naming the driver that holds it."""
    holder = Holder(os.getpid(), socket.gethostname(), time.time(), command, uuid.uuid4().hex)
    location = files / LOCK_FILE
    made: list[Path] = []
    lock: _LocalLock | _HeartbeatLock
    if location.is_local:
        path = location.local_path
        made = _made_folders(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = _LocalLock(path, search, holder)
            lock.acquire()
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                _remove_empty(made)
                raise StorageError(f"storage {path.parent}: the driver lock cannot be taken: {exc}") from None
            lock = _HeartbeatLock(location, search, holder)  # a mount without flock
            lock.acquire()
        except BaseException:
            _remove_empty(made)
            raise
    else:
        lock = _HeartbeatLock(location, search, holder)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
        _remove_empty(made)


def _remove_empty(folders: list[Path]) -> None:
    """A refused command leaves no folder behind: remove, deepest first, the folders made for the lock."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (the search wrote into it): kept
            return
