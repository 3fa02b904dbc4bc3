"""A search's terminal: our lines always; Ray's and Tune's output in driver.log, and on the terminal only when
verbose; a search refused before it wrote anything leaves no log behind. (The whole path, a real search through
the CLI, is checked in test_serve_path.py.)"""

from __future__ import annotations

import io
import logging
import sys

import pytest
import ray  # noqa: F401  (sets up Ray's own log handler, the one the console must redirect)

from pareto_search.console import LOG_FILE, progress, say, search_console
from pareto_search.storage import Location


def _noise() -> None:
    print("Trial status: 3 PENDING")  # Tune's status table (stdout)
    print("(run_trial pid=1) Checkpoint successfully created", file=sys.stderr)  # a worker's line via Ray
    logging.getLogger("ray").warning("Token authentication is enabled")  # Ray's own logger


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_ours_on_the_terminal_ray_and_tune_in_the_log_and_shown_only_when_verbose(tmp_path, capsys, verbose) -> None:
    files = Location(tmp_path / "searches" / "s" / "pareto_search")
    before = (sys.stdout, sys.stderr)
    with search_console(files, verbose=verbose) as log_path:
        _noise()
        say("[s] trials 0/1 done")
        progress("[s] trials 1/1 done | 5 model-epochs, 0:03 elapsed")
    captured = capsys.readouterr()
    terminal = captured.out + captured.err
    log = log_path.read_text()
    assert log_path == tmp_path / "searches" / "s" / "pareto_search" / LOG_FILE
    for ours in ("[s] trials 0/1 done", "[s] trials 1/1 done | 5 model-epochs"):
        assert ours in captured.err and ours in log
    for theirs in ("Trial status: 3 PENDING", "Checkpoint successfully created", "Token authentication is enabled"):
        assert theirs in log
        assert (theirs in terminal) is verbose, terminal
    assert (sys.stdout, sys.stderr) == before  # restored


def test_on_a_terminal_progress_is_rewritten_in_place_and_our_lines_start_fresh(tmp_path, monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with search_console(Location(tmp_path / "f"), verbose=False) as log_path:
        progress("epoch 1")
        progress("epoch 2")
        say("a note")
        progress("epoch 3")
    shown = terminal.getvalue()
    assert shown == "\r\x1b[Kepoch 1\r\x1b[Kepoch 2\na note\n\r\x1b[Kepoch 3\n", repr(shown)
    assert log_path.read_text().splitlines()[1:] == ["epoch 1", "epoch 2", "a note", "epoch 3"]


def test_a_search_refused_inside_leaves_no_log_and_no_folder_it_made(tmp_path, capsys) -> None:
    storage = tmp_path / "searches"
    with pytest.raises(ValueError, match="refused"), search_console(Location(storage / "s" / "f"), verbose=False):
        print("Ray started")
        raise ValueError("refused")
    assert not storage.exists()  # the console made searches/s/f for its log: all of it is gone again
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "search.json").write_text("{}")
    with search_console(Location(kept), verbose=False) as log_path:
        print("a resumed search's output")
    assert log_path.is_file() and "a resumed search's output" in log_path.read_text()  # beside other files: kept


def test_a_log_handler_made_during_the_search_writes_to_the_terminal_after_it(tmp_path, capsys) -> None:
    # MLflow sets up its logger on first import, often inside the search: its handler keeps the stream it found.
    logger = logging.getLogger("pareto_search.tests.late_handler")
    logger.propagate = False
    with search_console(Location(tmp_path / "f"), verbose=False) as log_path:
        handler = logging.StreamHandler()  # sys.stderr now: the console's stand-in
        logger.addHandler(handler)
        logger.warning("during the search")
    try:
        logger.warning("after the search")  # e.g. Search.register in a notebook, after run()
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "during the search" in log_path.read_text() and "during the search" not in err
    assert "after the search" in err and "Logging error" not in err
