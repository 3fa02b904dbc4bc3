"""Whether an MLflow call failed because the server did not answer (worth retrying) or for a reason of its own,
and MLflow's HTTP settings for one try per request."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from mlflow.exceptions import MlflowException, RestException

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
