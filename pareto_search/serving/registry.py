"""The MLflow Model Registry side of serving: log a model folder, register it, set its alias.

A registered version is an MLflow 3 *logged model* (linked to the run it came from, so the UI links the
version back to that run) plus a model version carrying tags that say where it came from. Registering
the same thing twice creates no second version: a version's `pareto_search.identity` tag is a digest of
what it serves (search, points and weights), and a match only moves the alias to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.exceptions import MlflowException

from pareto_search.errors import ConfigError
from pareto_search.tracking.connection import is_outage
from pareto_search.tracking.store import resolve_tracking_uri

TAG_IDENTITY = "pareto_search.identity"
# MLflow caps tag values (5000 chars on model versions); values longer than this are cut.
_MAX_TAG_CHARS = 4000


# The registry's name column (mlflow/store/model_registry/dbmodels/models.py: String(256)): PostgreSQL and MySQL
# refuse a longer name when the version is written, after the model's files were uploaded.
MAX_MODEL_NAME_CHARS = 256
# The registry's alias rules (MLflow's model registry docs): letters, digits, '_' and '-', at most 255 characters;
# "latest" (any case) and version-like aliases ("v2") are reserved. They are written here, not imported: MLflow
# keeps its checks in private helpers that it renames between minor releases (3.18 did), and
# tests/unit/serving/test_register_faults.py checks these rules against a real registry.
_ALIAS_PATTERN = re.compile(r"[\w\-]+")
_VERSION_ALIAS_PATTERN = re.compile(r"[vV]\d+")
MAX_ALIAS_CHARS = 255


def check_names(flag: str, name: str, alias: str) -> None:
    """One line for a model name or alias the registry would refuse, checked before anything is written: MLflow
    checks them only when the version is created (the name) or after it (the alias: a version without its alias)."""
    # Quotes would break the registry's search filter (name = '...') that finds an already registered version.
    if not name.strip() or "'" in name or '"' in name:
        raise ConfigError(f"{flag}: a model name must be non-empty and have no quotes, found {name!r}")
    if len(name) > MAX_MODEL_NAME_CHARS:
        raise ConfigError(
            f"{flag}: a model name has at most {MAX_MODEL_NAME_CHARS} characters (the registry's limit), "
            f"found {len(name)}"
        )
    if "/" in name or ":" in name:
        raise ConfigError(f"{flag}: the registry refuses the model name {name!r}: a name cannot contain '/' or ':'")
    # MLflow may store a model under its name as a folder: a name must not resolve to another path.
    normalized = posixpath.normpath(name)
    if normalized != name or normalized == "." or normalized.startswith(".."):
        raise ConfigError(
            f"{flag}: the registry refuses the model name {name!r}: as a path it would resolve to {normalized!r}"
        )
    if not alias or not _ALIAS_PATTERN.fullmatch(alias) or len(alias) > MAX_ALIAS_CHARS:
        raise ConfigError(
            f"--alias: the registry refuses the alias {alias!r}: an alias is 1 to {MAX_ALIAS_CHARS} letters, "
            "digits, '_' or '-'"
        )
    if alias.lower() == "latest" or _VERSION_ALIAS_PATTERN.fullmatch(alias):
        raise ConfigError(
            f"--alias: the registry refuses the alias {alias!r}: 'latest' and version names like 'v2' are reserved"
        )


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def identity(*parts: str) -> str:
    """A short digest of what a version serves (order matters)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str | None
    created: bool  # False: an identical version existed; only the alias moved
    source_run_id: str
    model_id: str | None

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "created": self.created,
            "source_run_id": self.source_run_id,
            "model_id": self.model_id,
            "model_uri": self.model_uri,
        }


class ModelRegistry:
    """Registering pareto_search models in one MLflow tracking store (its own client: no global state)."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def find(self, name: str, digest: str) -> str | None:
        """The version of `name` that already serves `digest`, if any."""
        with _outage_says(f"nothing was registered: the registry could not be read to find '{name}'"):
            try:
                versions = self._client.search_model_versions(f"name = '{name}'")
            except MlflowException as exc:
                if is_outage(exc):  # not "no such model": a second version would follow
                    raise
                return None
        for version in versions:
            if version.tags.get(TAG_IDENTITY) == digest:
                return str(version.version)
        return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._client.set_registered_model_alias(name, alias, version)

    def reuse(self, name: str, version: str, alias: str | None) -> RegisteredVersion:
        """An existing version serves the same thing: only the alias moves to it."""
        with _outage_says(f"version {version} of '{name}' already serves this, but alias @{alias} was not set"):
            if alias:
                self.set_alias(name, alias, version)
            existing = self._client.get_model_version(name, version)
        return RegisteredVersion(name, version, alias, False, existing.run_id or "", existing.model_id)

    def register(
        self,
        model_dir: Path,
        *,
        name: str,
        alias: str | None,
        digest: str,
        experiment_id: str,
        source_run_id: str,
        logged_model_name: str,
        tags: Mapping[str, Any],
    ) -> RegisteredVersion:
        """Log `model_dir` as a logged model of `source_run_id` and register it under `name` as a new version
        tagged with `digest`; callers check `find(name, digest)` first (`reuse` when it exists).

        Repeatable after a kill or an outage at any step: a finished logged model of the same digest (an earlier
        try that stopped before its version) is reused, one left unfinished is marked failed, and a version once
        created is found by `find` next time; so a repeated command ends with one version and the alias on it."""
        str_tags = {k: str(v)[:_MAX_TAG_CHARS] for k, v in tags.items()}
        nothing = f"no version of '{name}' was created"
        with _outage_says(nothing):
            logged = self._finished_logged_model(experiment_id, logged_model_name, digest)
            if logged is None:
                logged = self._client.create_logged_model(
                    experiment_id,
                    name=logged_model_name,
                    source_run_id=source_run_id,
                    tags={**str_tags, TAG_IDENTITY: digest},
                )
                try:
                    self._client.log_model_artifacts(logged.model_id, str(model_dir))
                except BaseException:
                    with contextlib.suppress(Exception):  # the server may be the reason: the next try marks it
                        self._client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
                    raise
                self._client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
            try:
                self._client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            # The source is the logged model's artifact location (what `models:/<id>` resolves to): the
            # registry store would otherwise resolve `models:/` through MLflow's process-global tracking URI.
            # The digest tag is written with the version, in one request: a version is never without it.
            version = self._client.create_model_version(
                name,
                source=logged.artifact_location,
                run_id=source_run_id,
                tags={**str_tags, TAG_IDENTITY: digest},
                model_id=logged.model_id,
            )
        if alias:
            with _outage_says(
                f"version {version.version} of '{name}' was created, but alias @{alias} was not set on it"
            ):
                self.set_alias(name, alias, str(version.version))
        return RegisteredVersion(name, str(version.version), alias, True, source_run_id, logged.model_id)

    def _finished_logged_model(self, experiment_id: str, logged_model_name: str, digest: str) -> Any:
        """A READY logged model of this digest left by an earlier try that stopped before its version; earlier
        tries that stopped mid-upload are marked FAILED (their files are incomplete: never served)."""
        found = self._client.search_logged_models(
            [experiment_id], filter_string=f"name = '{logged_model_name}'", max_results=100
        )
        ready = None
        for model in found:
            if model.tags.get(TAG_IDENTITY) != digest:
                continue
            if model.status == LoggedModelStatus.READY:
                ready = ready or model
            elif model.status == LoggedModelStatus.PENDING:
                self._client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        return ready


class RegistryUnavailable(RuntimeError):
    """The tracking server stopped answering during a registration; the message says what was written."""


@contextlib.contextmanager
def _outage_says(written: str) -> Iterator[None]:
    """Turn an outage (refused, reset, timed out, 5xx after MLflow's retries) into one line saying what stands."""
    try:
        yield
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise RegistryUnavailable(f"{written} ({_first_line_of(exc)})") from None


def _first_line_of(exc: BaseException) -> str:
    """What went wrong, short: the socket's own words (`[Errno 111] Connection refused`, `Read timed out`) out of
    MLflow's and urllib3's nested wrappers, else the first line."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\"()]+|Read timed out|Connection reset by peer|\b5\d\d\b[^'\"]{0,60}", text)
    if found:
        return found.group(0).strip().rstrip(".,:")
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)[:200]


def outage_cause(exc: BaseException) -> str:
    return _first_line_of(exc)
