"""Build the Tuner for a search plan and run, resume or inspect it."""

from __future__ import annotations

import contextlib
import copy
import errno
import gc
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from pareto_search.console import say
from pareto_search.errors import ConfigError, SearchStopped
from pareto_search.front.global_front import GlobalFront
from pareto_search.front.pareto import to_min_form
from pareto_search.locations import resolve_locations
from pareto_search.plan import PLAN_FILE, SearchPlan, load_plan
from pareto_search.search.atomic_fs import atomic_local_filesystem
from pareto_search.search.budget import BudgetStopper
from pareto_search.search.callback import SearchCallback, bind_location
from pareto_search.search.driver_lock import driver_lock
from pareto_search.search.lr_probe import pending_probes, run_probes, trains_here
from pareto_search.search.member_actors import largest_members_apart, members_apart
from pareto_search.search.resources import (
    PendingWatch,
    PlacementTimeout,
    check_members_fit,
    check_requests_fit,
    node_resources,
    trial_resources,
)
from pareto_search.search.scheduler import ParetoASHA, ParetoASHAStateCallback
from pareto_search.search.space import param_space, tune_num_samples, unpack
from pareto_search.search.trainable import run_trial
from pareto_search.search.tune_state import alias_moved_modules, check_experiment_state
from pareto_search.storage import StorageError, check_reachable
from pareto_search.timeouts import WaitTimeout, bounded_call, redact_uri, tracking_open_timeout_s
from pareto_search.tracking.client import SearchTracker
from pareto_search.tracking.connection import fail_fast_http, is_network_error, is_outage
from pareto_search.tracking.outage import TrackingUnavailable

# Schedulers judge trials by the trainer's own epoch count, not Tune's result count: a trial restarted from
# scratch after a damaged checkpoint counts its epochs again, and each rung records a trial once (as before).
TIME_ATTR = "epoch"


def _searcher(plan: SearchPlan) -> Searcher | BasicVariantGenerator:
    search = plan.config.search
    if search.algorithm != "optuna":
        # The bound goes into the generator itself: Tune applies `TuneConfig.max_concurrent_trials` only to a
        # `Searcher` and, given a generator instance, ignores it with a log warning (the trials all ran at once).
        return BasicVariantGenerator(random_state=plan.config.seed, max_concurrent=search.max_concurrent_trials or 0)
    if search.optuna_target == "hypervolume":
        return OptunaSearch(metric="trial_hv", mode="max", seed=plan.config.seed)
    return OptunaSearch(
        metric=[f"best/{o.name}" for o in plan.objectives],
        mode=[o.direction for o in plan.objectives],
        seed=plan.config.seed,
    )


# Experiment name -> (filesystem, path) of the storage this driver runs it in (run_search binds it first).
_STORAGE: dict[str, tuple[Any, str]] = {}


def _bind_storage(plan: SearchPlan, filesystem: Any) -> None:
    """Where this driver keeps the experiment's trials: what a restored search's new trials are given."""
    storage = plan.storage_dir.parent
    if storage.is_local:
        _STORAGE[plan.name] = (filesystem, Path(storage.local_path).as_posix())
    else:
        import pyarrow.fs as pafs

        _STORAGE[plan.name] = pafs.FileSystem.from_uri(storage.uri)


class _TrialsWhereResumed:
    """Scheduler mixin: a trial added to a restored search runs in the storage the search was resumed from.

    Tune moves the trials it restores to a moved experiment folder (Trial.set_storage), but the trials its search
    algorithm creates afterwards are built from the algorithm's saved state, which holds the folder the search
    started in: they would write there (or fail, that folder gone). Every trial passes here when it is added,
    before its worker starts."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        bound = _STORAGE.get(trial.storage.experiment_dir_name) if trial.storage is not None else None
        if bound is not None and trial.storage.storage_fs_path != bound[1]:
            storage = copy.copy(trial.storage)
            storage.storage_filesystem, storage.storage_fs_path = bound
            trial.set_storage(storage)  # as Tune does for the trials it restores (checkpoint paths follow)
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]


class _FIFO(_TrialsWhereResumed, FIFOScheduler):
    def __init__(self) -> None:  # typed: FIFOScheduler's own __init__ is not
        super().__init__()  # type: ignore[no-untyped-call]


class _ASHA(_TrialsWhereResumed, ASHAScheduler):
    pass


class _ParetoASHA(_TrialsWhereResumed, ParetoASHA):
    pass


def _scheduler(plan: SearchPlan) -> TrialScheduler:
    conf = plan.config.search.scheduler
    if conf.name == "asha":  # Tune's own ASHA on the trial's hypervolume (one number)
        return _ASHA(
            time_attr=TIME_ATTR,
            metric="trial_hv",
            mode="max",
            max_t=plan.config.epochs,
            grace_period=conf.grace_period,
            reduction_factor=conf.reduction_factor,
        )
    if conf.name == "pareto_asha":
        return _ParetoASHA(
            to_min_form(plan.reference_point, [o.direction for o in plan.objectives]).tolist(),
            time_attr=TIME_ATTR,
            max_t=plan.config.epochs,
            grace_period=conf.grace_period,
            reduction_factor=conf.reduction_factor,
        )
    return _FIFO()


def _trainable(plan: SearchPlan) -> Any:
    config = plan.config
    resources = config.resources
    trainable = tune.with_parameters(run_trial, plan=plan.to_dict())
    if not largest_members_apart(config):
        return tune.with_resources(trainable, trial_resources(resources, 0))

    def per_trial(params: dict[str, Any]) -> Any:  # Tune asks for each trial: its population's size may be searched
        spec = config.trial_spec(*unpack(params))
        return trial_resources(resources, members_apart(spec))

    return tune.with_resources(trainable, per_trial)


def _budget_stopper(plan: SearchPlan) -> BudgetStopper | None:
    """The stopper of a search with ``search.budget_model_epochs`` (its probe charged first); None otherwise."""
    budget = plan.config.search.budget_model_epochs
    if budget is None:
        return None
    return BudgetStopper(plan.name, plan.front_path, budget, plan.probe_model_epochs)


def trial_name(trial: Any) -> str:
    """Short trial names and folders: Tune's default spells out every hyperparameter."""
    return str(trial.trial_id)


CHECKPOINTS_KEPT = 2

# Every epoch checkpoints and num_to_keep=CHECKPOINTS_KEPT makes Tune snapshot the experiment state each time:
# that is what lets a killed driver resume from the latest epoch, so Tune's warning about
# frequent snapshots is expected here, not a problem.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Tune's TensorBoard logger cost ~13 ms of the driver's loop per result (benchmarks/search_overhead.py), and every
# trial waits for that loop at each report; MLflow has the same metrics. Its JSON and CSV loggers (cheap: each
# trial's result.json and progress.csv) are added explicitly below. TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0 brings
# the TensorBoard files back.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def _init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    # Plug-in problems ('package.module:factory') are imported inside the trials: let the
    # workers see the driver's working directory the way the driver does.
    python_path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": python_path}}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(include_dashboard=False, runtime_env=runtime_env, log_to_driver=True)
    _SIGTERM.reinstall()  # ray.init puts its own SIGTERM handler in (sys.exit mid-Tune: a native stack dump)


def run_search(plan: SearchPlan, *, address: str | None = None, resume: bool = False) -> SearchOutcome:
    """Run a new search, or resume an interrupted one from its storage; returns its global front.

    One driver per search (driver_lock.py): a second `run` or `resume` of a search that a driver is running is
    refused in one line (DriverLockHeld) before it touches anything. SIGTERM (Kubernetes, systemd, Slurm, spot
    preemption) stops the search the way Ctrl-C does: Tune saves it and the outcome is interrupted."""
    try:
        check_reachable(plan.storage_dir)  # before anything is written or started
    except StorageError as exc:
        raise ConfigError(f"`storage`: {exc}") from None
    with _sigterm_as_interrupt(), contextlib.ExitStack() as held:
        try:
            held.enter_context(driver_lock(plan.name, plan.files, "resume" if resume else "run"))
        except StorageError as exc:
            raise ConfigError(f"`storage`: {exc}") from None
        try:
            return _run_search(plan, address=address, resume=resume)
        except Exception as exc:
            storage = _storage_failure(exc)
            if storage is None:
                raise
            raise SearchStopped(_storage_stop_message(plan, storage)) from None


def _run_search(plan: SearchPlan, *, address: str | None, resume: bool) -> SearchOutcome:
    plan_file_exists = (plan.files / PLAN_FILE).is_file()
    if not resume and plan_file_exists:
        raise ConfigError(
            f"search '{plan.name}' already exists in {plan.storage_dir}; "
            f"`pareto-search resume {plan.name}` continues it, or choose another --name"
        )
    if address is None:  # this machine (or the Ray already running here) must fit one trial
        nodes = node_resources()
        check_requests_fit(plan.config.resources, nodes)
        check_members_fit(plan.config.resources, largest_members_apart(plan.config), nodes)
    if resume:
        plan, parent_run_id = load_plan(plan.storage_dir.parent, plan.name)
    # Where this command runs decides: a resumed search's store is its record resolved here and now (a folder
    # moved with its mlflow.db keeps working), never the absolute URI its first driver resolved.
    locations = resolve_locations(plan)
    tracking_uri = locations.tracking_uri
    if locations.note:
        say(f"[{plan.name}] {locations.note}")

    def open_tracking() -> tuple[SearchTracker, str]:
        with fail_fast_http():  # a server that does not answer is one line now, not minutes of retries
            tracker = SearchTracker(tracking_uri, plan.config.tracking.experiment)
            if resume:
                return tracker, tracker.start_search(plan.name, plan.to_dict(), run_id=parent_run_id)
            return tracker, tracker.start_search(plan.name, plan.config.model_dump(mode="json"))

    shown_uri = redact_uri(tracking_uri)
    bound_s = tracking_open_timeout_s(tracking_uri)
    # Every scheme gets a bound: a database URI has no request timeout of its own (MLflow retries a refused port
    # for ~100 s, and a listener that never replies holds the connection forever). MLflow's retry warnings would
    # only repeat what the one line says.
    engine_log = logging.getLogger("mlflow.store.db.utils")
    engine_level = engine_log.level
    engine_log.setLevel(logging.ERROR)
    abandoned = False
    try:
        tracker, parent_run_id = bounded_call(open_tracking, bound_s, f"tracking store {shown_uri}")
    except ConfigError:
        raise
    except WaitTimeout:  # the abandoned attempt may log on: its warnings stay off until the process ends
        abandoned = True
        raise ConfigError(f"`tracking.uri`: {shown_uri} did not answer within {bound_s:g} s") from None
    except Exception as exc:  # the store cannot be used: one line before Ray starts, not a traceback
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        verb = "did not answer" if is_outage(exc) else "cannot be used"
        raise ConfigError(f"`tracking.uri`: {shown_uri} {verb}: {reason[:400]}") from None
    finally:
        if not abandoned:
            engine_log.setLevel(engine_level)
    moved = getattr(tracker, "moved_note", None)
    if moved:
        say(f"[{plan.name}] {moved}")
    if not resume:
        plan.save(parent_run_id)
    # A probe that trains in this process needs no Ray: it runs before Ray starts, not beside its start-up.
    here = bool(pending_probes(plan.config)) and trains_here(plan, address)
    if not here:
        _init_ray(address)
    if pending_probes(plan.config):  # a new search, or one killed while it probed: its trials need the value
        try:
            plan, probes = run_probes(plan, here=here)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM while probing: nothing trained yet; `resume` probes again
            tracker.end_run(parent_run_id, "KILLED")
            empty = GlobalFront(plan.name, plan.objectives, plan.reference_point, plan.front_path)
            return SearchOutcome(empty, 0, interrupted=True, terminated=_SIGTERM.received)
        plan.save(parent_run_id)
        chosen = {f"pareto_search.lr_probe.solvers.{r.entry}.lr": f"{r.chosen:.6g}" for r in probes}
        tracker.set_tags(parent_run_id, chosen)
        tracker.log_json(parent_run_id, list(plan.probes), "lr_probe.json")
    _init_ray(address)  # (started already unless the probe trained here)
    bind_location(plan.name, plan.files, tracking_uri)  # before Tune unpickles a restored callback
    trainable = _trainable(plan)
    # Local storage: Tune's copies into the folder publish each file whole (atomic_fs.py); object stores do.
    filesystem = atomic_local_filesystem() if plan.storage_dir.is_local else None
    _bind_storage(plan, filesystem)
    if resume and plan.storage_dir.is_local and plan.storage_dir.local_path.is_dir():
        for line in check_experiment_state(plan.storage_dir.local_path):  # before Tune reads it (tune_state.py)
            say(f"[{plan.name}] {line}")
    if resume and tune.Tuner.can_restore(str(plan.storage_dir), storage_filesystem=filesystem):
        alias_moved_modules()  # a search started before the package's modules moved names them by their old path
        tuner = tune.Tuner.restore(
            str(plan.storage_dir),
            trainable=trainable,
            storage_filesystem=filesystem,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    else:
        search = plan.config.search
        scheduler = _scheduler(plan)
        callbacks: list[tune.Callback] = [
            SearchCallback(plan, parent_run_id, tracking_uri),
            PendingWatch(plan.config.resources, search.pending_timeout_s),
            JsonLoggerCallback(),
            CSVLoggerCallback(),
            StorageWatch(),
        ]
        if isinstance(scheduler, ParetoASHA):  # Tune checkpoints callbacks, not schedulers: carry its state
            callbacks.append(ParetoASHAStateCallback(scheduler))
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(plan.config),
            tune_config=tune.TuneConfig(
                search_alg=_searcher(plan),
                scheduler=scheduler,
                num_samples=tune_num_samples(plan.config),
                # Optuna's Searcher: Tune wraps it in a ConcurrencyLimiter; the generator has it already (above).
                max_concurrent_trials=search.max_concurrent_trials if search.algorithm == "optuna" else None,
                reuse_actors=search.reuse_actors,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=plan.name,
                storage_path=str(plan.storage_dir.parent),
                storage_filesystem=filesystem,
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=search.max_failures),
                # A trial resumes from its newest checkpoint; the one before is kept as the fallback when the
                # newest is damaged (checkpoints.py): two per trial, one member's weights each.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                stop=_budget_stopper(plan),
                verbose=1,
            ),
        )
    try:
        with _sigint_watch() as interruption, _quiet_storage_full():
            results = tuner.fit()
    except Exception as exc:
        unplaced = _cause(exc, PlacementTimeout)
        if unplaced is not None:
            kept = len(GlobalFront.load(plan.front_path).points) if plan.front_path.is_file() else 0
            raise SearchStopped(
                f"{unplaced}; search '{plan.name}' stopped with {kept} evaluated points; "
                f"`pareto-search resume {plan.name}` continues it once the cluster can place a trial"
            ) from None
        outage = _cause(exc, TrackingUnavailable)
        if outage is None:
            raise
        kept = len(GlobalFront.load(plan.front_path).points) if plan.front_path.is_file() else 0
        raise SearchStopped(
            f"{outage}; search '{plan.name}' stopped: its {kept} evaluated points are in {plan.front_path}; "
            f"`pareto-search resume {plan.name}` continues it once the server answers"
        ) from None
    front = GlobalFront.load(plan.front_path) if plan.front_path.is_file() else None
    every = [results[i] for i in range(len(results))]  # ResultGrid is indexable (its __iter__ is not typed)
    failures = tuple(_failure(r) for r in every if r.error is not None)
    recoveries = tuple(
        Recovery(str(metrics.get("trial_id") or Path(r.path).name), str(metrics["recovery"]))
        for r in every
        if "recovery" in (metrics := r.metrics or {})
    )
    interrupted = interruption.happened
    tracker.set_tags(parent_run_id, {"pareto_search.failed_trials": str(len(failures))})
    tracker.end_run(parent_run_id, "KILLED" if interrupted else "FINISHED")
    if front is None:
        say(f"[{plan.name}] no trial reported a point")
        objectives = plan.objectives
        front = GlobalFront(plan.name, objectives, plan.reference_point, plan.front_path)
    full = next((f for f in failures if _is_storage_full_text(f.error)), None)
    if full is not None and not interrupted:  # the others failed the same way or would: one line, not N tracebacks
        raise SearchStopped(_storage_stop_message(plan, OSError(errno.ENOSPC, full.error)))
    return SearchOutcome(front, len(results), failures, interrupted, recoveries, _SIGTERM.received and interrupted)


@dataclass(frozen=True)
class TrialFailure:
    trial_id: str
    error: str  # the error's own line (the end of its traceback)
    where: str  # where the whole error is kept


@dataclass(frozen=True)
class Recovery:
    trial_id: str
    what: str  # which checkpoint was damaged and where the trial continued from


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished search hands back: its front, how many trials ran, which ended in error."""

    front: GlobalFront
    trials: int
    failures: tuple[TrialFailure, ...] = ()
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM: the front is partial, `resume` continues it
    recoveries: tuple[Recovery, ...] = ()  # trials that found a damaged checkpoint on resume
    terminated: bool = False  # the interruption was a SIGTERM (exit 143 rather than Ctrl-C's 130)

    def recovery_lines(self) -> list[str]:
        return [f"trial {r.trial_id}: {r.what}" for r in self.recoveries]

    def failure_lines(self) -> list[str]:
        lines = [f"{len(self.failures)} of {self.trials} trials ended in error (their points found so far are kept):"]
        lines += [f"  {f.trial_id}: {f.error}  (full error: {f.where})" for f in self.failures]
        return lines


def _failure(result: Any) -> TrialFailure:
    lines = [line.strip() for line in str(result.error).splitlines() if line.strip()]
    trial_id = str((result.metrics or {}).get("trial_id") or Path(result.path).name)
    where = f"{result.path}/error.txt and the trial's MLflow run (tag pareto_search.error)"
    return TrialFailure(trial_id, lines[-1][:300] if lines else type(result.error).__name__, where)


class _Interruption:
    happened = False


@contextlib.contextmanager
def _sigint_watch() -> Iterator[_Interruption]:
    """Whether Ctrl-C ended the Tune run. Tune returns normally after a SIGINT (the experiment saved); its handler
    puts back the handler it found on the first SIGINT and stays installed otherwise — so a marker handler
    installed here and found back in place afterwards means Tune was interrupted. (A second Ctrl-C reaches the
    marker, which interrupts like Python's default.)"""
    seen = _Interruption()
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") not in ("", "0"):
        yield seen  # Tune installs no handler here: it cannot be told apart
        return

    def marker(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, marker)
    try:
        yield seen
    finally:
        seen.happened = signal.getsignal(signal.SIGINT) is marker
        signal.signal(signal.SIGINT, previous)


class _SigtermWatch:
    """SIGTERM handled as Ctrl-C: whatever handles SIGINT now (Tune's graceful stop while it runs, else a
    KeyboardInterrupt) handles it, and `received` says it was a SIGTERM. Installed by run_search for its
    duration (main thread only) and again after ray.init, which installs its own."""

    def __init__(self) -> None:
        self.active = False
        self.received = False

    def handle(self, signum: int, frame: Any) -> None:
        self.received = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored (a background job) or not set from Python: stop the way Python's default would
            raise KeyboardInterrupt

    def reinstall(self) -> None:
        if self.active and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle)


_SIGTERM = _SigtermWatch()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = signal.getsignal(signal.SIGTERM)
    _SIGTERM.active, _SIGTERM.received = True, False
    signal.signal(signal.SIGTERM, _SIGTERM.handle)
    try:
        yield
    finally:
        _SIGTERM.active = False
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def sigterm_received() -> bool:
    """Whether the last search of this process was stopped by SIGTERM (the CLI's exit code)."""
    return _SIGTERM.received


class StorageFull(OSError):
    """A trial could not write to the search's storage because it is full: every trial would fail the same way."""


class StorageWatch(tune.Callback):
    """Stops the search at the first trial that failed because the storage is full: Tune would retry it and start
    the others, each ending in the same traceback while its syncer retried the experiment state every 10 s.
    Raising here ends `tuner.fit` (Tune cleans up and re-raises); run_search says it in one line."""

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._check(trial)

    @staticmethod
    def _check(trial: Any) -> None:
        path = getattr(trial, "error_file", None)  # written by Tune (driver side) before the callbacks run
        if not path:
            return
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()[-ERROR_TAIL_CHARS:]
        except OSError:
            return
        if _is_storage_full_text(text):
            raise StorageFull(errno.ENOSPC, f"trial {trial.trial_id}: {os.strerror(errno.ENOSPC)}")


ERROR_TAIL_CHARS = 4000  # the end of a trial's error file: its last error's own line


class _StorageFullRecord(logging.Filter):
    """Drops Tune's log of a trial that failed on a full storage (its whole traceback): StorageWatch stops the
    search at that trial and run_search says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not _is_storage_full_text(str(error))


@contextlib.contextmanager
def _quiet_storage_full() -> Iterator[None]:
    log = logging.getLogger("ray.tune.execution.tune_controller")  # "Trial task failed for trial …"
    quiet = _StorageFullRecord()
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


# Errors of the storage itself, not of one file: the search cannot go on writing there.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
_STORAGE_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


def _is_storage_full_text(text: str) -> bool:
    return any(t in text for t in _STORAGE_FULL_TEXTS)


def _storage_failure(exc: BaseException) -> OSError | None:
    """The storage error (full, read-only, I/O error, then any error of a file) in `exc`'s chain, or None; a
    network error is not one (the tracking queue handles those). Tune wraps a callback's error, and Ray a
    trial's (as text): both are looked for."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    found = next((e for e in chain if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS), None)
    if found is None:  # any other error of a file the driver wrote or read (a checkpoint gone, a permission)
        found = next((e for e in chain if isinstance(e, OSError) and e.errno and not is_network_error(e)), None)
    if found is None and any(_is_storage_full_text(str(e)) for e in chain):  # a trial's error, as Ray's text
        found = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return found


def _storage_stop_message(plan: SearchPlan, error: OSError) -> str:
    """One line: what the storage said, where, what is kept, how to go on."""
    what = os.strerror(error.errno) if error.errno else "storage error"
    if error.filename:  # a file of the driver's own names it; a trial's names its trial
        what += f" ({error.filename})"
    elif isinstance(error, StorageFull):
        what += f" ({(error.strerror or '').split(':', 1)[0]})"
    kept = 0
    with contextlib.suppress(Exception):  # the front as it was last written whole (writes are atomic)
        kept = len(GlobalFront.load(plan.front_path).points) if plan.front_path.is_file() else 0
    mend = "free space there" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "once the storage works again"
    return (
        f"storage {plan.storage_dir}: {what}; search '{plan.name}' stopped: its {kept} evaluated "
        f"points are kept in {plan.front_path}; {mend}, `pareto-search resume {plan.name}` continues it"
    )


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """`exc` or the first exception of type `kind` in its chain (Tune wraps a callback's error)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def ray_of_this_call() -> Iterator[None]:
    """For a search run from Python (the API): a Ray the caller started or connected to stays theirs; the embedded
    one the search starts is stopped when it ends, as with the command."""
    owned = not ray.is_initialized()
    try:
        yield
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()


def release_ray() -> None:
    """For the process that owns Ray (the CLI), about to exit: stop the embedded one, or disconnect from a
    cluster. Flushes the trials' buffered log lines first.

    Then every object alive now is left out of the garbage collector's passes: the interpreter's exit ran full
    collections over the heap of torch, Ray, MLflow and pandas while it tore the modules down (2-5 s after the
    front was printed, on 2 cores; benchmarks/search_overhead.py --fixed). Nothing is lost: the process ends."""
    ray.shutdown()
    gc.freeze()
