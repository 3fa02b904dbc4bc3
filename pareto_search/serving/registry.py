"""The MLflow Model Registry side of serving: log a model folder, register it, set its alias.

A registered version is an MLflow 3 *logged model* (linked to the run it came from, so the UI links the
version back to that run) plus a model version carrying tags that say where it came from. Registering
the same thing twice creates no second version: a version's `pareto_search.identity` tag is a digest of
what it serves (search, points and weights), and a match only moves the alias to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.exceptions import MlflowException

from pareto_search.tracking import resolve_tracking_uri

TAG_IDENTITY = "pareto_search.identity"
# MLflow caps tag values (5000 chars on model versions); values longer than this are cut.
_MAX_TAG_CHARS = 4000


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
        try:
            versions = self._client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return None
        for version in versions:
            if version.tags.get(TAG_IDENTITY) == digest:
                return str(version.version)
        return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._client.set_registered_model_alias(name, alias, version)

    def reuse(self, name: str, version: str, alias: str | None) -> RegisteredVersion:
        """An existing version serves the same thing: only the alias moves to it."""
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
        tagged with `digest`; callers check `find(name, digest)` first (`reuse` when it exists)."""
        str_tags = {k: str(v)[:_MAX_TAG_CHARS] for k, v in tags.items()}
        logged = self._client.create_logged_model(
            experiment_id, name=logged_model_name, source_run_id=source_run_id, tags=str_tags
        )
        try:
            self._client.log_model_artifacts(logged.model_id, str(model_dir))
        except BaseException:
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
        version = self._client.create_model_version(
            name,
            source=logged.artifact_location,
            run_id=source_run_id,
            tags={**str_tags, TAG_IDENTITY: digest},
            model_id=logged.model_id,
        )
        if alias:
            self.set_alias(name, alias, str(version.version))
        return RegisteredVersion(name, str(version.version), alias, True, source_run_id, logged.model_id)
