"""What a search shows on the terminal: its own progress, then the front.

A search's process also carries Ray's and Tune's own output: Tune's boxed status tables and trial configs, a
"Checkpoint successfully created at …" line from every trial worker at every checkpoint, Ray's start-up warnings.
By default that output goes only to the search's log file, ``driver.log`` in its folder (beside search.json);
``--verbose`` shows it on the terminal as well. Our lines (:func:`say`) always reach the terminal, and the log.

Ray writes all of it through Python's ``sys.stdout`` / ``sys.stderr`` as they are when it writes (its log handler
and the worker-log printer look them up each time), so the console swaps those two for the duration of a search
and hands our own lines to the streams it found.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from pareto_search.storage import Location

LOG_FILE = "driver.log"
_lock = threading.Lock()
_terminal: TextIO | None = None  # the stderr our lines go to while a console is open
_log: TextIO | None = None
_progress_shown = False  # a progress line is on the terminal without its newline (a TTY only)


class _Sink:
    """A stand-in for sys.stdout / sys.stderr: everything into the log, onto the terminal only when verbose.

    A logging handler created during the search (MLflow's, on its first import) keeps this object as its stream:
    once the search ends it writes to the stream it replaced, as if the console had never been there."""

    def __init__(self, log: TextIO, echo: TextIO | None, replaced: TextIO) -> None:
        self._log, self._echo, self._replaced = log, echo, replaced
        self.closed_log = False

    def write(self, text: str) -> int:
        with _lock:
            if self.closed_log:
                return self._replaced.write(text)
            self._log.write(text)
            if self._echo is not None:
                _end_progress_line()
                self._echo.write(text)
        return len(text)

    def flush(self) -> None:
        if self.closed_log:
            self._replaced.flush()
            return
        self._log.flush()
        if self._echo is not None:
            self._echo.flush()

    def fileno(self) -> int:  # faulthandler (enabled by ray.init) dumps a crashed driver's stacks into the log
        return self._replaced.fileno() if self.closed_log else self._log.fileno()

    def isatty(self) -> bool:  # Tune's reporter picks its layout from this: the log is no terminal
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


def _end_progress_line() -> None:
    global _progress_shown
    if _progress_shown and _terminal is not None:
        _terminal.write("\n")
        _progress_shown = False


def say(line: str) -> None:
    """One line of the search's own: on the terminal (stderr) and in the log while a console is open."""
    with _lock:
        terminal = _terminal if _terminal is not None else sys.stderr
        if _terminal is not None:
            _end_progress_line()
        terminal.write(line + "\n")
        terminal.flush()
        if _log is not None:
            _log.write(line + "\n")


def progress(line: str) -> None:
    """The search's progress: rewritten in place on a terminal, one line each time elsewhere (logs, pipes, CI)."""
    global _progress_shown
    terminal = _terminal if _terminal is not None else sys.stderr
    if not _is_tty(terminal):
        say(line)
        return
    with _lock:
        width = shutil.get_terminal_size((120, 20)).columns
        terminal.write("\r\x1b[K" + line[: max(width - 1, 20)])
        terminal.flush()
        _progress_shown = True
        if _log is not None:
            _log.write(line + "\n")


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream (a test's capture)
        return False


def log_location(search_files: Location) -> Location:
    """Where a search's log file is kept: beside its search.json."""
    return search_files / LOG_FILE


@contextlib.contextmanager
def search_console(search_files: Location, *, verbose: bool) -> Iterator[Path]:
    """Route the process's output for a search: Ray's and Tune's into the log file (and the terminal when
    `verbose`), ours to the terminal and the log. Yields the local log file. On storage that is not a local folder
    the log is written locally and copied beside search.json when the search ends."""
    global _terminal, _log
    if _log is not None:  # nested (a search run inside another's console): the outer one routes already
        yield Path(_log.name)
        return
    target = log_location(search_files)
    local = target.local_path if target.is_local else Path(tempfile.mkstemp(prefix="pareto_search_", suffix=".log")[1])
    created = [folder for folder in (local.parent, *local.parent.parents) if not folder.exists()]
    local.parent.mkdir(parents=True, exist_ok=True)
    out, err = sys.stdout, sys.stderr
    refused = False
    try:
        with local.open("a", encoding="utf-8", buffering=1) as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
            _terminal, _log = err, log
            sinks = (_Sink(log, out if verbose else None, out), _Sink(log, err if verbose else None, err))
            sys.stdout, sys.stderr = sinks
            # Ray's own log handler keeps the stderr it was created with (ray._private.log.PlainRayHandler); a file
            # handler someone added stays as it is.
            handlers = [
                h
                for h in logging.getLogger("ray").handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
            ]
            kept = [h.setStream(sys.stderr) for h in handlers]
            try:
                yield local
            except BaseException:
                refused = True
                raise
            finally:
                with _lock:
                    _end_progress_line()
                    for handler, stream in zip(handlers, kept, strict=True):
                        if stream is not None:  # None: it had that stream already
                            handler.setStream(stream)
                    sys.stdout, sys.stderr = out, err
                    _terminal, _log = None, None
                    for sink in sinks:
                        sink.closed_log = True
                if faulthandler.is_enabled() and sys.__stderr__ is not None:
                    # ray.init pointed it at the log (through _Sink.fileno), which closes now: a later dump would
                    # land in whatever file reuses that descriptor.
                    with contextlib.suppress(Exception):
                        faulthandler.enable(file=sys.__stderr__)
    finally:
        if not target.is_local:
            with contextlib.suppress(Exception):  # best effort: the log is a convenience, never a reason to fail
                target.write_bytes(local.read_bytes())
            local.unlink(missing_ok=True)
        elif refused:
            _remove_if_alone(local, created)


def _remove_if_alone(log: Path, created: list[Path]) -> None:
    """A search that stopped before it wrote anything (refused) leaves nothing behind: not its log, nor the folders
    made for it."""
    if not created or any(p != log for p in log.parent.iterdir()):
        return
    log.unlink()
    for folder in created:  # deepest first
        with contextlib.suppress(OSError):  # not empty: something else lives there now
            folder.rmdir()
