"""Driver-side bookkeeping of a search, as a Ray Tune callback.

On every trial result: update the global front (persisted), compute the trial's exclusive HV
contribution, log per-epoch metrics to the trial's nested MLflow run and the global HV to the
search's parent run, and print one progress line. On every checkpoint: copy the weights of the
trial's members that are on the front next to the front file, so an epoch that later epochs do
worse than keeps its weights (fronts.py). When a trial ends (finished, stopped early or failed)
its members' weights go to its MLflow run as a cheap artifact (state dicts, not MLflow models)
and the members' latest points get their model URI. At the end the front files and plots
go to the parent run and the child runs are tagged with their members on the front.

The callback is pickled into Tune's experiment state; it keeps only plain data and reopens
the front file and the MLflow client lazily, so ``Tuner.restore`` brings it back intact.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pyarrow.fs import FileType
from ray import tune

from pareto_search.console import progress, say
from pareto_search.front.global_front import GlobalFront, kept_epoch
from pareto_search.front.groups import affinity_path, record_affinity
from pareto_search.front.pareto import Objective
from pareto_search.plan import SearchPlan
from pareto_search.search.checkpoints import newest_present
from pareto_search.search.trainable import CONDITIONED_FILE, weights_file_of
from pareto_search.storage import Location
from pareto_search.tracking.client import SearchTracker
from pareto_search.tracking.outage import BackgroundWrites, TrackingQueue

ERROR_CHARS = 2000  # enough of a traceback's end to see the cause in the MLflow UI
# The front's math after a result (global HV, the trial's exclusive contribution, the front's size) runs on the loop
# every trial waits on. Cheap math (under MATH_ALWAYS_S) runs after every result. Slower math — many points and 5
# objectives: ~2 s at 10^4 points (benchmarks/front_scaling.py) — then waits MATH_PAUSE_FACTOR times its own
# duration before it runs again: at most 1/20 = 5 % of the driver's time, whatever the front's size. Results in
# the pause log no global_hv / front_contribution; the front file always has every point.
MATH_ALWAYS_S = 0.05
MATH_PAUSE_FACTOR = 19.0


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def trial_params(trial_config: dict[str, Any]) -> dict[str, Any]:
    """The sampled hyperparameters of a trial, flat (``optimizer.lr``), without the search plumbing.
    A config of another shape (a trial Tune made up after failing to restore its state) is logged as it
    is, flattened: the callback never fails on it."""
    try:
        repeat: dict[str, Any] = {}  # grid/random: which of its entry's trials this is (optuna has no repeats)
        if "entry" in trial_config:
            values, variant = trial_config["entry"]["values"], trial_config["entry"]["variant"]
            repeat = {"repeat": trial_config["entry"].get("repeat", 0)}
        else:
            variant = trial_config["variant"]
            values = trial_config[f"v{variant}"]
    except (KeyError, TypeError, AttributeError):
        return _flatten(trial_config) if isinstance(trial_config, dict) else {"config": str(trial_config)}
    return {"variant": variant, **repeat, "seed": trial_config.get("seed"), **_flatten(values)}


# Search name -> its plan file folder and tracking store, in the driver process that runs it. A restored
# callback (unpickled from Tune's experiment state) takes its locations from here: a search resumed from a
# moved or copied folder, or from shared storage, writes there (and to the store the resuming command resolved)
# and never into the folder or the store it was started with.
_LOCATIONS: dict[str, tuple[Location, str | None]] = {}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def bind_location(search: str, files: Location, tracking_uri: str | None = None) -> None:
    """Where the callbacks of `search` keep its files and track it in this process (run_search calls it first)."""
    _LOCATIONS[search] = (files, tracking_uri)


def bound_files(search: str) -> Location | None:
    """Where `search` keeps its files in this process (bind_location), if bound."""
    bound = _LOCATIONS.get(search)
    return bound[0] if bound is not None else None


class SearchCallback(tune.Callback):
    def __init__(self, plan: SearchPlan, parent_run_id: str, tracking_uri: str) -> None:
        self.search = plan.name
        self.front_path = plan.front_path
        self.objectives = [(o.name, o.direction) for o in plan.objectives]
        self.reference_point = list(plan.reference_point)
        self.parent_run_id = parent_run_id
        self.tracking_uri = tracking_uri
        self.experiment = plan.config.tracking.experiment
        self.outage_timeout_s = plan.config.tracking.outage_timeout_s
        self.results_seen = 0
        self.epochs = plan.config.epochs  # per trial: what the progress line's estimate of the time left counts
        self.budget = plan.config.search.budget_model_epochs
        self.probe_spent = plan.probe_model_epochs
        self._progress: dict[str, tuple[int, int]] = {}  # trial -> (its epoch, its model-epochs) at its last result
        self._started = time.monotonic()
        self._front: GlobalFront | None = None
        self._tracker: SearchTracker | None = None
        self._queue: BackgroundWrites | None = None
        self._child_runs: dict[str, str] = {}
        # The MLflow writes run on their own thread (BackgroundWrites) and touch the front (model URIs, the
        # published files) and the trial runs: this lock keeps them and the Tune loop's updates apart.
        self._lock = threading.RLock()
        self._math_due = 0.0  # time.monotonic() before which slow front math is not run again

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = dict(self.__dict__)
            state["_child_runs"] = dict(self._child_runs)
        # Reopened lazily after unpickling. Writes still buffered by an outage are not carried over: a driver
        # killed during an outage loses those MLflow records, never the front (it is in storage).
        state.update(_front=None, _tracker=None, _queue=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._math_due = 0.0  # another process's clock
        self._started = time.monotonic()  # elapsed: of this driver (the epochs before a resume count as done)
        self.__dict__.setdefault("_progress", {})  # a callback saved before the progress line had these
        self.__dict__.setdefault("epochs", 0)
        bound = _LOCATIONS.get(self.search)
        if bound is not None:
            files, tracking_uri = bound
            self.front_path = files / self.front_path.name
            if tracking_uri is not None:
                self.tracking_uri = tracking_uri

    @property
    def front(self) -> GlobalFront:
        with self._lock:
            return self._open_front()

    def _open_front(self) -> GlobalFront:
        if self._front is None:
            if self.front_path.is_file():
                self._front = GlobalFront.load(self.front_path)
            else:
                objectives = [Objective(n, d) for n, d in self.objectives]
                self._front = GlobalFront(self.search, objectives, self.reference_point, self.front_path)
        return self._front

    @property
    def tracker(self) -> SearchTracker:
        if self._tracker is None:
            self._tracker = SearchTracker(self.tracking_uri, self.experiment)
        return self._tracker

    @property
    def queue(self) -> BackgroundWrites:
        if self._queue is None:
            self._queue = BackgroundWrites(TrackingQueue(self.tracking_uri, self.outage_timeout_s))
        return self._queue

    def _child(self, trial_id: str, params: dict[str, Any]) -> str:
        """The trial's MLflow run, created on first use (inside a queued write)."""
        run_id = self._child_runs.get(trial_id)
        if run_id is None:
            run_id = self.tracker.start_trial(self.parent_run_id, trial_id, params)
            with self._lock:
                self._child_runs[trial_id] = run_id
        return run_id

    # -- Tune hooks ------------------------------------------------------------------------------

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        trial_id, params = trial.trial_id, trial_params(trial.config)
        self.queue.submit(f"start run of {trial_id}", lambda: self._child(trial_id, params))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        epoch = int(result.get("epoch", result["training_iteration"]))  # the trainer's count (see trainable.py)
        label = result.get("label", "")
        tests = result.get("test_values") or [None] * len(result["values"])  # a result of an older trainable: none
        members = [
            {"member": k, "values": row, "solver": label, "preference": pref, "epoch": epoch, "test_values": test}
            for k, (row, pref, test) in enumerate(zip(result["values"], result["preferences"], tests, strict=True))
        ]
        if "model_epochs" in result:  # the trial's spending so far: what a resumed budget counts (search/budget.py)
            for member in members:
                member["model_epochs"] = int(result["model_epochs"])
        with self._lock:
            self.front.update(trial.trial_id, members)  # storage first: the point is kept whatever MLflow does
            math = self._front_math(trial.trial_id)
        self.results_seen += 1
        if "affinity_total" in result:  # what `pareto-search groups` reads, kept next to the front
            record_affinity(
                affinity_path(self.front_path),
                trial.trial_id,
                tasks=result["affinity_tasks"],
                total=result["affinity_total"],
                epoch=epoch,
                label=label,
            )
        metrics = {
            key: value for key, value in result.items() if key.startswith(("m", "best/", "affinity/")) and "/" in key
        }
        metrics["trial_hv"] = result["trial_hv"]
        if math is not None:
            metrics["front_contribution"] = math[1]
        for k, losses in enumerate(result["train_losses"]):
            metrics.update({f"m{k}/train_loss_t{t}": v for t, v in enumerate(losses)})
        trial_id, params, measured_ms = trial.trial_id, trial_params(trial.config), int(time.time() * 1000)
        step = self.results_seen
        self.queue.submit(
            f"metrics of {trial_id} epoch {epoch}",
            lambda: self.tracker.log_metrics(self._child(trial_id, params), metrics, epoch, timestamp_ms=measured_ms),
        )
        if math is not None:
            search_metrics = {"global_hv": math[0], "front_points": math[2]}
            self.queue.submit(
                f"search metrics at result {step}",
                lambda: self.tracker.log_metrics(self.parent_run_id, search_metrics, step, timestamp_ms=measured_ms),
            )
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        front_text = (
            f"front contribution {math[1]:.4f} | global HV {math[0]:.4f} ({math[2]} points)"
            if math is not None
            else "front math paused (it is slow at this front's size; see MATH_PAUSE_FACTOR)"
        )
        self._progress[trial.trial_id] = (epoch, int(result.get("model_epochs", 0)))
        progress(
            f"[{self.search}] trials {done}/{len(trials)} done | {trial.trial_id} ({label}) epoch {epoch}: "
            f"trial HV {result['trial_hv']:.4f}, {front_text} | {self._spent_and_time(len(trials))}"
        )

    def _spent_and_time(self, trials: int) -> str:
        """Model-epochs spent so far, time elapsed, and the time left if the remaining epochs go at this pace."""
        spent = sum(model_epochs for _, model_epochs in self._progress.values())
        elapsed = time.monotonic() - self._started
        budget = getattr(self, "budget", None)  # a callback pickled before budgets: none
        if budget is not None:  # how many trials is open: the budget is what the search plans (its probe included)
            return f"{spent + self.probe_spent}/{budget} model-epochs, {_clock(elapsed)} elapsed"
        text = f"{spent} model-epochs, {_clock(elapsed)} elapsed"
        planned = trials * self.epochs  # at most: a scheduler may stop trials early
        done = sum(epoch for epoch, _ in self._progress.values())
        if 0 < done < planned:
            text += f", ≤{_clock(elapsed * (planned - done) / done)} left"
        return text

    def _front_math(self, trial_id: str) -> tuple[float, float, int] | None:
        """(global HV, the trial's exclusive contribution, points on the front), or None while slow math pauses."""
        start = time.monotonic()
        if start < self._math_due:
            return None
        cpu = time.thread_time()  # the math's own cost: a busy machine's descheduling does not pause it
        global_hv = self.front.hypervolume().value
        contribution = self.front.contribution(trial_id, total=global_hv)
        front_points = len(self.front.front())
        spent = time.thread_time() - cpu
        self._math_due = start + spent * (1.0 + MATH_PAUSE_FACTOR) if spent >= MATH_ALWAYS_S else 0.0
        return global_hv, contribution, front_points

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        """The checkpoint of the epoch a trial just reported (Tune saves it right after the result): its members
        whose point is on the front get their weights copied next to the front file, so that this epoch keeps
        them when later epochs are worse (fronts.py). Never raises: Tune would not record the checkpoint."""
        epoch = (getattr(trial, "last_result", None) or {}).get("epoch")
        if epoch is None:
            return
        filesystem, folder = checkpoint.filesystem, str(checkpoint.path).rstrip("/")

        def source(member: int) -> str:  # a PSL trial's points share its one conditioned model's file
            return weights_file_of(member, conditioned)

        def read(member: int) -> bytes:
            with filesystem.open_input_stream(f"{folder}/{source(member)}") as stream:
                return bytes(stream.read())

        try:
            conditioned = filesystem.get_file_info(f"{folder}/{CONDITIONED_FILE}").type != FileType.NotFound
            with self._lock:
                self.front.keep_weights(trial.trial_id, int(epoch), read, source)
        except Exception as exc:  # storage or a checkpoint file that cannot be read: this epoch has no weights
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            say(f"[{self.search}] {trial.trial_id} epoch {epoch}: weights not kept ({first})")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._finish(trial, "FINISHED", None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error = None
        if trial.error_file and Path(trial.error_file).is_file():
            error = Path(trial.error_file).read_text()[-ERROR_CHARS:]
        self._finish(trial, "FAILED", error or "trial failed (no error file)")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.queue.submit("the front's artifacts", self.publish_front)
        self.queue.flush()  # bounded by the outage bound: raises TrackingUnavailable past it

    # -- helpers ---------------------------------------------------------------------------------

    def _finish(self, trial: Any, status: str, error: str | None) -> None:
        trial_id, params = trial.trial_id, trial_params(trial.config)
        checkpoint, last_result = trial.checkpoint, dict(getattr(trial, "last_result", None) or {})

        def write() -> None:
            run_id = self._child(trial_id, params)
            # Tune's record of a restored trial can name a checkpoint rotated away since (checkpoints.py): the
            # trial's newest one present holds its final weights then.
            present = newest_present(checkpoint) if checkpoint is not None else None
            if checkpoint is not None and present is None:
                say(f"[{self.search}] {trial_id}: no checkpoint left, its final weights are not stored")
            if present is not None:
                # Points found before a failure are kept, so their weights are stored too.
                with present.as_directory() as folder:
                    # A PSL trial's checkpoint holds one file for all of its points
                    conditioned = (Path(folder) / CONDITIONED_FILE).is_file()
                    for path in sorted([*Path(folder).glob("member_*.pt"), *Path(folder).glob(CONDITIONED_FILE)]):
                        self.tracker.log_artifact_file(run_id, path, "weights")
                with self._lock:  # the final weights are a member's latest point's; a kept epoch has its own
                    self.front.set_data(
                        trial_id,
                        model_uri=lambda p: (
                            self.tracker.artifact_uri(
                                run_id, f"weights/{weights_file_of(int(p.data['member']), conditioned)}"
                            )
                            if kept_epoch(p.id) is None
                            else p.data.get("model_uri", "")
                        ),
                        status="failed" if status == "FAILED" else "finished",
                        run_id=run_id,
                    )
            self._log_affinity(run_id, last_result)
            self.tracker.end_run(run_id, status, error)  # type: ignore[arg-type]

        self.queue.submit(f"weights and end of {trial_id}", write)

    def _log_affinity(self, run_id: str, result: dict[str, Any]) -> None:
        """The trial's affinity summed over training, as a heatmap and JSON artifact of its run."""
        if "affinity_total" not in result:
            return
        from pareto_search.front import plots

        tasks, total = result["affinity_tasks"], result["affinity_total"]
        self.tracker.log_json(run_id, {"tasks": tasks, "affinity_total": total}, "affinity.json")
        with tempfile.TemporaryDirectory() as folder:
            png = plots.heatmap_png(
                total,
                [f"{t} →" for t in tasks],
                [f"→ {t}" for t in tasks],
                Path(folder) / "affinity.png",
                title="inter-task affinity Z(row → column), summed over epochs",
            )
            self.tracker.log_artifact_file(run_id, png)

    def publish_front(self) -> None:
        """Front artifacts and plots on the parent run, front tags on the children."""
        from pareto_search.front import plots

        with self._lock:  # at the end of the search; the lock only keeps a late trial's model URIs apart
            front = self.front
            data = front.to_json()
            hv = data["hypervolume"]
            self.tracker.log_json(self.parent_run_id, data, "front.json")
            self.tracker.log_text(self.parent_run_id, front.to_csv(), "front.csv")
            final_hv = {"final_hv": hv if math.isfinite(hv) else 0.0}
            if data["test_hypervolume"] is not None:  # the same front measured on test: reported, never selected on
                final_hv["final_test_hv"] = data["test_hypervolume"]
            self.tracker.log_metrics(self.parent_run_id, final_hv, self.results_seen)
            with tempfile.TemporaryDirectory() as folder:
                for path in plots.global_front_files(front, folder):
                    self.tracker.log_artifact_file(self.parent_run_id, path)
            members = front.on_front_members()
        for trial_id, run_id in self.tracker.list_trials(self.parent_run_id).items():
            self.tracker.set_front_members(run_id, members.get(trial_id, []))
