"""Tests of ParetoASHA (pareto_search.search.scheduler), driven with stub Tune trials: no Ray cluster is started.

Every expected decision is derived by hand in a comment; the reference point is (4, 4) unless said
otherwise, so a point (a, b) alone encloses the box (4 - a) x (4 - b).
"""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
from ray.tune.callback import CallbackList
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from pareto_search.front.pareto import UNRANKED
from pareto_search.search.scheduler import ParetoASHA, ParetoASHAStateCallback

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
REF = (4.0, 4.0)


def make_trial(trial_id: str) -> Trial:
    # stub=True skips the trainable registry lookup: a real Trial object, cheap, no Ray runtime.
    return Trial("__fake", trial_id=trial_id, stub=True)


def make_scheduler(**kwargs) -> ParetoASHA:
    kwargs = {"max_t": 10, "grace_period": 1, "reduction_factor": 3, **kwargs}
    return ParetoASHA(kwargs.pop("reference_point_min", REF), **kwargs)


def report(scheduler: ParetoASHA, trial_id: str, t: int, points: list[list[float]]) -> str:
    trial = make_trial(trial_id)
    scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, {"training_iteration": t, "points_min": points})


def staircase(scheduler: ParetoASHA, t: int = 1) -> list[str]:
    """Three front trials at rung t: (1,3), (3,1), (2,2); each contributes 1, (2,2) has the largest HV."""
    return [
        report(scheduler, "a", t, [[1.0, 3.0]]),  # n=1 < η: continue
        report(scheduler, "b", t, [[3.0, 1.0]]),  # n=2 < η: continue
        # n=3, top ⌈3/3⌉=1 continue: all rank 0, contributions all 1 (tie), own HV: c 4 > a, b 3 -> c first.
        report(scheduler, "c", t, [[2.0, 2.0]]),
    ]


# ---------------------------------------------------------------------------------------------------------
# Rungs and construction
# ---------------------------------------------------------------------------------------------------------


class TestRungs:
    @pytest.mark.parametrize(
        ("grace", "eta", "max_t", "expected"),
        [(1, 3, 10, (1, 3, 9)), (1, 3, 9, (1, 3)), (2, 2, 16, (2, 4, 8)), (1, 4, 100, (1, 4, 16, 64)), (5, 3, 5, ())],
    )
    def test_milestones(self, grace: int, eta: float, max_t: int, expected: tuple) -> None:
        assert make_scheduler(grace_period=grace, reduction_factor=eta, max_t=max_t).rungs == expected

    @pytest.mark.parametrize(("grace", "eta", "max_t"), [(1, 3, 10), (2, 2, 17), (1, 4, 100)])
    def test_same_milestones_as_ray_asha_below_max_t(self, grace: int, eta: float, max_t: int) -> None:
        asha = AsyncHyperBandScheduler(max_t=max_t, grace_period=grace, reduction_factor=eta)
        ray_milestones = sorted(m for m, _ in asha._brackets[0]._rungs if m < max_t)
        assert make_scheduler(grace_period=grace, reduction_factor=eta, max_t=max_t).rungs == tuple(ray_milestones)

    def test_is_a_tune_scheduler_without_single_metric(self) -> None:
        scheduler = make_scheduler()
        assert isinstance(scheduler, TrialScheduler)
        # TuneConfig's metric/mode (or None) are accepted and ignored; Tune checks results carry `metric`.
        assert scheduler.set_search_properties(None, None) is True
        assert scheduler.set_search_properties("hv", "max", num_samples=8) is True
        assert scheduler.metric == "points_min"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"reduction_factor": 1}, "`reduction_factor` should be a number > 1. Found 1"),
            ({"max_t": 0}, "`max_t` should be a positive number. Found 0"),
            ({"grace_period": 11}, "`grace_period` should be <= `max_t` (10). Found 11"),
            ({"reference_point_min": [1.0, math.nan]}, "`reference_point_min` should be a non-empty sequence"),
            ({"reference_point_min": []}, "`reference_point_min` should be a non-empty sequence"),
        ],
    )
    def test_bad_parameters(self, kwargs: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            make_scheduler(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------------------


class TestDecision:
    def test_fewer_than_eta_trials_all_continue(self) -> None:
        scheduler = make_scheduler()
        # Two trials at rung 1 (n=2 < η=3): the second is dominated by the first, yet continues.
        assert report(scheduler, "good", 1, [[1.0, 1.0]]) == CONTINUE
        assert report(scheduler, "bad", 1, [[3.0, 3.0], [3.5, 2.9]]) == CONTINUE
        # Same at rung 3, reached by both.
        assert report(scheduler, "good", 3, [[1.0, 1.0]]) == CONTINUE
        assert report(scheduler, "bad", 3, [[3.0, 3.0]]) == CONTINUE
        assert scheduler.stopped_trials == {}

    def test_dominated_trial_after_eta_good_trials_stops(self) -> None:
        scheduler = make_scheduler()
        assert staircase(scheduler) == [CONTINUE, CONTINUE, CONTINUE]
        # n=4, top ⌈4/3⌉=2 continue; (2.5, 2.5) is dominated by (2,2): rank 1, behind 3 front trials.
        assert report(scheduler, "dominated", 1, [[2.5, 2.5], [3.5, 3.5]]) == STOP
        stop = scheduler.stopped_trials["dominated"]
        assert (stop.rung, stop.time, stop.position, stop.n_at_rung, stop.n_continue) == (1, 1, 3, 4, 2)
        assert stop.time_saved == 9  # max_t 10 - 1 epoch done
        assert scheduler.time_saved == 9 and scheduler.num_stopped == 1

    def test_third_front_trial_with_smallest_hv_stops_at_n_equal_eta(self) -> None:
        scheduler = make_scheduler()
        report(scheduler, "a", 1, [[1.0, 3.0]])
        report(scheduler, "c", 1, [[2.0, 2.0]])
        # n=3, top 1: contributions tie at 1, own HV (3,1) = 3 < (2,2)'s 4: one trial strictly better -> STOP.
        assert report(scheduler, "b", 1, [[3.0, 1.0]]) == STOP

    def test_new_non_dominated_point_filling_a_gap_survives(self) -> None:
        scheduler = make_scheduler()
        assert report(scheduler, "left", 1, [[1.0, 3.5]]) == CONTINUE
        assert report(scheduler, "right", 1, [[3.5, 1.0]]) == CONTINUE
        # n=3, top 1: near-left contributes [1.2,3.5)x[3.4,3.5) = 0.23, less than right's [3.5,4)x[1,3.4)=1.2.
        assert report(scheduler, "near_left", 1, [[1.2, 3.4]]) == STOP
        assert report(scheduler, "dominated", 1, [[3.6, 1.1]]) == STOP  # n=4, rank 1 behind three
        # (2, 2) dominates nobody but fills the middle: exclusive [2,3.5)x[2,3.4) = 2.1, the largest of
        # the front (left 0.1, near_left 0.08, right 0.5): position 0 < ⌈5/3⌉=2 -> CONTINUE.
        assert report(scheduler, "middle", 1, [[2.0, 2.0]]) == CONTINUE
        scores = scheduler.rung_scores(1)
        assert scores["middle"].rank == 0
        assert scores["middle"].contribution == pytest.approx(1.5 * 1.4)
        assert scores["right"].contribution == pytest.approx(0.5 * 1.0)
        assert scores["dominated"].rank == 1 and scores["dominated"].contribution == 0.0

    def test_rank_comes_before_own_hypervolume(self) -> None:
        scheduler = make_scheduler()
        assert report(scheduler, "centre", 1, [[2.0, 2.0]]) == CONTINUE
        assert report(scheduler, "top", 1, [[0.5, 3.9]]) == CONTINUE
        # n=3, top 1: centre's exclusive 1.9 x 1.9 = 3.61 > side's 0.15 -> STOP.
        assert report(scheduler, "side", 1, [[3.9, 0.5]]) == STOP
        # (2.1, 2.1) encloses 3.61, ten times the HV of "top" or "side" (0.35), but (2,2) dominates it.
        # n=4, top 2: by own HV it would be 2nd (continue); by rank it is 4th -> STOP.
        assert report(scheduler, "dominated_big_hv", 1, [[2.1, 2.1]]) == STOP
        scores = scheduler.rung_scores(1)
        assert scores["dominated_big_hv"].hypervolume > 10 * scores["top"].hypervolume
        assert scores["dominated_big_hv"].rank == 1
        assert scheduler.stopped_trials["dominated_big_hv"].position == 3

    def test_contribution_is_per_trial_not_per_point(self) -> None:
        scheduler = make_scheduler()
        report(scheduler, "a", 1, [[1.0, 3.0]])
        # Two identical members: each point alone is redundant (per-point contribution 0), the trial is not.
        report(scheduler, "twins", 1, [[3.0, 1.0], [3.0, 1.0]])
        assert scheduler.rung_scores(1)["twins"].contribution == pytest.approx(1.0 * 3.0 - 1.0 * 1.0)

    def test_points_outside_reference_box_rank_but_contribute_nothing(self) -> None:
        scheduler = make_scheduler()
        report(scheduler, "inside", 1, [[2.0, 2.0]])
        report(scheduler, "outside", 1, [[1.0, 5.0]])  # non-dominated, but beyond the reference in f2
        scores = scheduler.rung_scores(1)
        assert scores["outside"].rank == 0
        assert (scores["outside"].contribution, scores["outside"].hypervolume) == (0.0, 0.0)

    def test_earlier_decisions_are_not_revised(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler)
        # Later, better trials do not stop "a" retroactively (asynchronous): it is judged again at rung 3.
        report(scheduler, "best", 1, [[0.5, 0.5]])
        assert report(scheduler, "a", 2, [[1.0, 3.0]]) == CONTINUE  # no new rung: no decision
        assert "a" not in scheduler.stopped_trials

    def test_judged_once_per_rung_and_at_each_rung(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler)
        # At rung 3 the trials arrive in the reverse quality order; the first two always continue.
        assert report(scheduler, "c", 3, [[2.0, 2.0]]) == CONTINUE
        assert report(scheduler, "a", 3, [[1.0, 3.0]]) == CONTINUE
        assert report(scheduler, "b", 3, [[3.5, 3.5]]) == STOP  # dominated by (2,2) at rung 3, n=3, top 1
        assert scheduler.stopped_trials["b"].rung == 3 and scheduler.stopped_trials["b"].time_saved == 7
        # A repeated report at a recorded rung is not judged again (the rung's records do not change).
        assert report(scheduler, "a", 3, [[9.0, 9.0]]) == CONTINUE
        assert scheduler.rung_scores(3)["a"].n_points == 1

    def test_sparse_reports_are_judged_at_highest_rung_reached(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler, t=3)
        # First report at t=4 (it skipped rungs 1 and 3): judged at rung 3, the highest <= 4, only.
        # n=4, top 2: (3, 3) is dominated by (2, 2) -> STOP.
        assert report(scheduler, "late", 4, [[3.0, 3.0]]) == STOP
        assert scheduler.stopped_trials["late"].rung == 3
        assert scheduler.rung_scores(1) == {}

    def test_max_t_stops_without_counting_as_early_stop(self) -> None:
        scheduler = make_scheduler()
        assert report(scheduler, "a", 9, [[1.0, 1.0]]) == CONTINUE  # rung 9, n=1
        assert report(scheduler, "a", 10, [[1.0, 1.0]]) == STOP  # budget used
        assert scheduler.stopped_trials == {} and scheduler.time_saved == 0
        assert scheduler.stats()["reached_max_t"] == 1

    def test_stopped_trial_reporting_again_is_stopped_again(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler)
        assert report(scheduler, "d", 1, [[3.0, 3.0]]) == STOP
        assert report(scheduler, "d", 2, [[3.0, 3.0]]) == STOP
        assert scheduler.num_stopped == 1 and scheduler.time_saved == 9

    def test_results_without_time_or_points_are_ignored(self) -> None:
        scheduler = make_scheduler()
        trial = make_trial("a")
        assert scheduler.on_trial_result(None, trial, {"training_iteration": 1}) == CONTINUE
        assert scheduler.on_trial_result(None, trial, {"points_min": [[1.0, 1.0]]}) == CONTINUE
        assert scheduler.rung_scores(1) == {}

    @pytest.mark.parametrize("points", [[1.0, 2.0], [[1.0, 2.0, 3.0]], "x"])
    def test_points_of_wrong_shape_are_an_error(self, points: object) -> None:
        with pytest.raises(ValueError, match="result `points_min` should be a list of member points with 2 values"):
            report(make_scheduler(), "a", 1, points)

    def test_on_trial_complete_records_evidence_without_deciding(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler)
        # A trial completing at t=1 (e.g. stopped by a Tune stopper) is recorded at rung 1.
        trial = make_trial("finished")
        scheduler.on_trial_complete(None, trial, {"training_iteration": 1, "points_min": [[0.5, 0.5]]})
        assert scheduler.rung_scores(1)["finished"].rank == 0
        assert scheduler.num_stopped == 0
        # Its point (0.5, 0.5) dominates everything, so it holds one of the ⌈5/3⌉=2 places for the next
        # trial: (1.5, 1.5) is rank 1 like a and b, ahead of them by own HV (6.25 vs 3) -> position 1: CONTINUE.
        assert report(scheduler, "next", 1, [[1.5, 1.5]]) == CONTINUE
        # (1.2, 2.8) is rank 1 too with own HV 3.36 < 6.25: position 2 among n=6, top 2 -> STOP.
        assert report(scheduler, "after", 1, [[1.2, 2.8]]) == STOP


# ---------------------------------------------------------------------------------------------------------
# Non-finite values
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error")  # filtered before the Pareto module: no NonFiniteValuesWarning either
class TestNonFinite:
    def test_nan_member_is_ignored(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler)
        # The NaN member would "dominate" everything if it were compared; ignored, the trial's only finite
        # point (2.5, 2.5) is dominated by (2, 2): rank 1 at n=4, top 2 -> STOP.
        assert report(scheduler, "nan", 1, [[math.nan, 0.0], [2.5, 2.5], [0.0, math.inf]]) == STOP
        assert scheduler.rung_scores(1)["nan"].n_points == 1
        assert scheduler.rung_scores(1)["nan"].rank == 1

    def test_nan_member_does_not_hide_a_good_one(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler)
        assert report(scheduler, "half", 1, [[math.nan, math.nan], [0.5, 0.5]]) == CONTINUE

    def test_all_nan_trial_is_worst(self) -> None:
        scheduler = make_scheduler()
        staircase(scheduler)
        assert report(scheduler, "diverged", 1, [[math.nan, math.nan], [math.nan, 1.0]]) == STOP
        score = scheduler.rung_scores(1)["diverged"]
        assert (score.rank, score.n_points, score.hypervolume) == (UNRANKED, 0, 0.0)

    def test_all_nan_trial_continues_while_evidence_is_sparse(self) -> None:
        scheduler = make_scheduler()
        assert report(scheduler, "diverged", 1, [[math.nan, math.nan]]) == CONTINUE
        assert report(scheduler, "empty", 1, []) == CONTINUE


# ---------------------------------------------------------------------------------------------------------
# State: pickle, save/restore, Tune callback checkpoints
# ---------------------------------------------------------------------------------------------------------


def drive(scheduler: ParetoASHA) -> None:
    staircase(scheduler)
    report(scheduler, "dominated", 1, [[2.5, 2.5]])
    report(scheduler, "c", 3, [[2.0, 2.0]])


def next_decisions(scheduler: ParetoASHA) -> list[str]:
    # With the state lost, both would continue (n < η at each rung).
    return [
        report(scheduler, "a", 3, [[1.0, 3.0]]),  # rung 3: n=2 -> CONTINUE
        report(scheduler, "late", 3, [[3.0, 3.0]]),  # rung 3: n=3, dominated -> STOP
        report(scheduler, "late2", 1, [[3.5, 3.5]]),  # rung 1: n=5, dominated -> STOP
    ]


class TestState:
    def test_pickle_round_trip_of_the_scheduler(self) -> None:
        scheduler = make_scheduler()
        drive(scheduler)
        copy = pickle.loads(pickle.dumps(scheduler))  # what tuner.pkl does (stdlib pickle)
        assert copy.stopped_trials == scheduler.stopped_trials
        assert copy.rung_scores(1) == scheduler.rung_scores(1)
        assert next_decisions(copy) == next_decisions(scheduler) == [CONTINUE, STOP, STOP]

    def test_save_restore_into_a_fresh_scheduler(self, tmp_path) -> None:
        scheduler = make_scheduler()
        drive(scheduler)
        scheduler.save(str(tmp_path / "sched.pkl"))
        fresh = make_scheduler()
        assert next_decisions(make_scheduler()) == [CONTINUE, CONTINUE, CONTINUE]  # no state: no evidence
        fresh.restore(str(tmp_path / "sched.pkl"))
        assert fresh.stopped_trials == scheduler.stopped_trials
        assert fresh.stats() == scheduler.stats()
        assert next_decisions(fresh) == [CONTINUE, STOP, STOP]

    def test_restore_refuses_another_configuration(self) -> None:
        scheduler = make_scheduler()
        drive(scheduler)
        other = make_scheduler(reference_point_min=(5.0, 5.0))
        with pytest.raises(ValueError, match=r"saved with `reference_point_min`=\(4.0, 4.0\)"):
            other.set_state(scheduler.get_state())

    def test_state_travels_through_tune_callback_checkpoints(self, tmp_path) -> None:
        # The path Tune uses for experiment checkpoints: CallbackList.save_to_dir / restore_from_dir.
        scheduler = make_scheduler()
        drive(scheduler)
        CallbackList([ParetoASHAStateCallback(scheduler)]).save_to_dir(str(tmp_path), session_str="s1")
        fresh = make_scheduler()
        callbacks = CallbackList([ParetoASHAStateCallback(fresh)])
        assert callbacks.can_restore(str(tmp_path))
        callbacks.restore_from_dir(str(tmp_path))
        assert next_decisions(fresh) == [CONTINUE, STOP, STOP]

    def test_debug_string_and_stats(self) -> None:
        scheduler = make_scheduler()
        drive(scheduler)
        text = scheduler.debug_string()
        assert (
            "Using ParetoASHA (η=3, max_t=10 training_iteration): 1 stopped early, 9 training_iteration saved" in text
        )
        assert "t=1: 4 recorded, 1 stopped | t=3: 1 recorded, 0 stopped | t=9: 0 recorded, 0 stopped" in text
        stats = scheduler.stats()
        assert (stats["stopped_early"], stats["time_saved"], stats["trials_seen"]) == (1, 9, 4)


def test_no_warnings_from_scoring() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = make_scheduler()
        drive(scheduler)
        next_decisions(scheduler)
