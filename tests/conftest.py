"""Session-wide test hygiene."""

import os
from collections.abc import Iterator

import mlflow
import pytest
import torch

# The unit tests train tiny models, where torch's intra-op threads cost more in synchronization
# than they give (measured: 50 PMTL steps took 10.9 s with default threads on a loaded 2-core
# machine, 0.18 s with one). Tests that want more threads ask for them (Trainer(num_threads=...)).
torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker keeps its local Rays in its own temp folder: a bare `ray.init()` joins the
    cluster whose address file it finds in Ray's temp folder, so one worker's search must never find another's.
    Short on purpose: Ray's socket paths live below it and a Unix socket path has at most 107 characters."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        folder = f"/tmp/ray-{worker}"
        os.makedirs(folder, exist_ok=True)
        os.environ["RAY_TMPDIR"] = folder


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_tracking_uri() -> Iterator[None]:
    """Undo any process-wide MLflow tracking URI a test (or the code under test) set.

    `mlflow.set_tracking_uri` is global and also exports MLFLOW_TRACKING_URI, so one test that
    calls it would silently redirect every later test's fluent MLflow calls to its own store.
    """
    yield
    mlflow.set_tracking_uri(None)
