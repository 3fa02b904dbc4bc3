"""A team `mlflow server` on 127.0.0.1 for tests: basic-auth, a SQL backend store, proxied artifacts.

Started as a team would start it (docs/clusters.md, "Shared tracking"), awaited on `/health` (bounded), stopped by its
process group. The admin credentials come from the environment, from the very variables MLflow's basic-auth
reads (`MLFLOW_AUTH_ADMIN_USERNAME`, `MLFLOW_AUTH_ADMIN_PASSWORD`); the rest of the auth configuration goes
to an ini file named by `MLFLOW_AUTH_CONFIG_PATH`, which never holds the password.
"""

from __future__ import annotations

import configparser
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

from pareto_search.testing.processes import free_port, stop_process_group, tail

START_TIMEOUT_S = 180.0  # the backend store's migrations on an empty database, then the workers start
ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
MIN_PASSWORD_LENGTH = 12  # MLflow's basic-auth refuses shorter passwords (mlflow.utils.validation)
# Without a cache every request re-checks the password hash: ~0.4 s per request here, which made each
# epoch's logging take 1-2.5 s; 60 s of cache (per worker) brings a request to ~15 ms. The price: a changed
# or deleted password keeps working on the other workers for up to that long.
AUTH_CACHE_TTL_S = 60


class MlflowServer(NamedTuple):
    url: str
    username: str  # the admin user's
    password: str


def write_auth_ini(
    path: Path,
    database_uri: str,
    admin_username: str,
    default_permission: str = "READ",
    auth_cache_ttl_seconds: int = AUTH_CACHE_TTL_S,
) -> Path:
    """The basic-auth configuration (`MLFLOW_AUTH_CONFIG_PATH`); the admin password stays in the environment."""
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": default_permission,
        # configparser interpolates "%": a URL-encoded password needs it doubled
        "database_uri": database_uri.replace("%", "%%"),
        "admin_username": admin_username,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "auth_cache_ttl_seconds": str(auth_cache_ttl_seconds),
    }
    with path.open("w", encoding="utf-8") as f:
        config.write(f)
    return path


def server_command(
    backend_store_uri: str, artifacts_destination: str, port: int, allowed_hosts: str, workers: int
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--allowed-hosts",
        allowed_hosts,
        "--app-name",
        "basic-auth",
    ]


@contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifacts_destination: Path | str,
    auth_database_uri: str,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    workers: int = 2,
    job_execution: bool = False,
    auth_cache_ttl_seconds: int = AUTH_CACHE_TTL_S,
    start_timeout_s: float = START_TIMEOUT_S,
) -> Iterator[MlflowServer]:
    """Start `mlflow server --app-name basic-auth` with runs in `backend_store_uri` and artifacts (proxied through
    the server: runs get `mlflow-artifacts:/` URIs) in the folder (or object-store URI) `artifacts_destination`.

    `env` (default: this process's environment) must hold `MLFLOW_AUTH_ADMIN_USERNAME` and
    `MLFLOW_AUTH_ADMIN_PASSWORD`; `MLFLOW_FLASK_SERVER_SECRET_KEY` (CSRF key of the auth app) is generated when
    absent. `job_execution` keeps MLflow's job runner (huey consumers for GenAI scorers and trace rollups,
    seven processes; nothing the search uses); it is off by default. Yields (url, admin username, admin
    password); stops the server's process group on exit.
    """
    base = dict(os.environ if env is None else env)
    username, password = base.get(ADMIN_USERNAME_ENV, ""), base.get(ADMIN_PASSWORD_ENV, "")
    if not username or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"mlflow_server needs the admin credentials in {ADMIN_USERNAME_ENV} and {ADMIN_PASSWORD_ENV} "
            f"(a password of at least {MIN_PASSWORD_LENGTH} characters)"
        )
    port = port or free_port()  # a given port: the same server started again after a stop
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="pareto_search_mlflow_server_") as tmp:
        ini = write_auth_ini(
            Path(tmp) / "basic_auth.ini", auth_database_uri, username, auth_cache_ttl_seconds=auth_cache_ttl_seconds
        )
        server_env = {
            **base,
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            SECRET_KEY_ENV: base.get(SECRET_KEY_ENV) or secrets.token_hex(32),
            # MLflow execs `uvicorn` by name: the venv's bin folder first
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
            # MLflow leaves a lock file per database URL (db_init_lock-<hash>) in the temp folder: ours, removed
            "TMPDIR": tmp,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if job_execution else "false",
        }
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            server_env.pop(name, None)  # the server's own store is the command line's, nothing else
        destination = str(artifacts_destination)
        if "://" not in destination:
            destination = Path(destination).resolve().as_uri()
        command = server_command(
            backend_store_uri,
            destination,
            port,
            f"127.0.0.1:{port},localhost:{port}",
            workers,
        )
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=tmp, env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                _await_health(url, process, log_path, start_timeout_s)
                yield MlflowServer(url, username, password)
            finally:
                stop_process_group(process)


def _await_health(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Poll `/health` (exempt from auth and host checks) until it answers 200; bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{tail(log_path)}")
        with (
            suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{url}/health", timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"mlflow server did not answer /health within {timeout_s:.0f} s:\n{tail(log_path)}")
        time.sleep(0.5)
