"""`compare` on stored fronts (no Ray needed) and the `solvers` listing."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest

from pareto_search.cli import main
from pareto_search.config import parse_config
from pareto_search.front.global_front import GlobalFront
from pareto_search.plan import make_plan


def _stored_search(tmp_path: Path, name: str, points: list[tuple[float, float]]) -> None:
    config = parse_config(
        {
            "name": name,
            "problem": {"name": "toy2d"},
            "reference_point": [1.0, 1.0],
            "solvers": [{"solver": "linear"}],
            "storage": str(tmp_path / "searches"),
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "compare-tests"},
        }
    )
    plan = make_plan(config)
    plan.save(parent_run_id=None)
    front = GlobalFront(name, plan.objectives, plan.reference_point, plan.front_path)
    front.update("t0", [{"member": k, "values": p, "solver": "linear"} for k, p in enumerate(points)])


def test_compare_reports_hv_counts_and_coverage(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    # A: (0.2, 0.6), (0.6, 0.2) -> HV at (1,1) = 0.8·0.4 + 0.4·0.4 = 0.48
    _stored_search(tmp_path, "a", [(0.2, 0.6), (0.6, 0.2)])
    # B: (0.3, 0.7) is dominated by A's (0.2, 0.6); (0.1, 0.9) is not -> HV = 0.7·0.3 + 0.2·0.1 = 0.23
    _stored_search(tmp_path, "b", [(0.3, 0.7), (0.1, 0.9)])
    assert main(["compare", "a", "b", "--storage", str(tmp_path / "searches")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^a\s+0\.480000\s+2\s+2$", out, re.M), out
    assert re.search(r"^b\s+0\.230000\s+2\s+2$", out, re.M), out
    assert "C(a,b) = 0.500" in out and "C(b,a) = 0.000" in out
    run_id = re.search(r"logged to MLflow run (\w+)", out).group(1)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert {a.path for a in client.list_artifacts(run_id)} >= {"overlay.png", "comparison.json"}

    # a common reference point can be imposed; its length is checked
    assert (
        main(
            [
                "compare",
                "a",
                "b",
                "--no-mlflow",
                "--reference-point",
                "0.5",
                "0.5",
                "--storage",
                str(tmp_path / "searches"),
            ]
        )
        == 0
    )
    assert re.search(r"^a\s+0\.000000", capsys.readouterr().out, re.M)  # no A point beats (0.5, 0.5) in both
    assert main(["compare", "a", "b", "--reference-point", "1", "--storage", str(tmp_path / "searches")]) == 2
    assert "`--reference-point` needs 2 values (one per objective), found [1.0]" in capsys.readouterr().err


def test_solvers_lists_hyperparameters_defaults_and_papers(capsys) -> None:
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    for name in ("linear", "tchebycheff"):
        assert re.search(rf"^{name}: ", out, re.M)
    assert "margin = 0.001" in out and "ideal = None" in out
    assert out.count("paper: ") >= 2


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_front_formats(tmp_path, monkeypatch, capsys, fmt: str) -> None:
    monkeypatch.chdir(tmp_path)
    _stored_search(tmp_path, "f", [(0.2, 0.6), (0.6, 0.2), (0.7, 0.7)])
    assert main(["front", "f", "--format", fmt, "--storage", str(tmp_path / "searches")]) == 0
    out = capsys.readouterr().out
    if fmt == "csv":
        # the point (TRIAL/MEMBER[@eEPOCH]), its epoch and test values come after the columns of format 1
        assert out.splitlines()[0] == "trial_id,member,solver,f1,f2,preference,model_uri,point,epoch,test_f1,test_f2"
        assert len(out.splitlines()) == 3  # the dominated (0.7, 0.7) is not on the front
    elif fmt == "table":
        assert "2 points on the front of 3 evaluated; hypervolume 0.480000" in out
    else:
        assert '"hypervolume": 0.48' in out
