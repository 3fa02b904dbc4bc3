"""Where a search keeps things — its storage folder and its MLflow tracking store — resolved in one place.

A search records its tracking store *as the user gave it* (search.json, ``locations.tracking``):

- ``explicit``: `tracking.uri` of the config, as written;
- ``env``: ``$MLFLOW_TRACKING_URI`` as it was when the search started;
- ``default``: the working folder's ``mlflow.db``, with the working folder kept relative to the search's own
  folder (``../..`` for the default ``./searches``) when the search folder was inside it — never an absolute path.

Every command (``run``, ``resume``, ``select --register``, ``compare``, ...) resolves that record with
:func:`resolve_locations` against its own working folder, its ``--storage`` and its environment at the time it
runs. A working folder moved or copied with its searches and its ``mlflow.db`` therefore keeps working where it
now is, and a search addressed from another folder (``--storage A/searches``) still opens A's store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pareto_search.storage import Location
from pareto_search.tracking.store import DEFAULT_DB_FILENAME, TRACKING_ENV, sqlite_store, tracking_location

if TYPE_CHECKING:
    from pareto_search.config import SearchConfig
    from pareto_search.plan import SearchPlan

Source = Literal["default", "explicit", "env"]
SOURCES: tuple[str, ...] = ("default", "explicit", "env")


@dataclass(frozen=True)
class TrackingRecord:
    """How a search's tracking store was given, as search.json keeps it."""

    source: Source
    uri: str | None = None  # explicit / env: the URI as written; default: None
    # default: the working folder relative to the search folder (<storage>/<name>), e.g. "../..", when the search
    # folder was inside the working folder; None when it was not (then the command's own working folder is used)
    working_folder: str | None = None
    # Read from a search.json written before searches recorded this: only `tracking.uri` of the config is known
    legacy: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source}
        if self.source == "default":
            data["store"] = f"the working folder's {DEFAULT_DB_FILENAME}"
            data["working_folder"] = self.working_folder
        else:
            data["uri"] = self.uri
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrackingRecord:
        source = data.get("source")
        if source not in SOURCES:
            raise ValueError(f"locations.tracking.source must be one of {', '.join(SOURCES)}, found {source!r}")
        if source == "default":
            return cls("default", working_folder=data.get("working_folder"))
        return cls(source, uri=str(data["uri"]))

    def describe(self) -> str:
        if self.source == "explicit":
            return f"tracking.uri {self.uri}"
        if self.source == "env":
            return f"${TRACKING_ENV} {self.uri}"
        return f"default: the working folder's {DEFAULT_DB_FILENAME}"


@dataclass(frozen=True)
class Locations:
    """Where one command finds a search's things."""

    storage_dir: Location | None  # <storage>/<name>; None for a command without a search (serve)
    tracking_uri: str  # the store this command opens
    tracking: TrackingRecord  # what the search recorded (or would record, for a new search)
    note: str | None = None  # one line for stderr when a fallback was taken (an old search.json)


def record_tracking(
    uri: str | None, *, storage_dir: Location | None, cwd: str | Path, env: Mapping[str, str]
) -> TrackingRecord:
    """What a new search records of its tracking store: as given, relative where it was the default."""
    if uri:
        return TrackingRecord("explicit", uri=uri)
    from_env = (env.get(TRACKING_ENV) or "").strip()
    if from_env:
        return TrackingRecord("env", uri=from_env)
    relative = None
    if storage_dir is not None and storage_dir.is_local:
        working, search = Path(cwd).resolve(), storage_dir.local_path
        if search.is_relative_to(working) and search != working:
            relative = PurePosixPath(*[".."] * len(search.relative_to(working).parts)).as_posix()
    return TrackingRecord("default", working_folder=relative)


def _sqlite_file(uri: str, cwd: Path) -> Path | None:
    """The database file of a ``sqlite:///`` URI (a relative one is taken from `cwd`), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    return path if path.is_absolute() else cwd / path


def _resolve_tracking(
    record: TrackingRecord, storage_dir: Location | None, cwd: Path, env: Mapping[str, str], name: str
) -> tuple[str, str | None]:
    """(the tracking URI this command opens, a note for stderr or None)."""
    from_env = (env.get(TRACKING_ENV) or "").strip()
    if record.source == "env":  # the environment at the time the command runs; else the value recorded
        return (from_env or str(record.uri)), None
    if record.source == "explicit":
        uri = str(record.uri)
        old = _sqlite_file(uri, cwd)
        here = cwd / DEFAULT_DB_FILENAME
        if record.legacy and uri.startswith("sqlite:////") and old is not None and not old.exists() and here.is_file():
            note = (
                f"search '{name}': its tracking store {old} no longer exists; using {DEFAULT_DB_FILENAME} of this "
                f"folder ({here})"
            )
            return sqlite_store(cwd), note
        return uri, None
    if record.legacy:  # an old search.json with no tracking.uri: as before, the environment, else this folder
        return tracking_location(None, cwd=cwd, env=env), None
    folders = []
    if record.working_folder is not None and storage_dir is not None and storage_dir.is_local:
        folders.append(Path(os.path.normpath(storage_dir.local_path / record.working_folder)))
    folders.append(cwd)  # the search folder was elsewhere, or was moved away from its store without it
    found = next((f for f in folders if (f / DEFAULT_DB_FILENAME).is_file()), folders[0])
    return sqlite_store(found), None


def resolve_locations(
    config_or_plan: SearchConfig | SearchPlan,
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Locations:
    """Where a search's storage folder and tracking store are, for a command run in `cwd` with `env` (default:
    this process's). A plan (an existing search, found through the command's --storage) is resolved from its
    record; a config (a search about to start) from its settings, and its record is what the plan will save."""
    from pareto_search.plan import SearchPlan, search_location

    cwd = Path.cwd() if cwd is None else Path(cwd)
    env = os.environ if env is None else env
    if isinstance(config_or_plan, SearchPlan):
        plan = config_or_plan
        storage_dir = plan.storage_dir
        record = plan.tracking or TrackingRecord(
            "explicit" if plan.config.tracking.uri else "default", uri=plan.config.tracking.uri, legacy=True
        )
        name = plan.name
    else:
        config = config_or_plan
        storage = config.storage
        if "://" not in storage and not Path(storage).expanduser().is_absolute():
            storage = str(cwd / storage)
        storage_dir = search_location(storage, config.name)
        record = record_tracking(config.tracking.uri, storage_dir=storage_dir, cwd=cwd, env=env)
        name = config.name
    uri, note = _resolve_tracking(record, storage_dir, cwd.resolve(), env, name)
    return Locations(storage_dir, uri, record, note)


def find_search(
    storage: str | Path | Location,
    name: str,
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[SearchPlan, str | None, Locations]:
    """An existing search found through a command's --storage: its plan, its MLflow parent run id and its
    locations for this command (a note, when there is one, is for the caller to print)."""
    from pareto_search.plan import load_plan

    if cwd is not None and isinstance(storage, (str, Path)) and "://" not in str(storage):
        storage = Path(cwd) / Path(storage).expanduser()  # an absolute path stays itself
    plan, parent_run_id = load_plan(storage, name)
    return plan, parent_run_id, resolve_locations(plan, cwd=cwd, env=env)
