"""MLflow adapter of the control plane: the one module that imports mlflow.

Everything else in the service (the Ray Tune callback, the CLI, selection) talks to `SearchTracker`, so a
test can check the import boundary and an MLflow upgrade touches one file.

Layout in MLflow (one experiment holds many searches):

- one **parent run per search**: run name = search name, tags `pareto_search.search=<name>` and
  `pareto_search.kind=search`, the config flattened as params and verbatim as the artifact `config.yaml`;
- one **child run per trial**: tag `mlflow.parentRunId` (what the UI nests by), run name = trial id,
  tags `pareto_search.trial_id` and `pareto_search.kind=trial`, the trial's hyperparameters as params.

Why the *client* API (`MlflowClient`) and never the fluent one (`mlflow.start_run`, `mlflow.log_metric`):
the fluent API keeps a process-global stack of active runs and a global tracking URI. The tracker is used
from a Ray Tune callback in the driver, possibly while another search tracks in the same process, so every
call here names its run id explicitly and each tracker owns its client: no global state is read or set.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.lifecycle_stage import LifecycleStage
from mlflow.exceptions import MlflowException
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_USER
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from pareto_search.tracking.params import (
    chunks,
    flatten_params,
    json_default,
    quote_filter_value,
    sanitize_key,
    to_plain,
    truncate_value,
)
from pareto_search.tracking.store import (
    STORE_INIT_ATTEMPTS,
    rebase_moved_artifacts,
    resolve_tracking_uri,
    sqlite_init_lock,
)

_logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------
# Tags and limits
# --------------------------------------------------------------------------------------------------------

TAG_SEARCH = "pareto_search.search"
TAG_KIND = "pareto_search.kind"  # "search" (parent run) or "trial" (child run)
TAG_TRIAL_ID = "pareto_search.trial_id"
TAG_ERROR = "pareto_search.error"
TAG_ON_FRONT = "pareto_search.on_front"  # "true" / "false": does this trial have a member on the global front
TAG_ON_FRONT_MEMBERS = "pareto_search.on_front_members"  # "0,2,3": which members are on the global front
TAG_RESUME_COUNT = "pareto_search.resume_count"
# MLflow 3's UI shows an experiment without this tag as a GenAI experiment (traces first, runs hidden
# behind a tab); "custom_model_development" opens it in the model-training view: runs, metrics, models.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
KIND_SEARCH = "search"
KIND_TRIAL = "trial"
KIND_COMPARISON = "comparison"
TAG_COMPARED = "pareto_search.compared"  # "a,b": the searches a comparison run compares

EndStatus = Literal["FINISHED", "FAILED", "KILLED"]
_END_STATUSES: tuple[str, ...] = get_args(EndStatus)

# The embedded store when neither the caller nor MLFLOW_TRACKING_URI names one: a sqlite file in the working
# directory (MLflow 3 deprecates the plain-file store; sqlite also gives the model registry and aliases).
# DEFAULT_DB_FILENAME ("mlflow.db") is defined with the other locations (locations.py).
CONFIG_ARTIFACT = "config.yaml"
# The error tag keeps the *end* of a traceback (the exception message is its last line) and stays well below
# MLflow's 8000-char tag limit so that the prefix saying how much was cut always fits.
MAX_ERROR_TAG_LENGTH = 5000


# --------------------------------------------------------------------------------------------------------
# The tracker
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """What the service reads back about a run, as plain types (callers never see MLflow entities)."""

    run_id: str
    name: str
    status: str  # RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    parent_run_id: str | None
    artifact_uri: str  # the concrete storage location (file path, s3://...), not a runs:/ URI
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value of each metric


class SearchTracker:
    """One search's (or several searches') view of one MLflow experiment, through its own `MlflowClient`.

    `tracking_uri=None` resolves with `resolve_tracking_uri` (env var, else the embedded sqlite store).
    The experiment is created if missing; `artifact_location` is used only then (MLflow cannot move an
    existing experiment's artifacts) and defaults to MLflow's own rule (`./mlruns/<id>` next to the working
    directory for a sqlite store, the server's artifact root for a tracking server).
    """

    def __init__(self, tracking_uri: str | None, experiment: str, *, artifact_location: str | None = None) -> None:
        if not experiment or not experiment.strip():
            raise ValueError(f"Parameter `experiment` should be a non-empty name. Found {experiment!r}.")
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment_name = experiment
        with sqlite_init_lock(self.tracking_uri):
            # A working folder moved or copied with its mlflow.db and mlruns/: its artifacts are written and read
            # where the store now is, never in the folder it was moved from (one line for the driver to say).
            self.moved_note = rebase_moved_artifacts(self.tracking_uri)
            self._open(experiment, artifact_location)

    def _open(self, experiment: str, artifact_location: str | None) -> None:
        for attempt in range(STORE_INIT_ATTEMPTS):
            try:
                # The client opens (and on a fresh sqlite file creates and migrates) the store as it is built.
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
                self.experiment_id = self._get_or_create_experiment(experiment, artifact_location)
                break
            except Exception as exc:
                # Two processes opening a fresh sqlite store at once both create its tables; the slower one fails
                # with "table ... already exists" while the other finishes. Its next try finds the tables.
                if "already exists" not in str(exc) or attempt == STORE_INIT_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))

    def __repr__(self) -> str:
        return (
            f"SearchTracker(tracking_uri={self.tracking_uri!r}, experiment={self.experiment_name!r}, "
            f"experiment_id={self.experiment_id!r})"
        )

    def _get_or_create_experiment(self, name: str, artifact_location: str | None) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self._client.create_experiment(
                    name, artifact_location=artifact_location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING}
                )
            except MlflowException as e:
                # Another process (a second search started at the same moment) created it first.
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self._client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == LifecycleStage.DELETED:
            raise ValueError(
                f"MLflow experiment {name!r} (id {exp.experiment_id}) exists but is deleted. Restore it "
                f"(`mlflow experiments restore --experiment-id {exp.experiment_id}`), purge it (`mlflow gc`), "
                "or use another experiment name."
            )
        if TAG_EXPERIMENT_KIND not in exp.tags:  # made before the tag existed, or by another tool
            self._client.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)
        return exp.experiment_id

    # ---- searches --------------------------------------------------------------------------------------

    def start_search(self, name: str, config: Mapping[str, Any], *, run_id: str | None = None) -> str:
        """Create the parent run of a search, or reopen it (`run_id`) when the search is resumed.

        A new run gets the config twice: flattened as params (for comparing and filtering searches in the UI)
        and verbatim as `config.yaml` (the source of truth: params are strings and long ones are cut). A
        resumed run keeps the params and `config.yaml` it started with (MLflow params cannot change, and the
        record should say what the search was started with); it is set back to RUNNING and its
        `pareto_search.resume_count` tag is incremented.
        """
        if not name or not name.strip():
            raise ValueError(f"Parameter `name` should be a non-empty search name. Found {name!r}.")
        if run_id is not None:
            return self._reopen_search(name, run_id)
        tags = self._context_tags()
        tags.update({TAG_SEARCH: name, TAG_KIND: KIND_SEARCH})
        run = self._client.create_run(self.experiment_id, run_name=name, tags=tags)
        new_id = run.info.run_id
        self._log_params(new_id, flatten_params(config, full_value_in=f"full value in {CONFIG_ARTIFACT}"))
        self.log_text(new_id, yaml.safe_dump(to_plain(dict(config)), sort_keys=False), CONFIG_ARTIFACT)
        return str(new_id)

    def _reopen_search(self, name: str, run_id: str) -> str:
        run = self._client.get_run(run_id)
        if run.info.experiment_id != self.experiment_id:
            raise ValueError(
                f"Run {run_id} belongs to MLflow experiment id {run.info.experiment_id}, not to "
                f"{self.experiment_name!r} (id {self.experiment_id}): cannot resume search {name!r} there."
            )
        found = run.data.tags.get(TAG_SEARCH)
        if run.data.tags.get(TAG_KIND) != KIND_SEARCH or found != name:
            raise ValueError(
                f"Run {run_id} is not the parent run of search {name!r} "
                f"(tag {TAG_SEARCH}={found!r}, {TAG_KIND}={run.data.tags.get(TAG_KIND)!r})."
            )
        if run.info.lifecycle_stage == LifecycleStage.DELETED:
            raise ValueError(f"Run {run_id} of search {name!r} is deleted in MLflow; restore it to resume.")
        count = int(run.data.tags.get(TAG_RESUME_COUNT, "0")) + 1
        self.set_tags(run_id, {TAG_RESUME_COUNT: str(count)})
        self._client.update_run(run_id, status="RUNNING")
        return run_id

    def find_search(self, name: str) -> str | None:
        """Parent run id of the latest (by start time) search called `name` in this experiment, or None.

        Found by tag rather than run name: run names are not unique and users may rename runs in the UI.
        Finished, failed and killed searches are found too (that is what `resume` looks for).
        """
        runs = self._client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_SEARCH}` = {quote_filter_value(name)} AND tags.`{TAG_KIND}` = '{KIND_SEARCH}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def start_comparison(self, searches: Sequence[str]) -> str:
        """Create a top-level run recording a comparison of searches (`pareto-search compare`).

        A run of its own rather than an artifact on one of the searches: a comparison belongs to no single
        search, and it can then be found with `tags.pareto_search.kind = 'comparison'`. The caller logs the
        overlay plot and numbers into it and ends it.
        """
        names = [str(n) for n in searches]
        if not names:
            raise ValueError("Parameter `searches` should name at least one search. Found none.")
        tags = self._context_tags()
        tags.update({TAG_KIND: KIND_COMPARISON, TAG_COMPARED: ",".join(names)})
        run = self._client.create_run(self.experiment_id, run_name="compare " + " vs ".join(names), tags=tags)
        return str(run.info.run_id)

    # ---- trials ----------------------------------------------------------------------------------------

    def start_trial(self, parent_run_id: str, trial_id: str, params: Mapping[str, Any]) -> str:
        """Create the child run of a trial under its search's run, or reuse it if it exists (resume).

        Idempotent so that a resumed search (Ray Tune restores trials with their ids) keeps one run per
        trial and its metric history continues in place. On reuse the run is set back to RUNNING and only
        params not logged yet are added: MLflow refuses to change a logged param, so a changed value is kept
        as first logged, with a warning in the log.
        """
        existing = self.find_trial(parent_run_id, trial_id)
        flat = flatten_params(params)
        if existing is not None:
            self._client.update_run(existing, status="RUNNING")
            self._log_params(existing, flat)
            return existing
        parent = self._client.get_run(parent_run_id)
        tags = {
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            TAG_TRIAL_ID: trial_id,
            TAG_KIND: KIND_TRIAL,
        }
        for inherited in (TAG_SEARCH, MLFLOW_USER):  # so trials can be filtered by search in the UI
            if inherited in parent.data.tags:
                tags[inherited] = parent.data.tags[inherited]
        run = self._client.create_run(parent.info.experiment_id, run_name=trial_id, tags=tags)
        self._log_params(run.info.run_id, flat)
        return str(run.info.run_id)

    def find_trial(self, parent_run_id: str, trial_id: str) -> str | None:
        """Child run id of trial `trial_id` under `parent_run_id`, or None (the latest one if duplicated)."""
        runs = self._client.search_runs(
            [self._client.get_run(parent_run_id).info.experiment_id],
            filter_string=(
                f"tags.`{MLFLOW_PARENT_RUN_ID}` = {quote_filter_value(parent_run_id)} "
                f"AND tags.`{TAG_TRIAL_ID}` = {quote_filter_value(trial_id)}"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def list_trials(self, parent_run_id: str) -> dict[str, str]:
        """All trial child runs of a search: trial id -> run id (all pages of the MLflow search)."""
        experiment_id = self._client.get_run(parent_run_id).info.experiment_id
        out: dict[str, str] = {}
        page_token: str | None = None
        while True:
            page = self._client.search_runs(
                [experiment_id],
                filter_string=(
                    f"tags.`{MLFLOW_PARENT_RUN_ID}` = {quote_filter_value(parent_run_id)} "
                    f"AND tags.`{TAG_KIND}` = '{KIND_TRIAL}'"
                ),
                order_by=["attributes.start_time ASC"],
                page_token=page_token,
            )
            for run in page:
                out[run.data.tags.get(TAG_TRIAL_ID, run.info.run_id)] = run.info.run_id
            page_token = page.token
            if not page_token:
                return out

    # ---- metrics, tags, status -------------------------------------------------------------------------

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, Any], step: int, *, timestamp_ms: int | None = None
    ) -> None:
        """Log several metrics at one step in one batch call (one round trip per report, not per metric).

        `timestamp_ms`: when they were measured (default now); a write replayed after an outage keeps its time.
        Never raises on a bad value: a diverged trial's NaN is kept (MLflow stores it; the sqlite store keeps
        +-inf as +-1.797e308), and a value that is not a number at all is skipped with a warning in the log.
        """
        timestamp = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        batch: list[Metric] = []
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                _logger.warning("Metric %r of run %s is not a number (%r): not logged.", key, run_id, value)
                continue
            if not math.isfinite(number):
                _logger.debug("Metric %r of run %s is %s at step %d.", key, run_id, number, step)
            batch.append(Metric(sanitize_key(str(key)), number, timestamp, int(step)))
        for chunk in chunks(batch, MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=chunk, synchronous=True)

    def get_metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric, ordered by step."""
        history = self._client.get_metric_history(run_id, key)
        return sorted((m.step, m.value) for m in history)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set (overwrite) tags, e.g. the global-front membership of a trial's members (`set_front_members`).

        Tags, unlike params, can change: they carry state that evolves during a search.
        """
        run_tags = [
            RunTag(sanitize_key(str(k)), truncate_value(str(v), MAX_TAG_VAL_LENGTH, "tag value cut to MLflow's limit"))
            for k, v in tags.items()
        ]
        for chunk in chunks(run_tags, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(run_id, tags=chunk, synchronous=True)

    def set_front_members(self, run_id: str, members: Iterable[int]) -> None:
        """Mark which members of a trial are on the global front (tags `on_front_members` and `on_front`).

        Lets the UI filter trials with `tags.pareto_search.on_front = 'true'`.
        """
        on_front = sorted({int(m) for m in members})
        self.set_tags(
            run_id,
            {
                TAG_ON_FRONT_MEMBERS: ",".join(str(m) for m in on_front),
                TAG_ON_FRONT: "true" if on_front else "false",
            },
        )

    def end_run(self, run_id: str, status: EndStatus, error: str | None = None) -> None:
        """Terminate a run. `error` (a message or traceback) becomes the tag `pareto_search.error`.

        The tag makes a failure visible in the MLflow UI's run list without opening logs; it keeps the last
        5000 characters (the exception message ends a traceback).
        """
        if status not in _END_STATUSES:
            raise ValueError(f"Parameter `status` should be one of {list(_END_STATUSES)}. Found {status!r}.")
        if error is not None:
            if len(error) > MAX_ERROR_TAG_LENGTH:
                prefix = f"[... first {len(error) - MAX_ERROR_TAG_LENGTH} chars cut ...]\n"
                error = prefix + error[-(MAX_ERROR_TAG_LENGTH - len(prefix)) :]
            self.set_tags(run_id, {TAG_ERROR: error})
        self._client.set_terminated(run_id, status=status)

    def get_run(self, run_id: str) -> RunRecord:
        """A run's name, status, tags, params and latest metrics as plain types."""
        run = self._client.get_run(run_id)
        return RunRecord(
            run_id=run.info.run_id,
            name=run.info.run_name or "",
            status=str(run.info.status),
            parent_run_id=run.data.tags.get(MLFLOW_PARENT_RUN_ID),
            artifact_uri=run.info.artifact_uri,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
        )

    # ---- artifacts -------------------------------------------------------------------------------------

    def log_artifact_file(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Copy one local file into the run's artifacts (under the folder `artifact_path`, if given)."""
        path = Path(local_path)
        if not path.is_file():
            raise FileNotFoundError(f"Artifact file to log does not exist or is not a file: {path}")
        self._client.log_artifact(run_id, str(path), artifact_path)

    def log_artifact_dir(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Copy a local directory's contents into the run's artifacts (under `artifact_path`, if given)."""
        path = Path(local_dir)
        if not path.is_dir():
            raise NotADirectoryError(f"Artifact directory to log does not exist or is not a directory: {path}")
        self._client.log_artifacts(run_id, str(path), artifact_path)

    def log_json(self, run_id: str, obj: Any, artifact_file: str) -> None:
        """Write `obj` as indented JSON to the artifact `artifact_file` (e.g. `front.json`).

        numpy scalars/arrays, tuples and paths are converted; NaN and infinities are written as Python's json
        does (`NaN`, `Infinity`), which `load_json_artifact` reads back.
        """
        self.log_text(run_id, json.dumps(obj, indent=2, default=json_default), artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Write a string to the artifact `artifact_file` (a path inside the run's artifacts)."""
        self._client.log_text(run_id, text, artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """Artifact paths directly under `path` (the run's artifact root by default)."""
        return [f.path for f in self._client.list_artifacts(run_id, path)]

    def download_artifact(self, run_id: str, artifact_path: str, dst_dir: str | os.PathLike[str]) -> Path:
        """Download an artifact file or folder into `dst_dir` (created if missing); returns its local path."""
        dst = Path(dst_dir)
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self._client.download_artifacts(run_id, artifact_path, dst_path=str(dst)))

    def load_json_artifact(self, run_id: str, artifact_path: str) -> dict[str, Any]:
        """Read a JSON object artifact (e.g. a search's `front.json`) without leaving a local copy."""
        with tempfile.TemporaryDirectory(prefix="pareto_search_") as tmp:
            local = self.download_artifact(run_id, artifact_path, tmp)
            obj = json.loads(local.read_text(encoding="utf-8"))
        if not isinstance(obj, dict):
            raise ValueError(
                f"Artifact {artifact_path!r} of run {run_id} should hold a JSON object. Found {type(obj).__name__}."
            )
        return obj

    @staticmethod
    def artifact_uri(run_id: str, path: str) -> str:
        """`runs:/<run_id>/<path>`: the store-independent URI MLflow resolves (e.g. a model's `model_uri`)."""
        return f"runs:/{run_id}/{path.lstrip('/')}"

    # ---- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _context_tags() -> dict[str, str]:
        """User, source file and git commit of the launching process: what `mlflow.start_run` would add.

        MLflow's context providers read the environment only (no global run state). They must never stop a
        search, hence the broad fallback.
        """
        try:
            return {str(k): str(v) for k, v in resolve_tags().items()}
        except Exception:  # pragma: no cover - defensive: a broken context plug-in must not stop a search
            _logger.warning("Could not resolve MLflow context tags (user, source, git commit).", exc_info=True)
            return {}

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Log params in batches of MLflow's maximum, skipping keys already logged (MLflow forbids changes)."""
        logged = self._client.get_run(run_id).data.params
        new: list[Param] = []
        for key, value in params.items():
            if key not in logged:
                new.append(Param(key, value))
            elif logged[key] != value:
                _logger.warning(
                    "Param %r of run %s was logged as %r; keeping it (MLflow params cannot change), new value %r.",
                    key,
                    run_id,
                    logged[key],
                    value,
                )
        for chunk in chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(run_id, params=chunk, synchronous=True)
