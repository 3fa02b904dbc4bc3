"""Session-wide test hygiene."""

from collections.abc import Iterator

import mlflow
import pytest


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_tracking_uri() -> Iterator[None]:
    """Undo any process-wide MLflow tracking URI a test (or the code under test) set.

    `mlflow.set_tracking_uri` is global and also exports MLFLOW_TRACKING_URI, so one test that
    calls it would silently redirect every later test's fluent MLflow calls to its own store.
    """
    yield
    mlflow.set_tracking_uri(None)
