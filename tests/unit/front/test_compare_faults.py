"""`compare` (and every command that reads a stored front) when what it reads or writes to is broken: a damaged
front file is one line naming it, and a tracking server that does not answer still shows the comparison, then says
in one line, within a bound, that it was not logged (exit 1)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pareto_search.cli import main
from pareto_search.config import parse_config
from pareto_search.front.global_front import GlobalFront
from pareto_search.plan import make_plan
from pareto_search.testing.processes import free_port


def _stored_search(tmp_path: Path, name: str, points: list[tuple[float, float]], tracking_uri: str) -> Path:
    plan = make_plan(
        parse_config(
            {
                "name": name,
                "problem": {"name": "toy2d"},
                "reference_point": [1.0, 1.0],
                "solvers": [{"solver": "linear"}],
                "storage": str(tmp_path / "searches"),
                "tracking": {"uri": tracking_uri, "experiment": "compare-faults"},
            }
        )
    )
    plan.save(parent_run_id=None)
    front = GlobalFront(name, plan.objectives, plan.reference_point, plan.front_path)
    front.update("t0", [{"member": k, "values": p, "solver": "linear"} for k, p in enumerate(points)])
    return Path(str(plan.front_path))


@pytest.mark.parametrize("command", ["compare", "front", "select"])
def test_a_damaged_front_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys, command: str) -> None:
    monkeypatch.chdir(tmp_path)
    sqlite = f"sqlite:///{tmp_path}/mlflow.db"
    _stored_search(tmp_path, "good", [(0.2, 0.6)], sqlite)
    path = _stored_search(tmp_path, "cut", [(0.3, 0.7), (0.6, 0.2)], sqlite)
    path.write_text(path.read_text()[:40])  # a copy cut short
    assert path.read_text() and not path.read_text().rstrip().endswith("}")  # the fault is in place
    argv = {
        "compare": ["compare", "good", "cut", "--no-mlflow"],
        "front": ["front", "cut"],
        "select": ["select", "cut", "--knee"],
    }[command]
    assert main([*argv, "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"search 'cut': its front file {path} cannot be read (JSONDecodeError" in err


def test_compare_shows_the_comparison_then_says_in_one_line_that_mlflow_did_not_answer(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    nobody = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on: the tracking server is away
    _stored_search(tmp_path, "a", [(0.2, 0.6), (0.6, 0.2)], nobody)
    _stored_search(tmp_path, "b", [(0.3, 0.7), (0.1, 0.9)], nobody)
    start = time.monotonic()
    code = main(["compare", "a", "b", "--storage", str(tmp_path / "searches")])
    elapsed = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 1
    assert re.search(r"^a\s+0\.480000\s+2\s+2$", out, re.M), out  # the comparison itself is all there
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"the comparison above was not logged: `tracking.uri` {nobody} did not answer" in err
    assert elapsed < 60, elapsed  # one try per request, not MLflow's minutes of retries
