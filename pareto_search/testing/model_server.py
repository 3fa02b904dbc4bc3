"""`mlflow models serve` on 127.0.0.1 for tests and benchmarks: started, awaited (bounded), stopped by pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_search.testing.processes import free_port, stop_process_group, tail

START_TIMEOUT_S = 90.0  # uvicorn + loading the model on a busy 2-core machine
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ModelServer:
    url: str
    process: subprocess.Popen[Any]  # the `mlflow models serve` launcher; the uvicorn worker is its child
    startup_seconds: float  # start to the first answered /ping


@contextmanager
def model_server(
    model_uri: str,
    tracking_uri: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    start_timeout_s: float = START_TIMEOUT_S,
) -> Iterator[ModelServer]:
    """Serve `model_uri` with `--env-manager local`; yields the server; stops it (its process group) on
    exit. The venv's bin folder goes first on PATH: MLflow execs `uvicorn` by name."""
    port = free_port()
    base = os.environ if env is None else env
    env = {
        **base,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
    }
    started = time.monotonic()
    log = tempfile.NamedTemporaryFile(prefix="mlflow_serve_", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url, process, start_timeout_s, log.name)
        yield ModelServer(url, process, time.monotonic() - started)
    finally:
        stop_process_group(process)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def wait_for_ping(url: str, process: subprocess.Popen[Any], timeout_s: float, log: str) -> None:
    """Until the server at `url` answers /ping with 200; bounded. A server process that exits, or no answer
    within `timeout_s`, raises with the tail of its `log`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited with {process.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the model server did not answer /ping within {timeout_s:.0f} s:\n{tail(log)}")
        time.sleep(0.5)


def invoke(url: str, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /invocations; returns (HTTP status, the JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/invocations", data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
