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

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.lifecycle_stage import LifecycleStage
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_USER
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from pareto_search.locations import DEFAULT_DB_FILENAME, tracking_location

__all__ = [
    "DEFAULT_DB_FILENAME",
    "TAG_COMPARED",
    "TAG_ERROR",
    "TAG_KIND",
    "TAG_ON_FRONT",
    "TAG_ON_FRONT_MEMBERS",
    "TAG_RESUME_COUNT",
    "TAG_SEARCH",
    "TAG_TRIAL_ID",
    "EndStatus",
    "RunRecord",
    "SearchTracker",
    "flatten_params",
    "resolve_tracking_uri",
    "ui_link",
]

_logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------
# Tags and limits
# --------------------------------------------------------------------------------------------------------

# Tries at opening a store whose tables another process may be creating this very moment (see SearchTracker).
STORE_INIT_ATTEMPTS = 5
# How long a process waits for another one that is creating the tables of the same sqlite store.
SQLITE_INIT_WAIT_S = 120.0


@contextlib.contextmanager
def _sqlite_init_lock(tracking_uri: str) -> Iterator[None]:
    """Serialize the first open of an sqlite store across processes on this machine: MLflow creates and migrates
    its tables (alembic) on first open, and two searches starting together on a fresh file corrupt each other's
    migration ("table _alembic_tmp_experiments already exists"). The lock file lives in the temp folder, keyed by
    the database path, so nothing is left beside the user's store."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    database = os.path.abspath(tracking_uri[len("sqlite:///") :])
    key = hashlib.sha1(database.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"pareto_search-sqlite-{key}.lock")
    with open(path, "a") as handle:
        deadline = time.monotonic() + SQLITE_INIT_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"waited {SQLITE_INIT_WAIT_S:g} s for another process opening {database}"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
# Keys longer than MLflow's limit are cut and get this many hex chars of the full key's hash, so two long keys
# with the same prefix stay distinct params.
_KEY_HASH_CHARS = 8
# What MLflow accepts in param / metric / tag keys (mlflow.utils.validation, non-Windows rule). Anything else
# (brackets, commas, "=") is replaced by "_" rather than raised: a tracking call must not crash a search.
_INVALID_KEY_CHARS = re.compile(r"[^/\w.\- :]")


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI a tracker uses: `uri` if given, else `MLFLOW_TRACKING_URI`, else the embedded store.

    The embedded default is `sqlite:///<absolute cwd>/mlflow.db`, made absolute here, at resolution. A search's
    own store is resolved from what it recorded (locations.resolve_locations); this is the resolution without
    a search (locations.tracking_location).
    """
    return tracking_location(uri)


# Where a sqlite store keeps artifact paths (plain absolute paths, or file:// URIs): rewritten together when the
# store's working folder moved (rebase_moved_artifacts). A table or column an MLflow version lacks is skipped.
_ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)
ARTIFACTS_FOLDER = "mlruns"  # MLflow's artifact root beside the embedded store (./mlruns of the working folder)


def rebase_moved_artifacts(tracking_uri: str) -> str | None:
    """Make a moved or copied embedded store (``<folder>/mlflow.db`` with its ``<folder>/mlruns``) keep its
    artifacts where it now is; one line saying what changed, or None when nothing did.

    MLflow writes the artifact root of the embedded store (``./mlruns`` of the working folder, made absolute)
    into the database: after the folder moved, every artifact would be read from and written to the old folder.
    An experiment whose location is ``<old>/mlruns/<its id>`` (MLflow's own default, nothing a user set) with
    ``<old>`` another folder is rebased onto ``<folder>/mlruns`` when this folder has its ``mlruns`` or the old
    one is gone; every artifact path under ``<old>/mlruns/`` in the store follows (runs, models, versions)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
    if not database.is_absolute() or database.name != DEFAULT_DB_FILENAME or not database.is_file():
        return None
    import sqlite3

    folder = database.parent
    root = folder / ARTIFACTS_FOLDER
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=60)) as connection:
            olds: set[str] = set()
            for experiment_id, location in connection.execute(
                "SELECT experiment_id, artifact_location FROM experiments"
            ):
                text = str(location or "").removeprefix("file://")
                suffix = f"/{ARTIFACTS_FOLDER}/{experiment_id}"
                if not text.startswith("/") or not text.endswith(suffix):
                    continue
                old = text[: -len(suffix)] or "/"
                if os.path.realpath(old) == os.path.realpath(folder):
                    continue
                # A store opened from its own folder (a working folder moved or copied, resumed there) with its
                # mlruns beside it, or one whose old artifact folder is gone. Never a store named from elsewhere
                # whose artifacts still live where they were written (a shared sqlite file used from several
                # folders): rewriting that one would point its runs at files that are not there.
                here = os.path.realpath(folder) == os.path.realpath(os.getcwd())
                if (root.is_dir() and here) or not Path(old, ARTIFACTS_FOLDER).exists():
                    olds.add(old)
            if not olds:
                return None
            with connection:  # one transaction: every path moves, or none
                for old in sorted(olds):
                    for scheme in ("", "file://"):
                        before, after = f"{scheme}{old}/{ARTIFACTS_FOLDER}/", f"{scheme}{root.as_posix()}/"
                        for table, column in _ARTIFACT_COLUMNS:
                            with contextlib.suppress(sqlite3.OperationalError):  # not in this MLflow's schema
                                connection.execute(
                                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                    f"WHERE substr({column}, 1, ?) = ?",
                                    (after, len(before) + 1, len(before), before),
                                )
    except sqlite3.Error as exc:  # a store MLflow has not created yet, or one it will report itself
        _logger.debug("artifact locations of %s not checked: %s", database, exc)
        return None
    # MLflow keeps each run's artifact repository in a process-wide cache keyed by run id: drop the old paths.
    with contextlib.suppress(Exception):
        from mlflow.tracking._tracking_service import utils as service_utils

        service_utils._artifact_repos_cache.clear()
    moved = ", ".join(f"{old}/{ARTIFACTS_FOLDER}" for old in sorted(olds))
    return f"tracking store {database} was moved: its artifact locations ({moved}) now point to {root}"


# MLflow 3.17's UI picks its GenAI or model-training view from this query parameter (else the browser's last
# choice, else GenAI); it does not read the experiment's kind tag for that (rendered and checked in
# tests/test_mlflow_ui.py), so the links we print carry it.
TRAINING_VIEW_QUERY = "workflowType=machine_learning"
# Where `mlflow ui` / `mlflow server` listen unless told otherwise.
DEFAULT_UI_ADDRESS = "http://127.0.0.1:5000"


def ui_link(tracking_uri: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment in the model-training view (its runs table).

    An http(s) tracking URI is the UI's own address; any other store (sqlite, a folder) is shown by
    `mlflow ui --backend-store-uri URI`, which listens on the default address.
    """
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI_ADDRESS
    return f"{base}/#/experiments/{experiment_id}?{TRAINING_VIEW_QUERY}"


# --------------------------------------------------------------------------------------------------------
# Params: flattening, key sanitizing, length limits
# --------------------------------------------------------------------------------------------------------


def _to_plain(obj: Any) -> Any:
    """A JSON/YAML-safe copy of `obj`: numpy scalars and arrays, tuples, sets and paths become plain types."""
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_to_plain(v) for v in obj), key=repr)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return _to_plain(tolist())
    return str(obj)


def _is_scalar(obj: Any) -> bool:
    return obj is None or isinstance(obj, bool | int | float | str)


def _flatten_into(out: dict[str, Any], prefix: str, obj: Any) -> None:
    if isinstance(obj, Mapping):
        if not obj and prefix:
            out[prefix] = "{}"
        for k, v in obj.items():
            _flatten_into(out, f"{prefix}.{k}" if prefix else str(k), v)
    elif isinstance(obj, list) and not all(_is_scalar(v) for v in obj):
        # Lists of sections (e.g. the solvers to try) get one param per leaf, like nested dicts.
        for i, v in enumerate(obj):
            _flatten_into(out, f"{prefix}.{i}", v)
    else:
        # A list of numbers (a preference vector, a reference point) stays one readable param.
        out[prefix] = json.dumps(obj) if isinstance(obj, list) else obj


def _sanitize_key(key: str) -> str:
    clean = _INVALID_KEY_CHARS.sub("_", key).strip("/") or "_"
    # MLflow also refuses keys that a path normalization would change ("a//b", "a/./b", "..").
    clean = re.sub(r"/+", "/", clean)
    clean = "/".join(part if part not in (".", "..") else part.replace(".", "_") for part in clean.split("/"))
    if len(clean) > MAX_ENTITY_KEY_LENGTH:
        digest = hashlib.sha1(key.encode()).hexdigest()[:_KEY_HASH_CHARS]
        clean = f"{clean[: MAX_ENTITY_KEY_LENGTH - _KEY_HASH_CHARS - 1]}-{digest}"
    return clean


def _truncate(value: str, limit: int, where: str) -> str:
    if len(value) <= limit:
        return value
    note = f"...[truncated from {len(value)} chars; {where}]"
    return value[: limit - len(note)] + note


def flatten_params(config: Mapping[str, Any], *, full_value_in: str = "full value not logged") -> dict[str, str]:
    """Flatten a nested config into MLflow params: `{"solver": {"lr": 0.1}}` -> `{"solver.lr": "0.1"}`.

    Why flatten: the MLflow UI compares and filters runs by params, which are flat strings. Nested dicts and
    lists of dicts become dotted keys (`solvers.0.name`); lists of scalars stay one JSON param. MLflow's limits
    are applied here rather than left to MLflow (which raises on long keys and, depending on an env var,
    raises or silently cuts long values): keys with characters MLflow refuses get "_" instead, keys over
    250 chars are cut and suffixed with a hash, values over 6000 chars are cut with a note naming
    `full_value_in` (where the untruncated value can be found).
    """
    flat: dict[str, Any] = {}
    _flatten_into(flat, "", _to_plain(config))
    out: dict[str, str] = {}
    for key, value in flat.items():
        clean = _sanitize_key(key)
        if clean in out:  # two keys that differ only in refused characters
            clean = _sanitize_key(f"{clean}-{hashlib.sha1(key.encode()).hexdigest()[:_KEY_HASH_CHARS]}")
        out[clean] = _truncate(str(value), MAX_PARAM_VAL_LENGTH, full_value_in)
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _quote(value: str) -> str:
    """Quote a value for an MLflow filter string (which has no escape character: pick the unused quote)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"Cannot search MLflow for a value containing both quote characters. Found {value!r}.")


def _json_default(obj: Any) -> Any:
    """`json.dumps` fallback for what configs and fronts carry besides plain types (numpy, paths, sets)."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


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
        with _sqlite_init_lock(self.tracking_uri):
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
        self.log_text(new_id, yaml.safe_dump(_to_plain(dict(config)), sort_keys=False), CONFIG_ARTIFACT)
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
            filter_string=f"tags.`{TAG_SEARCH}` = {_quote(name)} AND tags.`{TAG_KIND}` = '{KIND_SEARCH}'",
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
                f"tags.`{MLFLOW_PARENT_RUN_ID}` = {_quote(parent_run_id)} "
                f"AND tags.`{TAG_TRIAL_ID}` = {_quote(trial_id)}"
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
                    f"tags.`{MLFLOW_PARENT_RUN_ID}` = {_quote(parent_run_id)} AND tags.`{TAG_KIND}` = '{KIND_TRIAL}'"
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
            batch.append(Metric(_sanitize_key(str(key)), number, timestamp, int(step)))
        for chunk in _chunks(batch, MAX_METRICS_PER_BATCH):
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
            RunTag(_sanitize_key(str(k)), _truncate(str(v), MAX_TAG_VAL_LENGTH, "tag value cut to MLflow's limit"))
            for k, v in tags.items()
        ]
        for chunk in _chunks(run_tags, MAX_PARAMS_TAGS_PER_BATCH):
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
        self.log_text(run_id, json.dumps(obj, indent=2, default=_json_default), artifact_file)

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
        for chunk in _chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(run_id, params=chunk, synchronous=True)


# Inside fail_fast_http: one request's timeout (MLflow's default is 120 s, then 7 retries with back-off).
FAIL_FAST_TIMEOUT_S = 10


@contextlib.contextmanager
def restored_env(*names: str, **values: str) -> Iterator[None]:
    """Set ``values`` in os.environ for the block; afterwards ``names`` and ``values`` are as they were
    (MLflow reads its settings from the environment and some of its setters write there)."""
    saved = {k: os.environ.get(k) for k in (*names, *values)}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fail_fast_http() -> contextlib.AbstractContextManager[None]:
    """One try per MLflow request, with a short timeout (MLflow reads these variables at every request)."""
    return restored_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(FAIL_FAST_TIMEOUT_S))


def is_outage(exc: BaseException) -> bool:
    """The server did not answer (or answered 5xx): worth retrying. Its own 4xx answers, errors of a local
    store, and errors of files (a checkpoint gone, a full disk: storage errors) are not."""
    if isinstance(exc, RestException):
        return bool(exc.get_http_status_code() >= 500)
    if isinstance(exc, MlflowException):  # MLflow's wrapper of a refused, reset or timed-out HTTP request
        return str(exc).startswith("API request to")
    return is_network_error(exc)


def is_network_error(exc: BaseException) -> bool:
    """A request that got no answer: refused, reset, timed out, a name that does not resolve. Every OSError is
    not one: FileNotFoundError or ENOSPC from a write are the storage's, and waiting does not mend them."""
    import requests

    network = (requests.exceptions.RequestException, ConnectionError, TimeoutError, socket.gaierror, socket.herror)
    return isinstance(exc, network)
