"""The tracking store's address: the embedded default, the opening of a fresh sqlite store, a moved store's
artifact paths, and the UI link of an experiment.

A search's own store is resolved from what it recorded (pareto_search/locations.py); what is here is the
resolution without a search, which that builds on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from pareto_search.timeouts import bounded_file_lock

_logger = logging.getLogger(__name__)

TRACKING_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_DB_FILENAME = "mlflow.db"  # the embedded store: a sqlite file in the working folder (tracking.py)


def sqlite_store(folder: str | Path) -> str:
    """The embedded store of a working folder: ``sqlite:///<absolute folder>/mlflow.db``."""
    return f"sqlite:///{(Path(folder).resolve() / DEFAULT_DB_FILENAME).as_posix()}"


def tracking_location(uri: str | None, *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The tracking URI without a search's record: `uri` if given, else ``$MLFLOW_TRACKING_URI``, else the working
    folder's ``mlflow.db`` (made absolute here, at resolution). What a new search uses, `serve`, and a tracker
    opened with no URI (tracking.resolve_tracking_uri)."""
    if uri:
        return uri
    env = os.environ if env is None else env
    from_env = (env.get(TRACKING_ENV) or "").strip()
    if from_env:
        return from_env
    return sqlite_store(Path.cwd() if cwd is None else cwd)


# Tries at opening a store whose tables another process may be creating this very moment (see SearchTracker).
STORE_INIT_ATTEMPTS = 5
# How long a process waits for another one that is creating the tables of the same sqlite store.
SQLITE_INIT_WAIT_S = 120.0


@contextlib.contextmanager
def sqlite_init_lock(tracking_uri: str) -> Iterator[None]:
    """Serialize the first open of an sqlite store across processes on this machine: MLflow creates and migrates
    its tables (alembic) on first open, and two searches starting together on a fresh file corrupt each other's
    migration ("table _alembic_tmp_experiments already exists"). The lock file lives in the temp folder, keyed by
    the database path, so nothing is left beside the user's store."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    database = os.path.abspath(tracking_uri[len("sqlite:///") :])
    key = hashlib.sha1(database.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"pareto_search-sqlite-{key}.lock")
    with bounded_file_lock(path, SQLITE_INIT_WAIT_S, f"another process opening {database}"):
        yield


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
# tests/e2e/test_mlflow_ui.py), so the links we print carry it.
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
