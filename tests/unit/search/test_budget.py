"""`search.budget_model_epochs`: a search that spends a budget of model-epochs (search/budget.py).

What matters: the budget is never exceeded and is spent (the probe charged first); a trial ends once its HV stops
rising and the next takes the rest; the settings a budget derives are written once, so a re-read plan keeps them;
a resumed search counts what its trials spent before from the front; bad budgets are refused in one line.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.tune import ExperimentAnalysis

from pareto_search.config import PLATEAU_EPOCHS, PLATEAU_GAIN, budget_share, parse_config
from pareto_search.errors import ConfigError
from pareto_search.front.global_front import GlobalFront
from pareto_search.front.pareto import Objective
from pareto_search.plan import PLAN_FILE, load_plan, make_plan
from pareto_search.search.budget import BudgetStopper, plateaued, spent_by_trial
from pareto_search.search.callback import bind_location
from pareto_search.search.runner import run_search
from pareto_search.storage import Location

REPO = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "budget",
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 20}},
        "reference_point": [1.0, 1.0],
        "seed": 3,
        "solvers": [{"method": "mt2o", "optimizer": {"name": "adam", "lr": {"probe": [0.001, 0.1, 3]}}}],
        "search": {"budget_model_epochs": 30, "max_failures": 0},
        "resources": {"cpus_per_trial": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    config.update(overrides)
    return config


def test_a_budget_derives_the_trials_epochs_and_one_trial_at_a_time_once(tmp_path: Path) -> None:
    config = parse_config(_config(tmp_path))
    share = budget_share(config)
    assert share is not None and (share.probe, share.per_epoch) == (3, 3)  # 3 candidates x 1 epoch; the preset's K
    # A trial may spend all that the probe left: (30 - 3) // 3 epochs; as many trials as fit when each stops early.
    assert config.epochs == 9
    assert config.search.num_samples == 3 and config.search.max_concurrent_trials == 1
    # The plan stores the derived values; read back (the probe's chosen rate in place of the range), they stand.
    stored = config.model_dump(mode="json")
    stored["solvers"][0]["optimizer"]["lr"] = 0.01
    again = parse_config(stored)
    assert (again.epochs, again.search.num_samples, again.search.max_concurrent_trials) == (9, 3, 1)
    # What the user gives is kept: `epochs` caps a trial, `num_samples` the trials, a concurrency of their own.
    given = parse_config(_config(tmp_path, epochs=4, search={"budget_model_epochs": 30, "num_samples": 2}))
    assert (given.epochs, given.search.num_samples) == (4, 2)
    # Without a budget nothing changes.
    plain = parse_config(_config(tmp_path, search={}))
    assert (plain.epochs, plain.search.num_samples, plain.search.max_concurrent_trials) == (5, 1, None)


def test_the_shipped_budget_example_derives_what_its_comment_says() -> None:
    from pareto_search.config import load_config

    config = load_config(REPO / "configs" / "budget_zdt1.yaml")
    # (40 - 4 for the probe) // 3 members = 12 epochs at most; 36 / (3 x 3 epochs at the earliest plateau) = 4 trials
    assert (config.epochs, config.search.num_samples, config.search.max_concurrent_trials) == (12, 4, 1)


def test_a_budget_of_a_psl_model_counts_its_drawn_preferences(tmp_path: Path) -> None:
    config = parse_config(_config(tmp_path, solvers=[{"method": "psl"}]))
    share = budget_share(config)
    assert share is not None and share.probe == 0 and share.per_epoch == 4  # P = 4 preferences drawn per step
    assert config.epochs == 30 // 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"search": {"budget_model_epochs": 5}},
            "search.budget_model_epochs: 5 holds no epoch of solvers[0] (3 model-epochs of learning-rate probe, then "
            "3 an epoch); allowed: at least 6",
        ),
        (
            {"solvers": [{"method": "mt2o", "label": "a"}, {"method": "mt2o", "label": "b"}]},
            "search.budget_model_epochs: 30 with 2 solver entries: a budget is spent by one entry's trials, one after "
            "another; allowed: one entry (give each entry a search of its own)",
        ),
        ({"search": {"budget_model_epochs": 0}}, "search.budget_model_epochs"),
    ],
)
def test_a_budget_that_cannot_be_spent_is_refused_in_one_line(tmp_path: Path, overrides: Any, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_config(tmp_path, **overrides))
    text = str(refused.value)
    assert message in text and "\n" not in text


def test_a_trial_plateaus_once_its_hv_gains_too_little_over_the_last_epochs() -> None:
    assert PLATEAU_EPOCHS == 2 and PLATEAU_GAIN == 0.01
    assert not plateaued([0.5, 0.6])  # too few epochs to tell
    assert not plateaued([0.5, 0.6, 0.7, 0.75])  # +7 % over the last two
    assert plateaued([0.5, 0.6, 0.7, 0.703, 0.706])  # +0.86 %
    assert plateaued([0.0, 0.0, 0.0])  # dominated by the reference point throughout: nothing to wait for
    assert not plateaued([0.7, 0.5, 0.72])  # +2.9 % on two epochs ago, whatever happened between


def test_the_stopper_stops_where_the_next_epoch_would_not_fit(tmp_path: Path) -> None:
    stopper = BudgetStopper("s", Location(tmp_path / "none.json"), budget=20, charged=4)
    assert not stopper("t0", {"epoch": 1, "model_epochs": 3})
    assert not stopper("t0", {"epoch": 2, "model_epochs": 6})
    assert not stopper("t0", {"epoch": 2, "model_epochs": 6, "done": True})  # a repeated last result: no new epoch
    assert stopper.spent == 10 and not stopper.stop_all()
    assert not stopper("t1", {"epoch": 1, "model_epochs": 3})  # 13 spent: another epoch (16) fits
    assert not stopper("t1", {"epoch": 2, "model_epochs": 6})  # 16: another (19) fits
    assert stopper("t1", {"epoch": 3, "model_epochs": 9})  # 19: another (22) would not
    assert stopper.spent == 19 and stopper.stop_all()


def test_the_stopper_of_a_resumed_search_counts_what_the_front_holds(tmp_path: Path) -> None:
    path = tmp_path / "front.json"
    front = GlobalFront("s", (Objective("f1", "min"), Objective("f2", "min")), (1.0, 1.0), Location(path))
    for epoch in (1, 2, 3):
        members = [
            {
                "member": k,
                "values": [0.5 - 0.1 * epoch + k * 0.05, 0.5 - k * 0.05],
                "epoch": epoch,
                "model_epochs": 3 * epoch,
            }
            for k in range(3)
        ]
        front.update("t0", members)
    front.update("t1", [{"member": 0, "values": [0.9, 0.9], "epoch": 1, "model_epochs": 3}])
    front.save()
    assert spent_by_trial(GlobalFront.load(Location(path))) == {"t0": 9, "t1": 3}
    stopper = BudgetStopper("s", Location(path), budget=30, charged=3)
    restored = pickle.loads(pickle.dumps(stopper))  # as Tune restores it: the state it started with
    assert not restored.stop_all() and restored.spent == 3 + 9 + 3
    # t1 goes on from its checkpoint: its cumulative count replaces what the front said, it is not added to it.
    assert not restored("t1", {"epoch": 2, "model_epochs": 6}) and restored.spent == 18
    # A moved search: the front is read where the resuming command bound the search's files.
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "front.json").write_text(path.read_text())
    path.unlink()
    bind_location("budget-moved", Location(moved))
    elsewhere = pickle.loads(pickle.dumps(BudgetStopper("budget-moved", Location(path), budget=30, charged=3)))
    assert not elsewhere.stop_all() and elsewhere.spent == 3 + 9 + 3


@pytest.fixture()
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield
    ray.shutdown()


def test_a_search_spends_its_budget_trial_after_trial_and_resume_keeps_it(tmp_path, local_ray, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = make_plan(parse_config(_config(tmp_path)))
    outcome = run_search(plan)
    assert not outcome.failures
    saved = json.loads((tmp_path / "searches" / "budget" / "pareto_search" / PLAN_FILE).read_text())
    (probe,) = saved["probes"]
    analysis = ExperimentAnalysis(str(tmp_path / "searches" / "budget"))
    trials = sorted(analysis.trials, key=lambda t: t.config["entry"]["repeat"])
    last = [t.last_result for t in trials if t.last_result]
    spent = probe["model_epochs"] + sum(r["model_epochs"] for r in last)
    # Spent, never exceeded: what is left is less than one more epoch of the population (3 model-epochs).
    assert 30 - 3 < spent <= 30, (probe["model_epochs"], [r["model_epochs"] for r in last])
    assert len(last) >= 2  # the first trial did not take it all: it stopped at a plateau
    # Every trial but the last ended itself at a plateau, after PLATEAU_EPOCHS + 1 epochs at least.
    assert all(r.get("plateau") and r["epoch"] > PLATEAU_EPOCHS for r in last[:-1])
    # Every (trial, member) point names the model-epochs its trial had spent (what a resumed stopper counts).
    by_trial = spent_by_trial(outcome.front)
    assert sum(by_trial.values()) == spent - probe["model_epochs"]
    stored, _ = load_plan(tmp_path / "searches", "budget")
    again = run_search(stored, resume=True)  # a finished search: resume trains nothing more
    assert again.front.hypervolume().value == pytest.approx(outcome.front.hypervolume().value, abs=0.0)
    assert spent_by_trial(again.front) == by_trial
