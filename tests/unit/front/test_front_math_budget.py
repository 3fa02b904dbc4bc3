"""The driver's front math (global HV, contribution) never takes more than ~5 % of its time, however slow it gets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pareto_search.config import parse_config
from pareto_search.front.global_front import GlobalFront
from pareto_search.plan import make_plan
from pareto_search.search import callback as callback_module
from pareto_search.search.callback import SearchCallback


def _callback(tmp_path: Path) -> SearchCallback:
    config = {
        "name": "budget",
        "problem": {"name": "toy2d"},
        "reference_point": [1.0, 1.0],
        "solvers": [{"solver": "linear"}],
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    plan = make_plan(parse_config(config))
    plan.files.local_path.mkdir(parents=True)
    return SearchCallback(plan, parent_run_id="parent", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def _result(k: int) -> dict:
    values = [[0.1 * (k % 9), 1.0 - 0.1 * (k % 9)]]
    return {
        "epoch": 1,
        "training_iteration": 1,
        "label": "linear",
        "values": values,
        "preferences": [[0.5, 0.5]],
        "trial_hv": 0.1,
        "train_losses": [[0.1, 0.2]],
        "m0/f1": values[0][0],
        "m0/f2": values[0][1],
    }


def test_slow_front_math_pauses_for_nineteen_times_its_cost_and_no_point_is_lost(tmp_path, monkeypatch) -> None:
    callback = _callback(tmp_path)
    monkeypatch.setattr(callback_module.SearchCallback, "queue", SimpleNamespace(submit=lambda what, write: None))
    original = GlobalFront.hypervolume
    computed: list[float] = []

    def slow_hypervolume(front: GlobalFront):  # 0.1 s of CPU, as a 5-objective front of thousands of points costs
        busy_until = time.thread_time() + 0.1
        while time.thread_time() < busy_until:
            pass
        computed.append(time.monotonic())
        return original(front)

    monkeypatch.setattr(GlobalFront, "hypervolume", slow_hypervolume)
    start = time.monotonic()
    for k in range(30):  # 30 results arriving back to back: all within one pause of ≥ 1.9 s after the first
        trial = SimpleNamespace(trial_id=f"t{k}", config={}, status="RUNNING")
        callback.on_trial_result(0, [trial], trial, _result(k))
    elapsed = time.monotonic() - start
    assert len(computed) <= 1 + elapsed / (20 * 0.1) + 1, (len(computed), elapsed)
    assert len(computed) < 30
    stored = json.loads(callback.front_path.read_text())["points"]
    assert len(stored) == 30  # every result's point is in the front file


def test_cheap_front_math_runs_after_every_result(tmp_path, monkeypatch) -> None:
    callback = _callback(tmp_path)
    submitted: list[str] = []
    monkeypatch.setattr(
        callback_module.SearchCallback, "queue", SimpleNamespace(submit=lambda what, write: submitted.append(what))
    )
    for k in range(10):
        trial = SimpleNamespace(trial_id=f"t{k}", config={}, status="RUNNING")
        callback.on_trial_result(0, [trial], trial, _result(k))
    assert sum(what.startswith("search metrics") for what in submitted) == 10
    assert pytest.approx(0.05) == callback_module.MATH_ALWAYS_S
