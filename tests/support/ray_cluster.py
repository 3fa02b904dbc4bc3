"""A real multi-node Ray cluster on 127.0.0.1 for tests: `ray start --head` plus worker nodes, token
authentication on, every process stopped by pid afterwards.

Each cluster gets its own `--temp-dir` (short: Ray's unix sockets live there), which is how its processes
are found again: `ray stop` would stop every Ray on the machine, this stops only the cluster's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from pareto_search.testing.processes import free_port

START_TIMEOUT_S = 120  # `ray start` of one node on a busy 2-core machine
STOP_TIMEOUT_S = 15


@dataclass(frozen=True)
class LocalCluster:
    dashboard: str  # http://127.0.0.1:<port>: the job server
    gcs_address: str  # 127.0.0.1:<port>
    env: dict[str, str]  # what a client on this machine uses: HOME with the token, PATH with the venv, auth on
    temp_dir: Path
    worker_dirs: tuple[Path, ...]  # one per worker node: its processes mention it (remove a node by these)


def _ray(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"ray {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )


def _pids_of(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(entry.name))
    return pids


# Command-line marks of Ray's own processes. Some rename themselves ("ray::DashboardAgent") or name the node's
# external address rather than the temp dir: the cluster's clean-up finds those as Ray processes it started.
_RAY_MARKS = ("ray::", "ray.util.client.server", "/ray/", "raylet", "gcs_server")


def _ray_pids() -> set[int]:
    return {pid for mark in _RAY_MARKS for pid in _pids_of(mark)}


def stop_processes(marker: str | None = None, pids_of: Callable[[], Iterable[int]] | None = None) -> None:
    """SIGTERM, then SIGKILL after a bound, to every process whose command line mentions `marker` (or that
    `pids_of` names)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = list(pids_of()) if pids_of is not None else _pids_of(marker or "")
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
            time.sleep(0.2)
        if not pids:
            return


def _with_descendants(roots: set[int]) -> set[int]:
    """``roots`` and every process whose chain of parents leads to one of them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
    found = set(roots)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def _state(pid: int) -> str:
    with suppress(OSError):
        return (Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split() or ["?"])[0]
    return "?"


@contextmanager
def local_ray_cluster(
    home: Path, worker_cpus: tuple[int, ...] = (1,), head_cpus: int = 1, node_path_first: Path | None = None
) -> Iterator[LocalCluster]:
    """A head (`head_cpus`) and one worker node per entry of `worker_cpus`, all on 127.0.0.1, with Ray token
    authentication; the token is generated into `home`/.ray/auth_token."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_AUTH_MODE": "token",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    # `node_path_first`: a folder the nodes' PATH looks in first (its `python` is what a job's shell runs), as for a
    # head started from another environment than the project's. Clients (the returned env) keep the project's PATH.
    node_env = {**env, "PATH": f"{node_path_first}{os.pathsep}{env['PATH']}"} if node_path_first is not None else env
    port, dashboard_port = free_port(), free_port()
    worker_dirs: list[Path] = []
    ray_before = _ray_pids()  # the machine's other Ray processes (none in a test run): never touched
    try:
        _ray(["get-auth-token", "--generate"], env)
        _ray(
            [
                "start",
                "--head",
                f"--port={port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port}",
                f"--num-cpus={head_cpus}",
                # Its own port for the node's agent (the job server's worker): Ray's fixed default (52365) is taken
                # by any other Ray on the machine, and a job then finds "No available agent to submit job".
                f"--dashboard-agent-listen-port={free_port()}",
                f"--temp-dir={temp_dir}",
                "--disable-usage-stats",
                "--node-ip-address=127.0.0.1",
            ],
            node_env,
        )
        for cpus in worker_cpus:
            # Its own temp dir, like a separate machine: nodes sharing one would share the runtime-env cache,
            # and a worker node's clean-up would delete the job driver's working dir under the head.
            node_dir = Path(tempfile.mkdtemp(prefix="rw", dir="/tmp"))
            worker_dirs.append(node_dir)
            _ray(
                [
                    "start",
                    f"--address=127.0.0.1:{port}",
                    f"--num-cpus={cpus}",
                    f"--dashboard-agent-listen-port={free_port()}",
                    "--node-ip-address=127.0.0.1",
                    f"--temp-dir={node_dir}",
                ],
                node_env,
            )
        yield LocalCluster(f"http://127.0.0.1:{dashboard_port}", f"127.0.0.1:{port}", env, temp_dir, tuple(worker_dirs))
    finally:
        # Exactly this cluster's processes: those naming its folders or its head's address, and every process
        # descended from them (workers and agents rename themselves "ray::..." and lose those names). Never "every Ray
        # process that appeared meanwhile": on a shared machine that kills other sessions' (or test workers') Rays.
        markers = [*map(str, (*worker_dirs, temp_dir)), f"127.0.0.1:{port}"]

        def ours() -> set[int]:  # asked again each round: a raylet may start a worker while it is stopped
            return _with_descendants({pid for marker in markers for pid in _pids_of(marker)}) - ray_before

        stop_processes(pids_of=ours)
        for folder in (*worker_dirs, temp_dir):
            subprocess.run(["rm", "-rf", str(folder)], check=False, timeout=60)
