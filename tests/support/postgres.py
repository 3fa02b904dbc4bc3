"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests: created, awaited (bounded), always stopped and removed.

Uses Debian's `postgresql` package (installed with apt-get when missing; that needs root). The cluster
lives in a temporary folder: `initdb` with password (scram-sha-256) authentication on TCP and trust on its
own Unix socket only, `pg_ctl start` on a free port of 127.0.0.1, one password user owning the requested
databases. As root, every PostgreSQL program runs as the unprivileged `postgres` user (`postgres` refuses
to run as root); the folder is owned by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from pareto_search.testing.processes import free_port, tail
from tests.support.machine_lock import machine_lock

APT_UPDATE_TIMEOUT_S = 300
APT_INSTALL_TIMEOUT_S = 900
INITDB_TIMEOUT_S = 120
START_WAIT_S = 60  # pg_ctl's own -t; the subprocess gets 30 s more
STOP_WAIT_S = 30
SQL_TIMEOUT_S = 30
SERVICE_USER = "postgres"  # the OS user Debian's package creates
SUPERUSER = "postgres"  # the cluster's superuser role (trust on the cluster's own Unix socket only)
# The driver is named in the URL: a bare `postgresql://` means psycopg2 under SQLAlchemy 2.0 but psycopg (3)
# under SQLAlchemy 2.1, so its meaning would depend on which SQLAlchemy pip resolved.
DRIVER = "psycopg"


def _run(command: Sequence[str], timeout: float, *, what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run with a bound; a failure or a timeout raises one error naming the command and its output."""
    shown = " ".join(command)
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or "") + (error.stderr or "")
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        raise RuntimeError(f"{what}: `{shown}` did not finish within {timeout:.0f} s:\n{output[-3000:]}") from None
    except FileNotFoundError as error:
        raise RuntimeError(f"{what}: `{shown}` cannot run: {error}") from None
    if done.returncode != 0:
        raise RuntimeError(f"{what}: `{shown}` exited with {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def _version_key(bin_dir: str) -> tuple[int, ...]:
    version = Path(bin_dir).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that holds initdb and pg_ctl, or None."""
    candidates = [
        d
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK)
    ]
    return Path(max(candidates, key=_version_key)) if candidates else None


def ensure_postgresql() -> Path:
    """The PostgreSQL binaries' folder; installs Debian's `postgresql` with apt-get when it is missing.

    The package's post-install script creates and may start a `main` cluster on port 5432; what the
    install started is stopped again here (the tests use their own cluster only).
    """
    found = find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/initdb) and installing it needs "
            "root: run `apt-get update && apt-get install -y postgresql` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with machine_lock("apt", APT_UPDATE_TIMEOUT_S + 2 * APT_INSTALL_TIMEOUT_S):  # another worker may be installing
        found = find_bin_dir()  # ... this very package
        if found is not None:
            return found
        _run(["apt-get", "update"], APT_UPDATE_TIMEOUT_S, what="installing PostgreSQL", env=env)
        _run(["apt-get", "install", "-y", "postgresql"], APT_INSTALL_TIMEOUT_S, what="installing PostgreSQL", env=env)
        _stop_package_clusters()
    found = find_bin_dir()
    if found is None:
        raise RuntimeError(
            "`apt-get install -y postgresql` succeeded but no /usr/lib/postgresql/<version>/bin/initdb appeared"
        )
    return found


def _stop_package_clusters() -> None:
    """Stop the clusters Debian's post-install script started (it ran just now: nothing else started them)."""
    if shutil.which("pg_lsclusters") is None:
        return
    listing = _run(["pg_lsclusters", "--no-header"], SQL_TIMEOUT_S, what="listing the package's clusters")
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].startswith("online"):
            with suppress(RuntimeError):
                _run(
                    ["pg_ctlcluster", fields[0], fields[1], "stop", "--", "-m", "fast", "-t", str(STOP_WAIT_S)],
                    STOP_WAIT_S + 30,
                    what="stopping the cluster the package install started",
                )


def _as_service_user(command: list[str]) -> list[str]:
    """PostgreSQL's programs refuse root: run them as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVICE_USER, "--", *command]


def _stop_cluster(bin_dir: Path, data: Path, cwd: Path) -> None:
    """`pg_ctl stop -m fast`; a postmaster that does not stop in time gets SIGQUIT, then SIGKILL."""
    pid_file = data / "postmaster.pid"
    if not pid_file.is_file():
        return
    with suppress(RuntimeError):
        _run(
            _as_service_user(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", str(STOP_WAIT_S), "stop"]
            ),
            STOP_WAIT_S + 30,
            what="stopping PostgreSQL",
            cwd=cwd,
        )
        return
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):  # SIGQUIT: PostgreSQL's immediate shutdown
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@contextmanager
def postgres_cluster(databases: Sequence[str] = ("mlflow",), user: str = "mlflow") -> Iterator[str]:
    """A fresh cluster on 127.0.0.1; yields `postgresql+psycopg://user:password@127.0.0.1:port/<databases[0]>`.

    Every database in `databases` is created, owned by `user` (reach another one by replacing the URL's
    database name). On exit the cluster is stopped (`pg_ctl stop -m fast`) and its folder removed, whatever
    happened inside.
    """
    if not databases:
        raise ValueError("postgres_cluster needs at least one database name")
    bin_dir = ensure_postgresql()
    password = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="pareto_search_pg_"))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(
                f"running as root, PostgreSQL must run as the user {SERVICE_USER!r}, which does not exist "
                "(Debian's postgresql package creates it: `apt-get install -y postgresql`)"
            ) from None
        for path in (root, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = free_port()
    try:
        _run(
            _as_service_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            INITDB_TIMEOUT_S,
            what="creating the PostgreSQL cluster",
            cwd=root,
        )
        try:
            _run(
                _as_service_user(
                    [
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(log),
                        # fsync off: a throwaway cluster need not survive a power cut
                        "-o",
                        f"-h 127.0.0.1 -p {port} -k {sockets} -F",
                        "-w",
                        "-t",
                        str(START_WAIT_S),
                        "start",
                    ]
                ),
                START_WAIT_S + 30,
                what="starting PostgreSQL",
                cwd=root,
            )
        except RuntimeError as error:
            raise RuntimeError(f"{error}\nserver log:\n{tail(log)}") from None
        statements = [f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}';"]
        statements += [f'CREATE DATABASE "{name}" OWNER "{user}";' for name in databases]
        _run(
            _as_service_user(
                [
                    str(bin_dir / "psql"),
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    str(sockets),
                    "-p",
                    str(port),
                    "-U",
                    SUPERUSER,
                    "-d",
                    "postgres",
                ]
            ),
            SQL_TIMEOUT_S,
            what="creating the PostgreSQL user and databases",
            cwd=root,
            input="\n".join(statements) + "\n",  # on stdin: the password stays off the process list
        )
        yield f"postgresql+{DRIVER}://{user}:{password}@127.0.0.1:{port}/{databases[0]}"
    finally:
        try:
            _stop_cluster(bin_dir, data, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
