"""Multi-objective early stopping for Ray Tune: asynchronous successive halving judged on the Pareto front.

`ParetoASHA` is ASHA (Li et al. 2018, https://arxiv.org/abs/1810.05934) with the single-metric cutoff
replaced by a trial's standing on the front of the points recorded at a rung, so that trials whose models
are dominated stop early and the epochs go to the ones that move the front. `ParetoASHAStateCallback`
carries the scheduler's state through Tune's experiment checkpoints (Tune itself does not save schedulers;
see its docstring).

All Pareto math (non-dominated sorting, hypervolume) goes through `pareto_search.front.pareto`.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.callback import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from pareto_search.front.pareto import UNRANKED, Front, FrontPoint, Objective, hypervolume

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

__all__ = ["ParetoASHA", "ParetoASHAStateCallback", "RungScore", "StoppedTrial"]

# Version of the dict returned by `ParetoASHA.get_state`; bumped when its layout changes so that an old
# checkpoint fails loudly instead of restoring half a state.
_STATE_VERSION = 1
# HV contributions and HVs are differences/sums of floats from separate library calls: two trials whose
# values agree to this relative precision (relative to the HV of the rung's union) count as tied, so that
# rounding residue never decides between them (a tie means "continue", see `ParetoASHA`).
_TIE_REL_TOL = 1e-9


@dataclass(frozen=True)
class RungScore:
    """How one trial stands among the trials recorded at a rung (see `ParetoASHA` for the rule).

    `rank`: best non-dominated-sorting rank of its points in the rung's union (0 = on the rung's front;
    `pareto.UNRANKED` when it has no finite point). `contribution`: exclusive HV contribution of all its
    points together to the rung's union. `hypervolume`: HV of its own points. `n_points`: finite points.
    """

    rank: int
    contribution: float
    hypervolume: float
    n_points: int


@dataclass(frozen=True)
class StoppedTrial:
    """An early stop decided by `ParetoASHA` (for the benchmark and the logs).

    `time` is the trial's `time_attr` when stopped, `rung` the milestone where it was judged, `time_saved`
    is `max_t - time` (trial-epochs saved with the default `time_attr="training_iteration"`), `position`
    the number of trials strictly better at the rung, `n_at_rung` how many were recorded there and
    `n_continue` how many of them may continue (⌈n/η⌉).
    """

    trial_id: str
    time: float
    rung: float
    time_saved: float
    position: int
    n_at_rung: int
    n_continue: int


class ParetoASHA(FIFOScheduler):
    """Asynchronous successive halving where a trial's worth is its contribution to the current front.

    Each result must carry `result[time_attr]` (e.g. epochs done, 1-based) and `result[points_attr]`: one
    list of objective values per member of the trial (K members, m objectives, all *minimized*, i.e. the
    minimization form). A member with a NaN or infinite value counts as absent. Results lacking either key
    are ignored (CONTINUE), as ASHA does; a points array of the wrong shape is an error.

    **Rungs** (milestones) are `grace_period * reduction_factor**k` for k = 0, 1, ... while `< max_t`
    (grace 1, η 3, max_t 10 -> 1, 3, 9), as in ASHA. A result at `time >= max_t` is answered STOP: the
    trial has used its budget (ASHA's default `stop_last_trials=True`); that is not an early stop.

    **Recording.** When a trial reports at time t, its rung is the highest milestone <= t. If the trial has
    no record at that rung yet, its finite member points are recorded there (a trial that reports sparsely
    and jumps over a milestone is judged only at the highest one it reached). Records are never removed:
    the points of stopped, finished and failed trials stay evidence for the trials that come later.

    **Decision** (made once per trial and rung, asynchronously: against whatever is recorded at that rung
    so far, the trial itself included). Let n be the number of trials recorded at the rung and η the
    reduction factor.

    - If n < η: CONTINUE (too little evidence to halve anything).
    - Otherwise every trial recorded at the rung gets a score, compared lexicographically:
        (a) rank: the lowest non-dominated-sorting rank of its points within the union U of all points
            recorded at the rung (lower is better; a trial without finite points is worst),
        (b) contribution: its exclusive HV contribution to U, HV(U) - HV(U without all of its points),
            against `reference_point_min` (higher is better; 0 for a trial of rank > 0),
        (c) hypervolume: the HV of its own points (higher is better).
      The trial CONTINUEs iff fewer than ⌈n/η⌉ trials score strictly better than it, i.e. it is within
      the top ⌈n/η⌉; otherwise STOP. Ties at the boundary continue (the benefit of the doubt, like ASHA's
      strict `< cutoff`); contributions and HVs within 1e-9·HV(U) of each other count as tied.

    **Why rank comes first.** A trial all of whose points are dominated contributes nothing to the front,
    however large the HV of its own points: the front's trade-offs are already offered, at least as good
    in every objective, by other trials' models. Its own HV can even exceed that of a front trial (one
    balanced point dominated by a neighbour vs. a single extreme point), so HV alone would keep the wrong
    trial. Among front trials (rank 0) the exclusive contribution measures how much of the front would be
    lost without the trial; it is per *trial*, not a sum of per-point contributions, so K members that
    jointly cover a region are credited for it even when each member alone is redundant with its
    siblings. Rank is reference-free: a front point outside the reference box still ranks 0 (it
    contributes 0 HV). The trial's own HV breaks the remaining ties, e.g. among dominated trials (further
    from the front means a worse rank first) or between front trials whose points duplicate each other.

    **Not ASHA's exact cutoff.** ASHA compares a new result with the (1 - 1/η) percentile of the values
    recorded before it, so it may stop the second trial of a rung; here the first η - 1 trials at a rung
    always continue and the rule is a rank among the n recorded trials.

    Cost of a decision: one non-dominated sorting of U, one HV per trial at the rung and one per trial on
    the rung's front. Above `pareto.EXACT_HV_MAX_OBJECTIVES` objectives the HVs are approximations and
    small contributions are unreliable (and slower: ~0.1 s each).

    Tune integration: the scheduler needs no single `metric`/`mode`; those of `tune.TuneConfig` (if any)
    are accepted and ignored. It reports `points_attr` as its `metric`, so Tune's strict metric check
    fails a trial whose results lack the points. Pass `ParetoASHAStateCallback(scheduler)` in
    `RunConfig(callbacks=...)` so that `Tuner.restore` resumes with the rungs' records.

    Args:
        reference_point_min: HV reference point in minimization form (fixed, never derived from points).
        time_attr: monotonic progress key of the results (epochs with the default).
        max_t: budget per trial in `time_attr` units; a result at `time >= max_t` is answered STOP.
        grace_period: first milestone; no trial is stopped before it.
        reduction_factor: η, the halving rate (> 1): about 1/η of the trials reaching a rung go on.
        points_attr: result key holding the members' points in minimization form.
    """

    def __init__(
        self,
        reference_point_min: Sequence[float],
        *,
        time_attr: str = "training_iteration",
        max_t: int,
        grace_period: int = 1,
        # η = 3: the value of the Hyperband/ASHA papers (ASHA's Ray default is 4); with small trial counts
        # a gentler halving keeps enough trials at each rung for the front to mean something.
        reduction_factor: float = 3,
        points_attr: str = "points_min",
    ) -> None:
        ref = _validate_reference(reference_point_min)
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"Parameter `time_attr` should be a non-empty string. Found {time_attr!r}.")
        if not isinstance(points_attr, str) or not points_attr:
            raise ValueError(f"Parameter `points_attr` should be a non-empty string. Found {points_attr!r}.")
        if not _is_number(max_t) or not max_t > 0:
            raise ValueError(f"Parameter `max_t` should be a positive number. Found {max_t!r}.")
        if not _is_number(grace_period) or not grace_period > 0:
            raise ValueError(f"Parameter `grace_period` should be a positive number. Found {grace_period!r}.")
        if grace_period > max_t:
            raise ValueError(f"Parameter `grace_period` should be <= `max_t` ({max_t!r}). Found {grace_period!r}.")
        if not _is_number(reduction_factor) or not reduction_factor > 1:
            raise ValueError(f"Parameter `reduction_factor` should be a number > 1. Found {reduction_factor!r}.")
        super().__init__()  # type: ignore[no-untyped-call]  # Ray leaves FIFOScheduler.__init__ unannotated
        self._reference_point_min: tuple[float, ...] = ref
        self._time_attr = time_attr
        self._points_attr = points_attr
        self._max_t = max_t
        self._grace_period = grace_period
        self._reduction_factor = reduction_factor
        self._rungs: tuple[float, ...] = _milestones(grace_period, reduction_factor, max_t)
        # Tune reads `metric` only for its strict check that every result carries it (tune_controller.py
        # `_validate_result_metrics`): naming the points key makes a trainable that forgets them fail early.
        self._metric = points_attr
        self._init_state()

    def _init_state(self) -> None:
        # rung milestone -> trial_id -> finite member points recorded there, shape (k, m), k >= 0.
        self._recorded: dict[float, dict[str, np.ndarray]] = {r: {} for r in self._rungs}
        # rung -> trial_id -> HV of the trial's own recorded points: fixed once recorded, so computed once.
        self._own_hv: dict[float, dict[str, float]] = {r: {} for r in self._rungs}
        self._trial_ids: set[str] = set()
        self._stopped: dict[str, StoppedTrial] = {}
        self._reached_max_t: set[str] = set()
        self._num_decisions = 0

    # -- configuration -----------------------------------------------------------------------------------

    @property
    def rungs(self) -> tuple[float, ...]:
        """Milestones, ascending (e.g. (1, 3, 9) for grace 1, η 3, max_t 10)."""
        return self._rungs

    @property
    def reference_point_min(self) -> tuple[float, ...]:
        return self._reference_point_min

    @property
    def time_attr(self) -> str:
        return self._time_attr

    @property
    def points_attr(self) -> str:
        return self._points_attr

    @property
    def max_t(self) -> float:
        return self._max_t

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Called by `tune.run`/`Tuner` with `TuneConfig.metric`/`mode` (possibly None) and the public spec.

        The scheduler judges trials on their points, not on one metric, so a metric/mode given to
        `TuneConfig` (e.g. for `ResultGrid.get_best_result`) is accepted and ignored: returning False would
        make Tune raise "the scheduler ... was already instantiated with their own metric and mode".
        """
        return True

    # -- Tune callbacks ----------------------------------------------------------------------------------

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        # Also called for every trial of a restored experiment (already known from the restored state).
        self._trial_ids.add(trial.trial_id)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]) -> str:
        """Record the trial's points at a newly reached rung and decide CONTINUE / STOP (see class doc)."""
        trial_id = trial.trial_id
        if self._time_attr not in result or self._points_attr not in result:
            return TrialScheduler.CONTINUE
        self._trial_ids.add(trial_id)
        if trial_id in self._stopped:
            # Our decision is final: a stopped trial that reports again (e.g. resumed from its checkpoint
            # with ResumeConfig(finished=RESUME)) is stopped again, without counting a second saving.
            return TrialScheduler.STOP
        now = result[self._time_attr]
        rung = self._record(trial_id, now, result[self._points_attr])
        if now >= self._max_t:
            self._reached_max_t.add(trial_id)
            return TrialScheduler.STOP
        if rung is None:
            return TrialScheduler.CONTINUE
        return self._decide(trial_id, now, rung)

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]) -> None:
        """Record the last result's points if they reach an unrecorded rung (evidence only, no decision).

        Tune calls this with the trial's last result, also right after a STOP from `on_trial_result`.
        """
        self._trial_ids.add(trial.trial_id)
        if self._time_attr in result and self._points_attr in result:
            now = result[self._time_attr]
            self._record(trial.trial_id, now, result[self._points_attr])
            if now >= self._max_t:
                self._reached_max_t.add(trial.trial_id)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        # A PENDING/PAUSED trial was stopped from outside; its records stay evidence.
        pass

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        # A failed trial's recorded points stay evidence: they were real evaluations.
        pass

    # `choose_trial_to_run` is FIFOScheduler's: PENDING trials in submission order, then PAUSED ones (this
    # scheduler never pauses).

    # -- bookkeeping -------------------------------------------------------------------------------------

    def _rung_for(self, now: float) -> float | None:
        reached = [r for r in self._rungs if now >= r]
        return reached[-1] if reached else None

    def _record(self, trial_id: str, now: Any, raw_points: Any) -> float | None:
        """Record at the highest rung <= now if not yet recorded there; return that rung, else None."""
        if not _is_number(now):
            raise ValueError(f"Trial {trial_id}: result `{self._time_attr}` should be a number. Found {now!r}.")
        rung = self._rung_for(now)
        if rung is None or trial_id in self._recorded[rung]:
            return None
        points = self._finite_points(trial_id, raw_points)
        self._recorded[rung][trial_id] = points
        self._own_hv[rung][trial_id] = hypervolume(points, self._reference_point_min).value if len(points) else 0.0
        return rung

    def _finite_points(self, trial_id: str, raw_points: Any) -> np.ndarray:
        m = len(self._reference_point_min)
        try:
            points = np.asarray(raw_points, dtype=float)
        except (TypeError, ValueError):
            points = None
        if points is not None and points.size == 0:
            return np.empty((0, m))
        if points is None or points.ndim != 2 or points.shape[1] != m:
            shape = "not numeric" if points is None else f"shape {points.shape}"
            raise ValueError(
                f"Trial {trial_id}: result `{self._points_attr}` should be a list of member points with {m} "
                f"values each (minimization form, like the reference point). Found {raw_points!r} ({shape})."
            )
        return points[np.all(np.isfinite(points), axis=1)]

    # -- decision ----------------------------------------------------------------------------------------

    def rung_scores(self, rung: float) -> dict[str, RungScore]:
        """Scores of every trial recorded at `rung` (one of `rungs`), as used by the decision."""
        if rung not in self._recorded:
            raise ValueError(f"Parameter `rung` should be one of {list(self._rungs)!r}. Found {rung!r}.")
        return self._scores(rung)[0]

    def _scores(self, rung: float) -> tuple[dict[str, RungScore], float]:
        """(score per trial, HV of the union) for the trials recorded at `rung`."""
        records = self._recorded[rung]
        ref = np.asarray(self._reference_point_min)
        m = len(ref)
        union = np.concatenate([*records.values(), np.empty((0, m))], axis=0)
        if len(union) == 0:
            return {tid: RungScore(UNRANKED, 0.0, 0.0, 0) for tid in records}, 0.0
        objectives = tuple(Objective(f"f{j}", "min") for j in range(m))
        ranks = Front(objectives, tuple(FrontPoint(f"p{i}", tuple(v)) for i, v in enumerate(union))).ranks()
        front = ranks == 0
        total = hypervolume(union[front], ref).value
        scores = {}
        start = 0
        for tid, pts in records.items():
            # The union is the concatenation of the records, in order: this trial's rows are a slice.
            mine = slice(start, start + len(pts))
            start += len(pts)
            rank = int(ranks[mine].min()) if len(pts) else UNRANKED
            contribution = 0.0
            if rank == 0:
                # Only front points enclose HV, so HV(U) = HV(front), and dropping the trial's front points
                # is dropping all of its points.
                others = front.copy()
                others[mine] = False
                contribution = max(0.0, total - hypervolume(union[others], ref).value)
            scores[tid] = RungScore(rank, contribution, self._own_hv[rung][tid], len(pts))
        return scores, total

    def _decide(self, trial_id: str, now: float, rung: float) -> str:
        records = self._recorded[rung]
        n = len(records)
        self._num_decisions += 1
        if n < self._reduction_factor:
            return TrialScheduler.CONTINUE
        n_continue = math.ceil(n / self._reduction_factor)
        scores, total = self._scores(rung)
        tol = _TIE_REL_TOL * total
        mine = scores[trial_id]
        position = sum(_better(s, mine, tol) for tid, s in scores.items() if tid != trial_id)
        if position < n_continue:
            return TrialScheduler.CONTINUE
        self._stopped[trial_id] = StoppedTrial(
            trial_id=trial_id,
            time=now,
            rung=rung,
            time_saved=max(0, self._max_t - now),
            position=position,
            n_at_rung=n,
            n_continue=n_continue,
        )
        return TrialScheduler.STOP

    # -- counters for the benchmark ----------------------------------------------------------------------

    @property
    def stopped_trials(self) -> dict[str, StoppedTrial]:
        """Trials stopped early by the rule (not those that used their budget), by trial id (a copy)."""
        return dict(self._stopped)

    @property
    def num_stopped(self) -> int:
        """How many trials were stopped early."""
        return len(self._stopped)

    @property
    def time_saved(self) -> float:
        """Sum of `max_t - time` over early-stopped trials: trial-epochs saved with `time_attr` in epochs."""
        return sum(s.time_saved for s in self._stopped.values())

    def stats(self) -> dict[str, Any]:
        """Counters, JSON-able: for the benchmark and MLflow."""
        return {
            "time_attr": self._time_attr,
            "max_t": self._max_t,
            "rungs": list(self._rungs),
            "trials_seen": len(self._trial_ids),
            "decisions": self._num_decisions,
            "stopped_early": len(self._stopped),
            "reached_max_t": len(self._reached_max_t),
            "time_saved": self.time_saved,
            "recorded_per_rung": {str(r): len(self._recorded[r]) for r in self._rungs},
        }

    def debug_string(self) -> str:
        # Called by Tune's progress reporter every few seconds: counting only, no HV here.
        rungs = " | ".join(
            f"t={_fmt(r)}: {len(self._recorded[r])} recorded, "
            f"{sum(1 for s in self._stopped.values() if s.rung == r)} stopped"
            for r in self._rungs
        )
        return (
            f"Using ParetoASHA (η={_fmt(self._reduction_factor)}, max_t={_fmt(self._max_t)} {self._time_attr}): "
            f"{len(self._stopped)} stopped early, {_fmt(self.time_saved)} {self._time_attr} saved, "
            f"{len(self._reached_max_t)} reached max_t\nRungs: {rungs or 'none'}"
        )

    # -- state -------------------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "reference_point_min": self._reference_point_min,
            "time_attr": self._time_attr,
            "points_attr": self._points_attr,
            "max_t": self._max_t,
            "grace_period": self._grace_period,
            "reduction_factor": self._reduction_factor,
        }

    def get_state(self) -> dict[str, Any]:
        """Everything the decisions depend on, as plain picklable data (with the config, for checking)."""
        return {
            "version": _STATE_VERSION,
            "config": self._config(),
            "recorded": {r: {tid: pts.copy() for tid, pts in rec.items()} for r, rec in self._recorded.items()},
            "own_hv": {r: dict(hv) for r, hv in self._own_hv.items()},
            "trial_ids": set(self._trial_ids),
            "stopped": dict(self._stopped),
            "reached_max_t": set(self._reached_max_t),
            "num_decisions": self._num_decisions,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore `get_state()`'s output. The configuration must match (records depend on it)."""
        if not isinstance(state, Mapping) or state.get("version") != _STATE_VERSION:
            found = state.get("version") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"ParetoASHA state should have version {_STATE_VERSION}. Found {found!r}.")
        mine = self._config()
        for key, value in state["config"].items():
            if mine.get(key) != value:
                raise ValueError(
                    f"Cannot restore ParetoASHA state saved with `{key}`={value!r} into a scheduler with "
                    f"`{key}`={mine.get(key)!r}: rung records depend on it."
                )
        self._recorded = {r: {tid: np.array(p) for tid, p in state["recorded"][r].items()} for r in self._rungs}
        self._own_hv = {r: dict(state["own_hv"][r]) for r in self._rungs}
        self._trial_ids = set(state["trial_ids"])
        self._stopped = dict(state["stopped"])
        self._reached_max_t = set(state["reached_max_t"])
        self._num_decisions = int(state["num_decisions"])

    def save(self, checkpoint_path: str) -> None:
        """Pickle the state to `checkpoint_path` (TrialScheduler API)."""
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Load a state written by `save` (TrialScheduler API)."""
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


class ParetoASHAStateCallback(Callback):
    """Carries a `ParetoASHA`'s state through Tune experiment checkpoints, for `Tuner.restore`.

    Ray Tune 2.x checkpoints trials, the searcher and the callbacks (`TuneController.save_to_dir`), but
    never the scheduler: a restored experiment would get the scheduler as pickled in `tuner.pkl` at the
    start, with empty rungs. Tune does save every callback's `get_state()` with each experiment checkpoint
    and calls `set_state()` on restore before re-adding the trials, so this callback stores the scheduler's
    state there. Use the same scheduler object in both places:

        scheduler = ParetoASHA(ref, max_t=...)
        Tuner(..., tune_config=TuneConfig(scheduler=scheduler),
              run_config=RunConfig(callbacks=[ParetoASHAStateCallback(scheduler)]))

    `tuner.pkl` pickles the TuneConfig and the RunConfig together, so after `Tuner.restore` the callback
    still refers to the scheduler that Tune runs. Keep the callback list in the same order (Tune matches
    states to callbacks by index).
    """

    def __init__(self, scheduler: ParetoASHA) -> None:
        if not isinstance(scheduler, ParetoASHA):
            raise ValueError(f"Parameter `scheduler` should be a ParetoASHA. Found {type(scheduler).__name__}.")
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return {"pareto_asha": self.scheduler.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.set_state(state["pareto_asha"])


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool) and math.isfinite(x)


def _validate_reference(reference_point_min: Any) -> tuple[float, ...]:
    try:
        ref = np.asarray(reference_point_min, dtype=float)
    except (TypeError, ValueError):
        ref = None
    if ref is None or ref.ndim != 1 or len(ref) == 0 or not np.all(np.isfinite(ref)):
        raise ValueError(
            "Parameter `reference_point_min` should be a non-empty sequence of finite numbers (minimization "
            f"form). Found {reference_point_min!r}."
        )
    return tuple(float(x) for x in ref)


def _milestones(grace_period: float, reduction_factor: float, max_t: float) -> tuple[float, ...]:
    """grace·η^k for k = 0, 1, ... while < max_t; ints stay ints (η^k is recomputed, not accumulated)."""
    out = []
    k = 0
    while (milestone := grace_period * reduction_factor**k) < max_t:
        out.append(milestone)
        k += 1
    return tuple(out)


def _better(a: RungScore, b: RungScore, tol: float) -> bool:
    """Is score `a` strictly better than `b`: lower rank, then higher contribution, then higher own HV."""
    if a.rank != b.rank:
        return a.rank < b.rank
    if abs(a.contribution - b.contribution) > tol:
        return a.contribution > b.contribution
    return a.hypervolume > b.hypervolume + tol


def _fmt(x: float) -> str:
    return f"{x:g}"
