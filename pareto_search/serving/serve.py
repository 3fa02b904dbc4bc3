"""`pareto-search serve MODEL[@ALIAS]`: a registered model behind `mlflow models serve`, from this environment.

Why a command of our own rather than the `mlflow models serve` recipe: MLflow's server execs `uvicorn` by name,
so without an activated venv it fails with "uvicorn: not found" and a trace, and it must be told the store the
model was registered in (MLFLOW_TRACKING_URI) by hand. Here the store is the one `select --register` used (same
resolution), the name, alias or version is checked first (one line naming what exists), and the server runs in
the foreground: Ctrl-C / SIGTERM stop its whole process tree and the command exits with the signal's code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pareto_search.errors import ConfigError
from pareto_search.timeouts import WaitTimeout, bounded_call, redact_uri, tracking_open_timeout_s
from pareto_search.tracking.connection import fail_fast_http, is_outage
from pareto_search.tracking.store import tracking_location

DEFAULT_HOST = "127.0.0.1"  # only this machine: serving to a network is a choice (--host 0.0.0.0)
DEFAULT_PORT = 5000  # `mlflow models serve`'s own default
# After a forwarded SIGINT/SIGTERM the server gets this long to finish its requests and exit, then its process
# group is killed: a stuck worker must not keep the command (and the port) forever.
STOP_GRACE_S = 30.0
# Names listed in a refusal: enough to spot a typo, short enough for one line.
LISTED = 10
# The conventions of the rest of the CLI (cli.py): a signal's exit code is 128 + its number.
EXIT_BY_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StoreUnreachable(RuntimeError):
    """The tracking store did not answer (within its bound): nothing was started; exit 1, not a usage error."""


@dataclass(frozen=True)
class ModelRef:
    """What the user named: a model, and at most one of an alias or a version (neither: the latest version)."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version}" if self.version is not None else self.name


@dataclass(frozen=True)
class ResolvedModel:
    ref: ModelRef
    version: str  # the version the alias (or "latest") points at now: what is served, whatever moves later
    tracking_uri: str

    @property
    def model_uri(self) -> str:
        # The version, not the alias: the line printed says which version serves, and it stays true even if the
        # alias moves while the server starts.
        return f"models:/{self.ref.name}/{self.version}"

    def describe(self) -> str:
        latest = ", the latest" if self.ref.alias is None and self.ref.version is None else ""
        return f"{self.ref} (version {self.version}{latest})"


def parse_model(text: str) -> ModelRef:
    """`NAME`, `NAME@ALIAS`, `NAME/VERSION`, each also as a `models:/` URI."""
    spec = text.strip().removeprefix("models:/")
    if "@" in spec:
        name, _, alias = spec.rpartition("@")
        if not name or not alias or "/" in name:
            raise ConfigError(f"MODEL: expected NAME, NAME@ALIAS or NAME/VERSION, found {text!r}")
        return ModelRef(name, alias=alias)
    if "/" in spec:
        name, _, version = spec.rpartition("/")
        if not name or "/" in name:
            raise ConfigError(f"MODEL: expected NAME, NAME@ALIAS or NAME/VERSION, found {text!r}")
        if not version.isdigit() or int(version) < 1:
            raise ConfigError(f"MODEL {text!r}: the version must be a positive integer, found {version!r}")
        return ModelRef(name, version=str(int(version)))
    if not spec:
        raise ConfigError("MODEL: expected NAME, NAME@ALIAS or NAME/VERSION, found an empty name")
    return ModelRef(spec)


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f" (and {len(items) - LISTED} more)" if len(items) > LISTED else "") if items else "none"


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:200]


def _check_local_store(uri: str) -> None:
    """A sqlite file that does not exist is a store nothing was registered in (the wrong directory, most often):
    MLflow would create an empty one and then say the model does not exist, leaving a stray mlflow.db behind."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    path = path if uri.startswith("sqlite:////") else Path.cwd() / path
    if not path.is_file():
        raise ConfigError(
            f"the tracking store {uri} does not exist (no model was registered there); name the store "
            "`select --register` used with --tracking-uri or MLFLOW_TRACKING_URI"
        )


def _lookup(ref: ModelRef, uri: str) -> str:
    """The version `ref` names in the registry at `uri`; ConfigError (one line, what exists) when it names none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    where = f"in {redact_uri(uri)}"
    try:
        model = client.get_registered_model(ref.name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = sorted(m.name for m in client.search_registered_models(max_results=LISTED + 1))
        more = " or more" if len(names) > LISTED else ""
        raise ConfigError(
            f"MODEL: no registered model {ref.name!r} {where}; registered models{more}: {_listed(names)}"
        ) from None
    aliases = dict(getattr(model, "aliases", None) or {})
    if ref.alias is not None:
        if ref.alias not in aliases:
            known = [f"@{a} (version {v})" for a, v in sorted(aliases.items())]
            raise ConfigError(
                f"MODEL: model {ref.name!r} has no alias {ref.alias!r} {where}; its aliases: {_listed(known)}"
            )
        return str(client.get_model_version_by_alias(ref.name, ref.alias).version)
    versions = sorted(
        (int(v.version) for v in client.search_model_versions(f"name = '{ref.name}'")), reverse=True
    )  # the name has no quote: the registry found it by exactly this name
    if not versions:
        raise ConfigError(f"MODEL: model {ref.name!r} has no version {where}; register one with `select --register`")
    if ref.version is None:
        return str(versions[0])
    if int(ref.version) not in versions:
        raise ConfigError(
            f"MODEL: model {ref.name!r} has no version {ref.version} {where}; its versions: "
            f"{_listed([str(v) for v in versions])}"
        )
    return ref.version


def resolve(ref: ModelRef, tracking_uri: str | None) -> ResolvedModel:
    """Check, boundedly, that `ref` exists in the store (`--tracking-uri`, else the one every command uses)."""
    uri = tracking_location(tracking_uri)  # no search here: --tracking-uri, else the environment, else ./mlflow.db
    _check_local_store(uri)
    bound = tracking_open_timeout_s(uri)

    def lookup() -> str:
        with fail_fast_http():  # one try per request: a server that does not answer is one line, not minutes
            return _lookup(ref, uri)

    try:
        version = bounded_call(lookup, bound, f"tracking store {redact_uri(uri)}")
    except WaitTimeout:
        raise StoreUnreachable(f"the tracking store {redact_uri(uri)} did not answer within {bound:g} s") from None
    except ConfigError:
        raise
    except Exception as exc:
        if is_outage(exc):
            raise StoreUnreachable(
                f"the tracking store {redact_uri(uri)} did not answer ({_first_line(exc)})"
            ) from None
        raise StoreUnreachable(f"the tracking store {redact_uri(uri)} could not be read ({_first_line(exc)})") from None
    return ResolvedModel(ref, version, uri)


def check_address(host: str, port: int) -> None:
    """One line for a port that is taken (or a host this machine has no address for), before MLflow starts: its
    own failure would come after the model loaded, as uvicorn's trace."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: expected 1..65535, found {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port: {host}:{port} is already in use; pick another --port") from None
        raise ConfigError(f"--host {host!r}: cannot listen there ({_first_line(exc)})") from None


def server_command(model: ResolvedModel, host: str, port: int, workers: int | None) -> list[str]:
    # This interpreter's mlflow, so the server is this environment's (the project and its plug-ins importable).
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model.model_uri, "--env-manager", "local"]
    command += ["--host", host, "--port", str(port)]
    return command + (["--workers", str(workers)] if workers is not None else [])


def server_env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    # MLflow execs `uvicorn` by name: this environment's bin folder first, so no activated venv is needed.
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["MLFLOW_REGISTRY_URI"] = tracking_uri
    return env


@contextlib.contextmanager
def _forwarding(process: subprocess.Popen[Any], received: list[tuple[int, float]]) -> Iterator[None]:
    """SIGINT/SIGTERM to this command go to the server's whole process group (the MLflow launcher and its uvicorn
    workers): the server runs in its own session, so a terminal's Ctrl-C reaches it only through here, once."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append((signum, time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in EXIT_BY_SIGNAL}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run_server(command: list[str], env: dict[str, str]) -> int:
    """Run the server in the foreground; its exit code, or 130 / 143 when it was stopped by SIGINT / SIGTERM."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    received: list[tuple[int, float]] = []  # (signal, when): the first one sets the exit code and the grace time
    with _forwarding(process, received):
        try:
            while process.poll() is None:
                if received and time.monotonic() - received[0][1] > STOP_GRACE_S:
                    with contextlib.suppress(ProcessLookupError):  # it did not stop in its grace time
                        os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.5)
        finally:
            # The launcher is gone; its workers must not outlive it (they would hold the port): bounded, then killed.
            deadline = time.monotonic() + STOP_GRACE_S
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_alive(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
    if received:
        return EXIT_BY_SIGNAL[signal.Signals(received[0][0])]
    code = process.returncode
    return 128 - code if code < 0 else code  # killed by a signal we did not send: the shell's convention


def serve(model: str, *, host: str, port: int, tracking_uri: str | None, workers: int | None) -> int:
    """Check everything, say where it serves, then serve in the foreground; the server's exit code."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: expected at least 1, found {workers}")
    ref = parse_model(model)
    check_address(host, port)
    # MLflow's INFO lines and progress bars (model download) would bury the server's own log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        resolved = resolve(ref, tracking_uri)
    except KeyboardInterrupt:  # Ctrl-C while the registry is read (importing MLflow takes seconds): no trace
        print("interrupted before the server started", file=sys.stderr)
        return EXIT_BY_SIGNAL[signal.SIGINT]
    print(
        f"serving {resolved.describe()} from {redact_uri(resolved.tracking_uri)} on http://{host}:{port}/invocations",
        flush=True,
    )
    return run_server(server_command(resolved, host, port, workers), server_env(resolved.tracking_uri))
