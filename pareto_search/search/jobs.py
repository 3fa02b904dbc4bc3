"""The Ray Jobs adapter: `pareto-search submit / status / logs / stop / list` on Ray's `JobSubmissionClient`.

A submitted search is `python -m pareto_search.cli run CONFIG --name NAME --address auto` run by Ray's job
supervisor on the cluster, with a runtime env whose working dir is the user's current directory (the
config and any plug-in problem module travel with it; `.venv`, data, searches, MLflow files and VCS folders
do not). Ray's token authentication stays on: the client sends the token Ray's own loader finds
(`RAY_AUTH_MODE=token` and `~/.ray/auth_token`, `RAY_AUTH_TOKEN` or `RAY_AUTH_TOKEN_PATH`); a cluster that
refuses it gets a one-line error saying how to provide it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shlex
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ray.job_submission import JobStatus, JobSubmissionClient

from pareto_search.errors import ConfigError
from pareto_search.timeouts import WaitTimeout, bounded_call

# What never travels to the cluster with the working dir: environments, data and results (they can be GBs;
# Ray refuses working dirs over its size limit) and files that are the client machine's own.
EXCLUDES = [
    ".venv",
    "venv",
    ".git",
    "data",
    ".data",
    "searches",
    "mlruns",
    "mlartifacts",
    "mlflow.db",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    "benchmarks/out",
    "benchmarks/results",
    # What a running command writes while the folder is packaged (`submit ... 2> submit.log` in this folder):
    # Ray's packager fails the job on a file whose size changes under it ("prematurely deleted").
    "*.log",
]
# Locations the job must use like the client does; forwarded when set. Credentials are not forwarded (the
# job server shows a job's runtime env to anyone who can list jobs): cluster nodes hold their own.
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "PARETO_SEARCH_STORAGE")
METADATA_SEARCH = "pareto_search.search"
# How long one call to the job server may take before the command says which server did not answer.
REQUEST_TIMEOUT_S = 30.0
# A freshly started head answers "No available agent to submit job" for a few seconds (over a minute on a busy
# machine): retry that long.
AGENT_WAIT_S = 120.0
# `logs --follow` polls the job's status this often once the log stream has ended.
SETTLE_S = 60.0  # after the log stream ends, how long the job's status may take to become final
POLL_S = 1.0
TOKEN_HELP = (
    "the cluster uses Ray token authentication: set RAY_AUTH_MODE=token and give the cluster's token in "
    "~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (`ray get-auth-token` on the head prints it)"
)
# Exit codes of `status` / `logs --follow` by the job's final state (the CLI's own convention).
EXIT_BY_STATUS = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}
# The job's side, checked first: the cluster's `python` (the one on the PATH Ray was started with) must import
# what a search needs. Without this a head started outside the project's environment runs the job into a
# ModuleNotFoundError traceback after the working dir travelled; with it the job fails in one line saying what
# to fix, which `logs` and `status` show.
JOB_NEEDS = ("torch", "ray", "mlflow", "trials", "pareto_search")
JOB_PROBE = (
    "import sys\n"
    f"for name in {JOB_NEEDS!r}:\n"
    "    try:\n"
    "        __import__(name)\n"
    "    except Exception as exc:\n"
    "        sys.exit(f'pareto-search job: the cluster python {sys.executable} cannot import {name} '\n"
    "                 f'({type(exc).__name__}: {exc}); start Ray on every node from the environment where '\n"
    "                 'pareto_search and torch are installed (e.g. .venv/bin/ray start ...)')\n"
)


class JobServerUnreachable(ConfigError):
    """The job server did not answer (a head that is down, or a wrong address): the job's state is unknown."""


def _error(address: str, exc: Exception) -> ConfigError:
    """One line for what the job server said: authentication, unreachable, or its own message."""
    text = str(exc)
    if "401" in text or "Authentication required" in text or "no authentication token" in text:
        return ConfigError(f"Ray job server {address} refused the request: {TOKEN_HELP}")
    if "403" in text or "Forbidden" in text:
        return ConfigError(f"Ray job server {address} refused the token: {TOKEN_HELP}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    if _no_answer(exc):
        return JobServerUnreachable(
            f"Ray job server {address} does not answer ({first[:200]}): is the cluster's head running? "
            "the job's state is unknown from here"
        )
    return ConfigError(f"Ray job server {address}: {first}")


def _no_answer(exc: BaseException) -> bool:
    """Refused, reset, timed out: no server answered (Ray wraps these as ConnectionError, aiohttp as its own)."""
    import aiohttp
    import requests

    # Not every OSError: a file of the working dir that cannot be read is the client's, not the server's.
    network = (
        ConnectionError,
        TimeoutError,
        socket.gaierror,
        requests.exceptions.RequestException,
        aiohttp.ClientError,
    )
    return isinstance(exc, network) or "Failed to connect to Ray" in str(exc)


P = ParamSpec("P")
R = TypeVar("R")


def _bounded(address: str, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`call(*args)`, waiting at most REQUEST_TIMEOUT_S: Ray's client sets no timeout on its HTTP requests,
    and a job server behind a dropping firewall would otherwise hang the command."""
    try:
        return bounded_call(lambda: call(*args, **kwargs), REQUEST_TIMEOUT_S, f"Ray job server {address}")
    except WaitTimeout as exc:
        raise JobServerUnreachable(
            f"{exc}: is the cluster's head running? the job's state is unknown from here"
        ) from None
    except ConfigError:
        raise
    except Exception as exc:
        raise _error(address, exc) from None


def connect(address: str | None) -> JobSubmissionClient:
    address = address or os.environ.get("RAY_ADDRESS") or ""
    if not address.startswith(("http://", "https://")):
        raise ConfigError(
            f"--address: the Ray job server's dashboard address, e.g. http://HEAD:8265 (or set RAY_ADDRESS), "
            f"found {address!r}"
        )
    return _bounded(address, JobSubmissionClient, address)


@dataclass(frozen=True)
class Submitted:
    job_id: str
    address: str
    name: str
    entrypoint: str
    files: int  # what travelled with the job: files and bytes of the working-dir snapshot
    bytes: int


def _excluded(relative: str, name: str) -> bool:
    return any(
        fnmatch.fnmatch(name, pattern) or relative == pattern or relative.startswith(f"{pattern}/")
        for pattern in EXCLUDES
    )


def snapshot_working_dir(source: Path, target: Path) -> tuple[int, int]:
    """Copy what travels (all but EXCLUDES) to `target`, once: Ray then packages a folder nothing writes to, so
    a log or a result file changing in `source` meanwhile cannot fail the job. Returns (files, bytes)."""
    files = size = 0
    for folder, dirs, names in os.walk(source):
        base = Path(folder)
        relative_base = base.relative_to(source).as_posix()
        prefix = "" if relative_base == "." else f"{relative_base}/"
        dirs[:] = [d for d in dirs if not _excluded(prefix + d, d) and not (base / d).is_symlink()]
        for name in names:
            if _excluded(prefix + name, name):
                continue
            path = base / name
            destination = target / (prefix + name)
            try:
                if not path.is_file():  # a socket, a FIFO or a dangling link: nothing to send
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
            except FileNotFoundError:  # deleted while we walked: it would not have been there for the job either
                continue
            except OSError as exc:  # unreadable (permissions): say which, rather than send the job without it
                raise ConfigError(
                    f"cannot read {path} to send it with the job ({exc.strerror}): make it readable, or move it "
                    f"out of {source} (everything there but {', '.join(EXCLUDES)} travels)"
                ) from None
            files += 1
            size += destination.stat().st_size
    return files, size


def submission_id(name: str) -> str:
    """`<search name>-<8 hex>`: readable in `ray job list`, unique across resubmissions."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def submit(address: str | None, config_path: Path, name: str, working_dir: Path) -> Submitted:
    """Submit `pareto-search run CONFIG --name NAME --address auto` as a Ray Job with `working_dir` shipped."""
    config_path = config_path.resolve()
    working_dir = working_dir.resolve()
    try:
        relative = config_path.relative_to(working_dir)
    except ValueError:
        raise ConfigError(
            f"config {config_path} is outside the working directory {working_dir}, which is what travels to the "
            "cluster: run `submit` from a folder that holds the config"
        ) from None
    client = connect(address)
    with tempfile.TemporaryDirectory(prefix="pareto_search_job_") as snapshot:
        # The folder is named like the user's: Ray shows it in the job's runtime env and logs.
        folder = Path(snapshot) / (working_dir.name or "project")
        folder.mkdir()
        files, size = snapshot_working_dir(working_dir, folder)
        job_id, entrypoint = _submit(client, relative, name, folder)
    return Submitted(job_id, client.get_address(), name, entrypoint, files, size)


def _submit(client: JobSubmissionClient, relative: Path, name: str, working_dir: Path) -> tuple[str, str]:
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    # Set on the command line too: Ray applies a runtime env's env_vars to the job's workers, and (seen with
    # Ray 2.60) not always to the entrypoint, which is where the search's storage and tracking are resolved.
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_vars.items())
    command = (
        f"python -m pareto_search.cli run {shlex.quote(relative.as_posix())} --name {shlex.quote(name)} --address auto"
    )
    entrypoint = f"env {prefix} {command}" if prefix else command
    entrypoint = f"python -c {shlex.quote(JOB_PROBE)} && {entrypoint}"
    runtime_env: dict[str, Any] = {"working_dir": str(working_dir), "excludes": EXCLUDES, "env_vars": env_vars}
    job_id = submission_id(name)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            _bounded(
                client.get_address(),
                client.submit_job,
                entrypoint=entrypoint,
                submission_id=job_id,
                runtime_env=runtime_env,
                metadata={METADATA_SEARCH: name},
            )
            break
        except ConfigError as exc:
            # A head that just started has no job agent yet; Ray itself says to try again later.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(POLL_S)
    return job_id, entrypoint


def status(address: str | None, job_id: str) -> str:
    client = connect(address)
    return str(_bounded(client.get_address(), client.get_job_status, job_id).value)


def last_line(address: str | None, job_id: str) -> str:
    """The last line a job printed: for a failed job, what failed (the probe's one line, or the search's)."""
    client = connect(address)
    text = str(_bounded(client.get_address(), client.get_job_logs, job_id))
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def logs(address: str | None, job_id: str, follow: bool, timeout_s: float | None) -> str | None:
    """The job's logs (printed as they come with `follow`); with `follow`, returns the final status, waiting at
    most `timeout_s` seconds (None: until the job ends)."""
    client = connect(address)
    if not follow:
        print(_bounded(client.get_address(), client.get_job_logs, job_id), end="", flush=True)
        return None
    _bounded(client.get_address(), client.get_job_status, job_id)  # an unknown job fails here, in one line
    try:
        return asyncio.run(_follow(client, job_id, timeout_s))
    except ConfigError:
        raise
    except Exception as exc:
        raise _error(client.get_address(), exc) from None


async def _follow(client: JobSubmissionClient, job_id: str, timeout_s: float | None) -> str:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    async def stream() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    try:
        await asyncio.wait_for(stream(), None if deadline is None else max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        state = _bounded(client.get_address(), client.get_job_status, job_id)
        raise ConfigError(
            f"job {job_id} still {state.value} after --timeout {timeout_s:g} s: "
            f"follow it with `pareto-search logs {job_id} --follow`"
        ) from None
    # The stream ends when the job does; its status settles a moment later (bounded, each call too).
    settle_by = time.monotonic() + SETTLE_S
    if deadline is not None:
        settle_by = min(settle_by, deadline)
    final = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
    while (state := _bounded(client.get_address(), client.get_job_status, job_id)) not in final:
        if time.monotonic() > settle_by:
            break
        await asyncio.sleep(POLL_S)
    return str(state.value)


def stop(address: str | None, job_id: str) -> bool:
    client = connect(address)
    return bool(_bounded(client.get_address(), client.stop_job, job_id))


def list_jobs(address: str | None) -> list[dict[str, Any]]:
    """The cluster's pareto-search jobs, oldest first: id, search, status, start time, message."""
    client = connect(address)
    jobs = _bounded(client.get_address(), client.list_jobs)
    rows = []
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        metadata = job.metadata or {}
        if METADATA_SEARCH not in metadata:
            continue
        rows.append(
            {
                "job_id": job.submission_id,
                "search": metadata[METADATA_SEARCH],
                "status": str(job.status.value),
                "start_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000)),
                "message": (job.message or "").splitlines()[0] if job.message else "",
            }
        )
    return rows
