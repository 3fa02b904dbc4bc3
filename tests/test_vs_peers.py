"""benchmarks/vs_peers.py's own accounting, on tiny hand-made cases (no training, no Ray): what a pruned trial
costs, the HV of the cumulative front, the budget to reach a target, the headline ratio and its printed line."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import vs_peers  # noqa: E402  (benchmarks/ is not a package: on the path above)


def test_a_pruned_trial_costs_only_the_epochs_it_trained() -> None:
    counter = vs_peers.BudgetCounter(budget=30)
    # Trial a (K = 5) is stopped by the scheduler after its first epoch; trial b trains 3 epochs; results interleave.
    five = [[0.5, 0.5]] * 5
    counter.add("a", five)
    counter.add("b", five)
    assert not counter.exhausted
    counter.add("b", five)
    counter.add("b", five)
    assert [e["cum"] for e in counter.events] == [5, 10, 15, 20]
    assert counter.spent == 20  # 5 x (1 + 3) model-epochs, not 5 x 5 x 2 for two full trials
    counter.add("c", [[0.1, 0.1]] * 10)
    assert counter.spent == 30 and counter.exhausted
    assert counter.events[0]["points"][4][0] == "a/m4"  # one model per member, keyed by trial


def test_the_stopper_feeds_the_counter_and_stops_everything_at_the_budget() -> None:
    pytest.importorskip("ray")
    counter = vs_peers.BudgetCounter(budget=2)
    stopper = vs_peers.budget_stopper(counter)
    first = {"values": [[0.9, 0.1]], "training_iteration": 1}
    assert stopper("t1", first) is False  # never stops one trial: the scheduler does that
    assert stopper("t1", {"epoch": 1, "training_iteration": 1}) is False  # a result without points costs nothing
    stopper("t1", {**first, "done": True})  # Tune repeats a finished trial's last result: it is not another epoch
    assert not stopper.stop_all() and counter.spent == 1
    stopper("t2", {"values": [[0.1, 0.9]], "training_iteration": 1})
    assert stopper.stop_all() and counter.spent == 2


def test_the_cumulative_front_keeps_each_models_latest_point() -> None:
    events = [
        {"cum": 1, "points": [["a/m0", [0.5, 0.5]]]},
        {"cum": 2, "points": [["b/m0", [0.2, 0.8]]]},  # adds volume beside a
        {"cum": 3, "points": [["a/m0", [0.4, 0.4]]]},  # a's next epoch is worse: its latest point counts (service)
    ]
    hv = vs_peers.replay_hv(events, ["max", "max"], [0.0, 0.0])
    assert hv[0] == pytest.approx(0.25)
    assert hv[1] == pytest.approx(0.25 + 0.2 * 0.3)
    assert hv[2] == pytest.approx(0.16 + 0.2 * 0.4)


def test_grid_curve_is_what_had_finished_by_each_budget() -> None:
    # A K=5 epoch finishes at 5 and 10 model-epochs: nothing counts before it ends.
    assert vs_peers.grid_curve([5, 10], [0.3, 0.6], 12) == [0.0] * 5 + [0.3] * 5 + [0.6] * 3


def test_budget_to_reach_interpolates_between_the_bracketing_points() -> None:
    xs = [0, 1, 2, 3, 4]
    values = [0.0, 0.2, 0.4, 0.8, 0.8]
    assert vs_peers.budget_to_reach(xs, values, 0.6) == pytest.approx(2.5)
    assert vs_peers.budget_to_reach(xs, values, 0.4) == pytest.approx(2.0)  # reached exactly at a point
    assert vs_peers.budget_to_reach(xs, values, 0.81) == math.inf
    assert vs_peers.budget_to_reach([0, 10, 20], [0.5, 0.5, 0.9], 0.7) == pytest.approx(15.0)


def _row(name: str, curve: list[float]) -> vs_peers.Row:
    return vs_peers.Row(
        name, vs_peers.METHODS[name].family, 1, curve, [0.0] * len(curve), (curve[-1], 0.0), (1.0, 0.0), 1, [], {}
    )


def test_headline_ratio_against_the_best_peer() -> None:
    peer = _row("optuna-tpe", [0.0, 0.2, 0.4, 0.6, 0.8])  # reaches its final 0.8 at 4 model-epochs
    weaker = _row("tune-asha", [0.0, 0.1, 0.2, 0.3, 0.7])
    fast = _row("mt2o-fifo", [0.0, 0.8, 0.9, 0.9, 0.9])  # 0.8 at 1
    slow = _row("independent-fifo", [0.0, 0.1, 0.2, 0.3, 0.5])  # never within the budget
    head = vs_peers.headline([peer, weaker, fast, slow])
    assert head is not None and head.peer == "optuna-tpe" and head.peer_budget == 4.0
    assert head.ratios["mt2o-fifo"] == (1.0, 0.25)
    assert head.ratios["independent-fifo"][1] == math.inf


def test_the_ratio_line_has_the_documented_form() -> None:
    pattern = r"budget ratio (\d+\.\d+|never) to reach the best peer's final HV \(([\w-]+), (\w+)\)"
    assert re.fullmatch(pattern, vs_peers.ratio_line(0.4567, "optuna-tpe", "zdt1"))
    assert vs_peers.ratio_line(0.4567, "optuna-tpe", "zdt1").startswith("budget ratio 0.46 ")
    assert re.fullmatch(pattern, vs_peers.ratio_line(math.inf, "libmoon-epo", "multi_mnist"))
    assert "ratio never to" in vs_peers.ratio_line(math.inf, "libmoon-epo", "multi_mnist")


def test_service_configs_are_the_untuned_defaults_within_the_budget(tmp_path: Path) -> None:
    from pareto_search.config import parse_config

    job = {"problem": "zdt1", "n_train": 0, "seed": 1, "budget": 50, "epochs": 5, "lr": [0.005, 0.05], "k": 5}
    fifo = vs_peers.service_config(job, vs_peers.METHODS["mt2o-fifo"], tmp_path, "sqlite:///x.db")
    asha = vs_peers.service_config(job, vs_peers.METHODS["independent-pareto-asha"], tmp_path, "sqlite:///x.db")
    headline = vs_peers.METHODS["mt2o-k3-fill-fifo"]
    default = vs_peers.service_config(job | {"k": 3}, headline, tmp_path, "sqlite:///x.db")
    assert fifo["search"]["num_samples"] == 2 and asha["search"]["num_samples"] == 10
    assert fifo["solvers"][0] == {
        "label": "mt2o",
        "method": "mt2o",
        # Explicit: the rows measured before the preset pulled preferences inward and took beneficial transfer.
        "population": {"size": 5, "interior": 0.0, "across_trials": "same", "transfer": {"mode": "symmetric"}},
        "optimizer": {"name": "adam", "lr": {"loguniform": [0.005, 0.05]}},
    }
    assert asha["solvers"][0]["population"] == {
        "size": 5,
        "transfer": {"eps0": 0.0},
        "interior": 0.0,
        "across_trials": "same",
    }
    assert asha["search"]["scheduler"] == {"name": "pareto_asha"}
    # The headline: the preset as it ships (K = 3, interior 0.3, later trials fill the gaps) with the range given
    # as a probe, which is charged to the budget (4 model-epochs) before the trials: (50 - 4) / 15 -> 4 trials.
    from trials.presets import MT2O

    preset = {key: MT2O.population[key] for key in ("size", "interior", "across_trials")}
    preset["transfer"] = {"mode": MT2O.population["transfer"]["mode"]}
    assert default["solvers"][0]["population"] == preset
    assert default["solvers"][0]["optimizer"]["lr"] == {"probe": [0.005, 0.05]}
    assert default["search"]["num_samples"] == 4
    assert vs_peers.probe_cost(headline) == 4 and vs_peers.parse_args([]).headline == headline.name
    for config in (fifo, asha, default):
        parse_config(config)  # the service accepts them as they are


def test_a_runs_slots_are_part_of_its_cache_key_only_where_trials_share_them() -> None:
    job = {"problem": "multi_mnist", "n_train": 6000, "method": "mt2o-k3-fill-fifo", "seed": 0, "budget": 50,
           "epochs": 5, "lr": [0.001, 0.01], "runner": "service", "slots": 2}  # fmt: skip
    one_slot = job | {"slots": 1}
    assert vs_peers.parse_args([]).slots == 1  # the default: every method on one slot, equal resources
    # The service (and Tune) at 1 slot runs its trials one at a time: another curve, so another run.
    assert vs_peers._key(job) != vs_peers._key(one_slot) and vs_peers._key(one_slot)[-1] == 1
    assert vs_peers._key(job | {"runner": "tune-asha"}) != vs_peers._key(one_slot | {"runner": "tune-asha"})
    # Optuna, LibMOON and our stand-ins train one model at a time whatever --slots says: one run serves both.
    for runner in ("optuna", "libmoon", "trainer"):
        assert vs_peers._key(job | {"runner": runner}) == vs_peers._key(one_slot | {"runner": runner})
        assert vs_peers._key(job | {"runner": runner})[-1] == 1


@pytest.mark.slow
def test_quick_mode_ends_with_the_ratio_line(tmp_path) -> None:
    """`--quick` as every change runs it: all peers (LibMOON's stand-ins where its venv is absent) and ours on zdt1,
    3 seeds, every method on one slot; its last line is the headline ratio (measured 1.5 min on 2 cores; bounded
    at 10)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "vs_peers.py"), "--quick", "--out", str(tmp_path / "out"), "--no-mlflow"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    line = r"budget ratio (\d+(\.\d+)?|never) to reach the best peer's final HV \([\w-]+, zdt1\)"
    assert re.fullmatch(line, last), last
