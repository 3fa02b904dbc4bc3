"""benchmarks/vs_peers' own accounting, on tiny hand-made cases (no training, no Ray): what a pruned trial
costs, the HV of the cumulative front, the budget to reach a target, the headline ratio and its printed line."""

from __future__ import annotations

import itertools
import math
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from vs_peers import budget, cli, methods, ray_runners, report, runners, runs  # noqa: E402  (after the path above)


def test_a_pruned_trial_costs_only_the_epochs_it_trained() -> None:
    counter = budget.BudgetCounter(budget=30)
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
    counter = budget.BudgetCounter(budget=2)
    stopper = budget.budget_stopper(counter)
    first = {"values": [[0.9, 0.1]], "training_iteration": 1}
    assert stopper("t1", first) is False  # never stops one trial: the scheduler does that
    assert stopper("t1", {"epoch": 1, "training_iteration": 1}) is False  # a result without points costs nothing
    stopper("t1", {**first, "done": True})  # Tune repeats a finished trial's last result: it is not another epoch
    assert not stopper.stop_all() and counter.spent == 1
    stopper("t2", {"values": [[0.1, 0.9]], "training_iteration": 1})
    assert stopper.stop_all() and counter.spent == 2


def test_the_cumulative_front_keeps_each_models_best_epochs() -> None:
    events = [
        {"cum": 1, "points": [["a/m0", [0.5, 0.5]]]},
        {"cum": 2, "points": [["b/m0", [0.2, 0.8]]]},  # adds volume beside a
        {"cum": 3, "points": [["a/m0", [0.4, 0.4]]]},  # a's next epoch is worse: its better epoch stays (service)
        {"cum": 4, "points": [["a/m0", [0.6, 0.45]]]},  # and a later one that adds volume of its own counts too
    ]
    hv = budget.replay_hv(events, ["max", "max"], [0.0, 0.0])
    assert hv[0] == pytest.approx(0.25)
    assert hv[1] == pytest.approx(0.25 + 0.2 * 0.3)
    assert hv[2] == pytest.approx(hv[1])  # never down: the worse epoch takes nothing away
    assert hv[3] == pytest.approx(0.6 * 0.45 + 0.5 * 0.05 + 0.2 * 0.3)
    assert all(b >= a for a, b in itertools.pairwise(hv))


def test_grid_curve_is_what_had_finished_by_each_budget() -> None:
    # A K=5 epoch finishes at 5 and 10 model-epochs: nothing counts before it ends.
    assert budget.grid_curve([5, 10], [0.3, 0.6], 12) == [0.0] * 5 + [0.3] * 5 + [0.6] * 3


def test_budget_to_reach_interpolates_between_the_bracketing_points() -> None:
    xs = [0, 1, 2, 3, 4]
    values = [0.0, 0.2, 0.4, 0.8, 0.8]
    assert budget.budget_to_reach(xs, values, 0.6) == pytest.approx(2.5)
    assert budget.budget_to_reach(xs, values, 0.4) == pytest.approx(2.0)  # reached exactly at a point
    assert budget.budget_to_reach(xs, values, 0.81) == math.inf
    assert budget.budget_to_reach([0, 10, 20], [0.5, 0.5, 0.9], 0.7) == pytest.approx(15.0)


def _row(name: str, curve: list[float]) -> report.Row:
    return report.Row(
        name, methods.METHODS[name].family, 1, curve, [0.0] * len(curve), (curve[-1], 0.0), (1.0, 0.0), 1, [], {}
    )


def test_headline_ratio_against_the_best_peer() -> None:
    peer = _row("optuna-tpe", [0.0, 0.2, 0.4, 0.6, 0.8])  # reaches its final 0.8 at 4 model-epochs
    weaker = _row("tune-asha", [0.0, 0.1, 0.2, 0.3, 0.7])
    fast = _row("mt2o-fifo", [0.0, 0.8, 0.9, 0.9, 0.9])  # 0.8 at 1
    slow = _row("independent-fifo", [0.0, 0.1, 0.2, 0.3, 0.5])  # never within the budget
    head = report.headline([peer, weaker, fast, slow])
    assert head is not None and head.peer == "optuna-tpe" and head.peer_budget == 4.0
    assert head.ratios["mt2o-fifo"] == (1.0, 0.25)
    assert head.ratios["independent-fifo"][1] == math.inf


def test_the_ratio_line_has_the_documented_form() -> None:
    pattern = r"budget ratio (\d+\.\d+|never) to reach the best peer's final HV \(([\w-]+), (\w+)\)"
    assert re.fullmatch(pattern, report.ratio_line(0.4567, "optuna-tpe", "zdt1"))
    assert report.ratio_line(0.4567, "optuna-tpe", "zdt1").startswith("budget ratio 0.46 ")
    assert re.fullmatch(pattern, report.ratio_line(math.inf, "libmoon-epo", "multi_mnist"))
    assert "ratio never to" in report.ratio_line(math.inf, "libmoon-epo", "multi_mnist")


def test_the_plateau_stop_ends_a_trial_whose_hv_stalls_and_leaves_the_others_running() -> None:
    pytest.importorskip("ray")
    counter = budget.BudgetCounter(budget=100)
    stopper = budget.budget_stopper(counter, plateau=0.01)
    one = [[0.5, 0.5]]

    def epoch(trial: str, iteration: int, hv: float) -> bool:
        return bool(stopper(trial, {"values": one, "training_iteration": iteration, "trial_hv": hv}))

    # Trial a gains 10 %, 5 %, then 0.4 % + 0.3 % over its last two epochs: stopped after that fourth epoch only.
    assert [epoch("a", i + 1, hv) for i, hv in enumerate([1.0, 1.1, 1.155, 1.16, 1.163])][:4] == [False] * 3 + [False]
    assert stopper("a", {"values": one, "training_iteration": 5, "trial_hv": 1.163}) is True  # a repeat: no new epoch
    # Trial b keeps gaining more than 1 % every two epochs: never stopped; nothing stops the experiment either.
    assert not any(epoch("b", i + 1, 1.0 + 0.02 * i) for i in range(6))
    assert not stopper.stop_all() and counter.spent == 11
    # Without a plateau the stopper never stops a trial, however flat its HV.
    flat = budget.budget_stopper(budget.BudgetCounter(budget=100))
    assert not any(flat("c", {"values": one, "training_iteration": i + 1, "trial_hv": 1.0}) for i in range(5))


def test_a_budget_split_trains_fewer_models_for_longer() -> None:
    job = {"problem": "zdt1", "n_train": 0, "seed": 1, "budget": 50, "epochs": 5, "lr": [0.005, 0.05], "k": 3}
    one = ray_runners.service_config(job, methods.METHODS["mt2o-default-one"], Path("/s"), "sqlite:///x.db")
    two = ray_runners.service_config(job, methods.METHODS["mt2o-default-two"], Path("/s"), "sqlite:///x.db")
    plateau = ray_runners.service_config(job, methods.METHODS["mt2o-default-plateau"], Path("/s"), "sqlite:///x.db")
    # (50 - 4 for the probe) model-epochs: one population of 3 for 15 epochs, or two for 7 each.
    assert (one["epochs"], one["search"]["num_samples"]) == (15, 1)
    assert (two["epochs"], two["search"]["num_samples"]) == (7, 2)
    # Plateau: any trial may take all 46 (15 epochs); enough trials for each to stop after 3; one at a time.
    assert (plateau["epochs"], plateau["search"]["num_samples"]) == (15, 6)
    assert plateau["search"]["max_concurrent_trials"] == 1


def test_service_configs_are_the_untuned_defaults_within_the_budget(tmp_path: Path) -> None:
    from pareto_search.config import parse_config

    job = {"problem": "zdt1", "n_train": 0, "seed": 1, "budget": 50, "epochs": 5, "lr": [0.005, 0.05], "k": 5}
    fifo = ray_runners.service_config(job, methods.METHODS["mt2o-fifo"], tmp_path, "sqlite:///x.db")
    asha = ray_runners.service_config(job, methods.METHODS["independent-pareto-asha"], tmp_path, "sqlite:///x.db")
    headline = methods.METHODS["mt2o-k3-fill-fifo"]
    default = ray_runners.service_config(job | {"k": 3}, headline, tmp_path, "sqlite:///x.db")
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
    assert ray_runners.probe_cost(headline) == 4 and cli.parse_args([]).headline == headline.name
    for config in (fifo, asha, default):
        parse_config(config)  # the service accepts them as they are


def test_a_runs_slots_are_part_of_its_cache_key_only_where_trials_share_them() -> None:
    job = {"problem": "multi_mnist", "n_train": 6000, "method": "mt2o-k3-fill-fifo", "seed": 0, "budget": 50,
           "epochs": 5, "lr": [0.001, 0.01], "runner": "service", "slots": 2}  # fmt: skip
    one_slot = job | {"slots": 1}
    assert cli.parse_args([]).slots == 1  # the default: every method on one slot, equal resources
    # The service (and Tune) at 1 slot runs its trials one at a time: another curve, so another run.
    assert runs._key(job) != runs._key(one_slot) and runs._key(one_slot)[-1] == 1
    assert runs._key(job | {"runner": "tune-asha"}) != runs._key(one_slot | {"runner": "tune-asha"})
    # Optuna, LibMOON and our stand-ins train one model at a time whatever --slots says: one run serves both.
    for runner in ("optuna", "libmoon", "trainer"):
        assert runs._key(job | {"runner": runner}) == runs._key(one_slot | {"runner": runner})
        assert runs._key(job | {"runner": runner})[-1] == 1


@pytest.mark.slow
def test_quick_mode_ends_with_the_ratio_line(tmp_path) -> None:
    """`--quick` as every change runs it: all peers (LibMOON's stand-ins where its venv is absent) and ours on zdt1,
    every method on one slot, here on one seed (the three of the benchmark's own run add statistics, not paths);
    its last line is the headline ratio (measured 40 s on 2 cores; bounded at 10 min)."""
    import subprocess

    done = subprocess.run(
        [
            *(sys.executable, str(BENCHMARKS / "vs_peers"), "--quick", "--seeds", "0"),
            *("--out", str(tmp_path / "out"), "--no-mlflow"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    line = r"budget ratio (\d+(\.\d+)?|never) to reach the best peer's final HV \([\w-]+, zdt1\)"
    assert re.fullmatch(line, last), last


# -- the reviewer's statistics (benchmarks/peer_stats.py) ---------------------------------------------------------


def test_per_seed_ratios_use_each_seeds_own_target_and_count_a_seed_that_never_gets_there() -> None:
    import peer_stats

    peer = {10: [0.0, 0.2, 0.4, 0.6, 0.8], 11: [0.0, 0.5, 0.5, 0.5, 0.5], 12: [0.0, 0.1, 0.2, 0.3, 0.4]}
    ours = {10: [0.0, 0.8, 0.8, 0.8, 0.8], 11: [0.0, 0.1, 0.2, 0.3, 0.4], 12: [0.0, 0.2, 0.4, 0.4, 0.4]}
    ratios = peer_stats.seed_ratios(ours, peer, budget.budget_to_reach)
    # seed 10: 1 / 4; seed 11: never reaches 0.5 (the peer got there at 1); seed 12: 2 / 4.
    assert ratios.ratios == {10: 0.25, 11: math.inf, 12: 0.5}
    assert ratios.median == 0.5 and ratios.text() == "0.50 (0.25–never)"
    # The mean curve hides what the per-seed view shows: averaged, ours reaches the averaged target.
    assert ratios.finite == [0.25, 0.5]


def test_the_paired_bootstrap_interval_is_above_zero_only_when_every_seed_agrees() -> None:
    import peer_stats

    peer = {0: 0.80, 1: 0.70, 2: 0.90, 3: 0.75, 4: 0.85}
    better = {s: v + 0.01 for s, v in peer.items()}  # a small but consistent gain on every seed (paired)
    mean, lo, hi = peer_stats.paired_bootstrap(better, peer)
    assert mean == pytest.approx(0.01) and lo == pytest.approx(0.01) and hi == pytest.approx(0.01)
    mixed = {0: 0.85, 1: 0.65, 2: 0.95, 3: 0.70, 4: 0.86}  # +0.05, -0.05, +0.05, -0.05, +0.01
    mean, lo, hi = peer_stats.paired_bootstrap(mixed, peer)
    assert lo < 0 < hi and lo <= mean <= hi
    assert peer_stats.paired_bootstrap(mixed, peer) == (mean, lo, hi)  # a function of the data: same every time


def test_the_near_reference_is_each_objectives_worst_final_point_and_test_hv_follows_the_validation_front() -> None:
    import peer_stats

    directions = ["max", "min"]
    runs = [[[0.9, 0.5], [0.6, 0.2]], [[0.8, 0.3]]]
    assert peer_stats.near_reference(runs, directions) == [0.6, 0.5]
    diverged = [*runs, [[0.01, 40.0]]]  # blew up: outside the fixed reference, it must not move the near one
    assert peer_stats.near_reference(diverged, directions, bound=[0.0, 1.0]) == [0.6, 0.5]
    events = [
        {"points": [["a/m0", [0.9, 0.5]]], "test": [["a/m0", [0.7, 0.6]]]},
        {"points": [["a/m0", [0.8, 0.6]]], "test": [["a/m0", [0.95, 0.1]]]},  # dominated on val: its test is unused
    ]
    assert peer_stats.front_of(events, directions) == [[0.9, 0.5]]
    assert peer_stats.hv_on_test(events, directions, [0.0, 1.0]) == pytest.approx(0.7 * 0.4)
    assert math.isnan(peer_stats.hv_on_test([{"points": [["a/m0", [0.9, 0.5]]]}], directions, [0.0, 1.0]))
    ends = peer_stats.front_ends(runs, directions)
    assert ends == [[0.9, 0.5], [0.6, 0.2]]


def test_runs_of_another_default_are_refused_and_the_digest_follows_the_preset(monkeypatch) -> None:
    import peer_stats

    from trials import presets

    digest = peer_stats.defaults_digest(ray_runners.default_entry([1e-4, 3e-2]))
    same = [{"digest": digest}, {"digest": digest}]
    assert peer_stats.check_digests(same, digest, strict=True) == ""
    line = peer_stats.check_digests([*same, {"digest": "0123456789ab"}], digest, strict=True)
    assert "0123456789ab" in line and digest in line and "\n" not in line
    assert "held-out" in peer_stats.check_digests([{}], digest, strict=True)  # an unrecorded run is not frozen
    assert peer_stats.check_digests([{}, {"digest": digest}], digest, strict=False) == ""  # older in-sample runs
    changed = presets.MethodPreset(**{**presets.MT2O.__dict__, "population": {**presets.MT2O.population, "size": 4}})
    monkeypatch.setattr(presets, "MT2O", changed)
    assert peer_stats.defaults_digest(ray_runners.default_entry([1e-4, 3e-2])) != digest


def test_the_heldout_protocol_takes_its_own_seeds_problems_and_range_and_refuses_in_sample_ones(capsys) -> None:
    args = cli.parse_args(["--protocol", "heldout"])
    assert args.seeds == "10,11,12,13,14" and args.problems == "multi_fashion,river_flow,movielens"
    assert args.lr_range == "0.0001,0.03" and args.headline == "mt2o-default" and args.out.name == "heldout"
    assert set(args.methods.split(",")) >= {"optuna-tpe-expert", "optuna-probe-tpe", "single-model", "optuna-tpe"}
    for bad in (["--seeds", "2,10"], ["--problems", "multi_mnist"]):
        with pytest.raises(SystemExit) as stopped:
            cli.parse_args(["--protocol", "heldout", *bad])
        assert stopped.value.code == 2
    assert "chose defaults (in sample)" in capsys.readouterr().err


def test_expert_samplers_are_sized_to_the_budget() -> None:
    tpe = runners.optuna_sampler("tpe", True, 0, 10)
    assert tpe._n_startup_trials == 4 and tpe._multivariate
    assert runners.optuna_sampler("tpe", False, 0, 10)._n_startup_trials == 10  # what a user gets by default
    assert runners.optuna_sampler("nsga2", True, 0, 10)._population_size == 5


def test_the_psl_row_is_charged_what_it_trains_not_the_points_it_shows() -> None:
    """One PSL network's epoch trains P preferences per example (P model-epochs) and shows N points: the budget
    counts P per epoch, so 50 model-epochs buy 12 epochs at P = 4, each with the preset's N points."""
    job = {"problem": "toy2d", "n_train": 0, "seed": 0, "budget": 50, "method": "psl", "runner": "psl"}
    record = runners.run_psl(job)
    events = record["events"]
    assert [e["cum"] for e in events] == [4 * (i + 1) for i in range(12)]
    assert all(len(e["points"]) == 11 and len(e["test"]) == 11 for e in events)
    # the points are a trade-off, not one model shown eleven times: the two ends differ on each objective
    last = [values for _, values in events[-1]["points"]]
    assert max(v[0] for v in last) - min(v[0] for v in last) > 0.1
    assert max(v[1] for v in last) - min(v[1] for v in last) > 0.1


def test_libmoon_psl_is_libmoons_own_runner_and_is_refused_off_its_image_problems_in_one_line() -> None:
    """LibMOON's PSL runs in LibMOON's venv (not here): its row exists with LibMOON's runner, and where its LeNet
    target network cannot take the inputs (tabular, synthetic) the run is left out with one line naming the
    problem; without the venv no stand-in takes its place."""
    method = methods.METHODS["libmoon-psl"]
    assert (method.family, method.runner, method.solver) == ("peer", "libmoon", "psl")
    assert "libmoon-psl" not in methods.DEFAULT_METHODS  # on request only
    for image in ("multi_mnist", "multi_fashion", "multi_fashion_mnist"):
        assert methods.libmoon_psl_refusal(image) == ""
    for other in ("river_flow", "zdt1", "related3"):
        why = methods.libmoon_psl_refusal(other)
        assert "\n" not in why and other in why and "LibMOON's PSL ships a LeNet hypernetwork only" in why
    args = cli.parse_args(["--problems", "zdt1", "--seeds", "0,1", "--methods", "libmoon-psl,libmoon-epo"])
    args.digest, args.commit = "d", "c"
    refused: list[str] = []
    jobs = runs.plan_jobs(args, "zdt1", 2, "", refused)
    assert [j["method"] for j in jobs] == ["libmoon-epo", "libmoon-epo"]
    assert refused == [methods.libmoon_psl_refusal("zdt1")]  # one line, not one per seed
    refused = []
    jobs = runs.plan_jobs(args, "multi_mnist", 2, "no LibMOON venv at /nowhere", refused)
    assert [j["runner"] for j in jobs] == ["trainer", "trainer"]  # EPO's stand-in; PSL's row has none
    assert refused == ["libmoon-psl refused: no LibMOON venv at /nowhere"]
