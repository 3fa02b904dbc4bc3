"""Serving benchmark: what `select --register` costs and how fast a registered model answers over HTTP.

    .venv/bin/python benchmarks/serving_latency.py [--requests 200] [--epochs 2] [--front-sizes 10,100,500]

Everything happens in a temporary folder (its own search storage and `sqlite:///<tmp>/mlflow.db`);
only 127.0.0.1 and free ports are used. Steps and what each reports:

1. A real, small Multi-MNIST search (`pareto-search run`, one MT2O population of K=5 plus one
   equal-weights trial, `--epochs` epochs on `--n-train` composites): its wall seconds.
2. `pareto-search select NAME --knee --register mnist-member`, then `--register-front mnist-front`,
   then the first command again (idempotent: no new version, `created: false`), each with
   `--format json`: the command's wall seconds (Python start, imports, MNIST load included) and the
   `registered.seconds` it reports (the in-process registration time).
3. For each of the two models, `mlflow models serve -m models:/NAME@champion --env-manager local`:
   seconds until `/ping` answers, the server's resident memory (VmRSS summed over the `mlflow`
   launcher and its `uvicorn` worker, and the worker alone, which holds the model) after loading,
   then `--warmup` requests and `--requests` sequential POST /invocations on one keep-alive
   connection with batch 1 and with batch 64 (real validation composites, sent as a naive client
   would: `json.dumps(array.tolist())`). The front model's requests alternate
   `params: {"weights": [1, 0]}` and `[0, 1]` (the two ends of the front). Latency is client-side, request sent to
   answer read: p50, p99 (ms), requests/s and images/s. Beside them, the median (min) time of the same
   model's `predict` loaded in this process (`mlflow.pyfunc.load_model`): the part that is not HTTP
   and JSON.
4. `--front-sizes N,...` (optional): fronts of N members with random LeNet weights, faked without
   Ray the way pareto_search/testing/stored_search.py does, registered with `--register-front` and served: worker
   RSS per N, and MB per member (least squares over the real front and these), so one can say
   how many members a server of a given memory holds.

5. `--psl` (or `--psl-only`, which skips steps 1-4): Pareto set learning. A PSL trial on Multi-MNIST (its
   conditioned LeNet, `conditioning: auto` = hyper, random weights) and a single plain LeNet member, faked
   without Ray; `--register-front` of the PSL trial answers requests alternating `weights` [0.85, 0.15] and
   [0.35, 0.65] (preferences no stored point has: the model at exactly that trade-off), `--register` of one
   PSL point answers as the model fixed at its preference; both against the plain member served the same way.
   Goal: a served PSL model's p50 at most 2x the member's.

It prints markdown tables at the end and writes every number to benchmarks/out/serving_latency.json.
Nothing is asserted beyond the answers being well-formed: it measures. Runtime on 2 shared CPU
cores: 130-150 s by default, about 185 s with `--front-sizes 10,100,500`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: pareto-search, mlflow and uvicorn live there
OUT = REPO / "benchmarks" / "out" / "serving_latency.json"
HOST = "127.0.0.1"
# The stored search and the model server come from pareto_search/testing (shared with the test suite).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SEARCH = "serving-bench"
MEMBER_MODEL = "mnist-member"
FRONT_MODEL = "mnist-front"
FRONT_WEIGHTS = ([1.0, 0.0], [0.0, 1.0])  # the front's two ends: every other request switches members
MNIST_ARGS = {"n_val": 500, "n_test": 500, "batch_size": 256}
STOP_SECONDS = 15.0  # SIGTERM, then this long, then SIGKILL


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes -----------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc/<pid>/stat (ppid is the 4th field after the name)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents first."""
    tree, order, todo = _children(), [], [pid]
    while todo:
        current = todo.pop(0)
        order.append(current)
        todo.extend(tree.get(current, []))
    return order


def rss_mb(pid: int) -> float:
    """VmRSS of one process in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stop(proc: subprocess.Popen) -> None:
    """Stop a process we started and everything it started, by pid: SIGTERM, a bounded wait, SIGKILL."""
    pids = process_tree(proc.pid) if proc.poll() is None else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            proc.poll()  # reap our direct child so that it does not linger as a zombie
            time.sleep(0.1)
        pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        if not pids:
            break
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        log(f"warning: process {proc.pid} did not exit")


def run_command(
    cmd: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float, log_file: Path
) -> tuple[float, str]:
    """Run `cmd` to completion within `timeout` seconds: (wall seconds, stdout). stderr goes to `log_file`."""
    start = time.perf_counter()
    with log_file.open("ab") as err:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{' '.join(cmd[:3])} ran past {timeout:.0f} s (log: {log_file})") from None
        finally:
            stop(proc)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}; stderr tail:\n{tail}")
    return wall, stdout.decode()


# -- the search and the registrations ------------------------------------------------------------


def search_config(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": SEARCH,
        "problem": {"name": "multi_mnist", "args": {"n_train": args.n_train, **MNIST_ARGS}},
        "epochs": args.epochs,
        "seed": 0,
        "solvers": [
            {
                "label": "mt2o",
                "solver": "linear",
                "population": {
                    "size": 5,
                    "preferences": [[0.8, 0.2], [0.65, 0.35], [0.5, 0.5], [0.35, 0.65], [0.2, 0.8]],
                    "transfer": {"eps0": 0.3, "period": 10},
                },
                "optimizer": {"name": "adam", "lr": 3.0e-3},
            },
            {"label": "equal-weights", "solver": "linear", "optimizer": {"name": "adam", "lr": 3.0e-3}},
        ],
        "search": {"algorithm": "grid", "num_samples": 1, "scheduler": {"name": "fifo"}},
        "resources": {"cpus_per_trial": 1},
        "storage": str(root / "searches"),
        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "experiment": "serving-bench"},
    }


def environment(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["MLFLOW_REGISTRY_URI"] = tracking_uri  # `models:/` resolves here; never inherit another store's
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `mlflow models serve` execs `uvicorn`
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(REPO)
    return env


def _json_document(stdout: str) -> dict[str, Any]:
    """The JSON object a `--format json` command printed (tolerating stray lines before it)."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        lines = stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("{"))
        return json.loads("\n".join(lines[start:]))


@dataclass
class Selected:
    label: str
    wall: float
    seconds: float  # registered.seconds: the command's own time for the registration
    created: bool
    version: str
    point: str
    model_uri: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def select(
    label: str,
    name: str,
    rule: Sequence[str],
    target: Sequence[str],
    storage: Path,
    env: dict[str, str],
    args: argparse.Namespace,
) -> Selected:
    cmd = [str(BIN / "pareto-search"), "select", name, *rule, *target, "--format", "json", "--storage", str(storage)]
    wall, stdout = run_command(
        cmd, cwd=storage.parent, env=env, timeout=args.command_timeout, log_file=storage.parent / "select.log"
    )
    doc = _json_document(stdout)
    reg = doc["registered"]
    selected = Selected(
        label,
        wall,
        float(reg["seconds"]),
        bool(reg["created"]),
        str(reg["version"]),
        doc["chosen"]["point"],
        reg["model_uri"],
    )
    log(
        f"{label}: {wall:.1f} s wall, registered.seconds {selected.seconds:.2f}, version {selected.version}, "
        f"created {selected.created}, point {selected.point}"
    )
    return selected


# -- serving -------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    startup: float  # seconds from start to the first /ping answer

    def rss(self) -> tuple[float, float]:
        """(RSS of the launcher and its descendants, RSS of the largest process: the uvicorn worker), MB."""
        sizes = [rss_mb(p) for p in process_tree(self.proc.pid)]
        return sum(sizes), max(sizes, default=0.0)


@contextmanager
def serving(model_uri: str, env: dict[str, str], workdir: Path, timeout: float) -> Iterator[Server]:
    """`mlflow models serve` through the tests' helper (which bounds the start and stops the process group)."""
    from pareto_search.testing.model_server import model_server

    with model_server(model_uri, env["MLFLOW_TRACKING_URI"], cwd=workdir, env=env, start_timeout_s=timeout) as server:
        yield Server(server.process, int(server.url.rsplit(":", 1)[1]), server.startup_seconds)


def request_body(inputs: np.ndarray, params: dict[str, Any] | None) -> bytes:
    body: dict[str, Any] = {"inputs": inputs.tolist()}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


@dataclass
class Latency:
    model: str
    batch: int
    requests: int
    body_kb: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_s: float
    images_per_s: float
    answered_by: dict[str, list[str]]  # front model: params -> points that answered

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def measure(
    server: Server,
    model: str,
    inputs: np.ndarray,
    params: Sequence[dict[str, Any] | None],
    requests: int,
    warmup: int,
    timeout: float,
) -> Latency:
    """`warmup` + `requests` sequential POST /invocations on one keep-alive connection, bodies in turn."""
    bodies = [request_body(inputs, p) for p in params]
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
    times: list[float] = []
    answered: dict[str, set[str]] = {json.dumps(p): set() for p in params}
    try:
        measured_start = 0.0
        for i in range(warmup + requests):
            if i == warmup:
                measured_start = time.perf_counter()
            body = bodies[i % len(bodies)]
            start = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                raise RuntimeError(f"{model}: HTTP {response.status}: {data[:500]!r}")
            if i >= warmup:
                times.append(elapsed)
            if i < warmup + len(bodies) or i == warmup + requests - 1:  # check a few answers, untimed
                predictions = json.loads(data)["predictions"]
                for task in ("left", "right"):
                    shape = np.asarray(predictions[task]).shape
                    if shape != (len(inputs), 10):
                        raise RuntimeError(f"{model}: predictions[{task!r}] has shape {shape}")
                if "point" in predictions:
                    answered[json.dumps(params[i % len(params)])].update(predictions["point"])
        total = time.perf_counter() - measured_start
    finally:
        conn.close()
    ms = np.asarray(times) * 1000
    return Latency(
        model=model,
        batch=len(inputs),
        requests=requests,
        body_kb=round(float(np.mean([len(b) for b in bodies])) / 1024, 1),
        p50_ms=round(float(np.percentile(ms, 50)), 2),
        p99_ms=round(float(np.percentile(ms, 99)), 2),
        mean_ms=round(float(ms.mean()), 2),
        requests_per_s=round(requests / total, 1),
        images_per_s=round(requests * len(inputs) / total, 1),
        answered_by={k: sorted(v) for k, v in answered.items() if v},
    )


# -- synthetic fronts ----------------------------------------------------------------------------


def fake_front(root: Path, size: int) -> str:
    """A finished search named front-<size> under `root` whose front holds `size` random-weight LeNets;
    returns its tracking URI."""
    from pareto_search.testing.stored_search import stored_search

    # Points on a quarter circle: all non-dominated (both objectives maximized).
    angles = np.linspace(0.05, np.pi / 2 - 0.05, size)
    values = [(0.5 + 0.45 * float(np.cos(a)), 0.5 + 0.45 * float(np.sin(a))) for a in angles]
    stored_search(
        root,
        values,
        name=f"front-{size}",
        problem="multi_mnist",
        problem_args={"n_train": 64, "n_val": 64, "n_test": 64},
        reference_point=(0.0, 0.0),
        members_per_trial=min(size, 50),
    )
    return f"sqlite:///{root}/mlflow.db"


# -- report --------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(result: dict[str, Any]) -> str:
    parts = [f"search: {result['search']['wall_s']} s wall ({result['search']['front_size']} front members)\n"]
    parts.append(
        table(
            ["command", "wall s", "registered.seconds", "created", "version", "point"],
            [
                [s["label"], f"{s['wall']:.2f}", f"{s['seconds']:.2f}", s["created"], s["version"], s["point"]]
                for s in result["select"]
            ],
        )
    )
    parts.append("")
    server_headers = ["model", "members", "startup s", "RSS tree MB", "RSS worker MB", "after requests: tree / worker"]
    parts.append(
        table(
            server_headers,
            [
                [
                    srv["model"],
                    srv["members"],
                    srv["startup_s"],
                    srv["rss_tree_mb"],
                    srv["rss_worker_mb"],
                    f"{srv['rss_tree_after_requests_mb']} / {srv['rss_worker_after_requests_mb']}",
                ]
                for srv in result["servers"]
            ],
        )
    )
    parts.append("")
    latency_headers = [
        "model",
        "batch",
        "body KB",
        "p50 ms",
        "p99 ms",
        "req/s",
        "img/s",
        "in-process predict p50 (min) ms",
    ]
    parts.append(
        table(
            latency_headers,
            [
                [
                    lat["model"],
                    lat["batch"],
                    lat["body_kb"],
                    lat["p50_ms"],
                    lat["p99_ms"],
                    lat["requests_per_s"],
                    lat["images_per_s"],
                    f"{lat['predict_p50_ms']} ({lat['predict_min_ms']})",
                ]
                for srv in result["servers"]
                for lat in srv["latency"]
            ],
        )
    )
    for srv in result["servers"]:
        for lat in srv["latency"]:
            if lat["answered_by"]:
                parts.append(f"\n{lat['model']} batch {lat['batch']}: params -> member: {lat['answered_by']}")
    if result["front_sizes"]:
        parts.append("")
        parts.append(
            table(
                [
                    "front members",
                    "select --register-front wall s",
                    "registered.seconds",
                    "startup s",
                    "RSS tree MB",
                    "RSS worker MB",
                    "p50 ms (batch 1)",
                ],
                [
                    [
                        f["members"],
                        f["wall_s"],
                        f["registered_s"],
                        f["startup_s"],
                        f["rss_tree_mb"],
                        f["rss_worker_mb"],
                        f["p50_ms_batch1"],
                    ]
                    for f in result["front_sizes"]
                ],
            )
        )
        fit = result["memory_fit"]
        parts.append(
            f"\nworker RSS ≈ {fit['base_mb']} MB + {fit['mb_per_member']} MB × members; launcher "
            f"{fit['launcher_mb']} MB; a 2 GB server (tree) holds ≈ {fit['members_in_2gb']} members"
        )
    machine = result["machine"]
    parts.append(
        f"\ntotal runtime {result['runtime_s']} s on {machine['cpus']} CPUs; 1-min load average "
        f"{machine['loadavg_1min_at_start']} at start, {machine['loadavg_1min_at_end']} at end"
        + (
            " (above the CPU count: other processes shared the cores; expect inflated p99)"
            if max(machine["loadavg_1min_at_start"], machine["loadavg_1min_at_end"]) > (machine["cpus"] or 1)
            else ""
        )
    )
    return "\n".join(parts)


# -- main ----------------------------------------------------------------------------------------


def predict_ms(
    model_uri: str,
    tracking_uri: str,
    inputs: np.ndarray,
    params: Sequence[dict[str, Any] | None],
    args: argparse.Namespace,
) -> dict[int, tuple[float, float]]:
    """(median, min) ms of the loaded pyfunc's predict in this process per batch size: the served time without
    HTTP and JSON (MLflow's schema and params checks included)."""
    import mlflow

    from pareto_search.tracking.connection import restored_env

    # set_*_uri also write MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into os.environ: put them back.
    with restored_env("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        model = mlflow.pyfunc.load_model(model_uri)
    medians = {}
    for batch in args.batches:
        times = []
        for i in range(args.warmup + args.predict_repeats):
            start = time.perf_counter()
            model.predict(inputs[:batch], params=params[i % len(params)])
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        medians[batch] = (round(float(np.median(times)) * 1000, 2), round(min(times) * 1000, 2))
    return medians


def serve_and_measure(
    model: str,
    model_uri: str,
    members: int,
    params: Sequence[dict[str, Any] | None],
    inputs: np.ndarray,
    env: dict[str, str],
    root: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    with serving(model_uri, env, root, args.start_timeout) as server:
        tree, worker = server.rss()
        log(
            f"{model}: serving on port {server.port} after {server.startup:.1f} s; RSS {tree:.0f} MB "
            f"(worker {worker:.0f} MB)"
        )
        latencies = []
        for batch in args.batches:
            lat = measure(server, model, inputs[:batch], params, args.requests, args.warmup, args.request_timeout)
            log(f"{model} batch {batch}: p50 {lat.p50_ms} ms, p99 {lat.p99_ms} ms, {lat.requests_per_s} req/s")
            latencies.append(lat.to_json())
        tree_after, worker_after = server.rss()
    in_process = predict_ms(model_uri, env["MLFLOW_TRACKING_URI"], inputs, params, args)
    for lat in latencies:
        lat["predict_p50_ms"], lat["predict_min_ms"] = in_process[lat["batch"]]
    log(f"{model}: in-process pyfunc predict (p50, min) ms per batch: {in_process}")
    return {
        "model": model,
        "model_uri": model_uri,
        "members": members,
        "port": server.port,
        "startup_s": round(server.startup, 2),
        "rss_tree_mb": round(tree, 1),
        "rss_worker_mb": round(worker, 1),
        "rss_tree_after_requests_mb": round(tree_after, 1),
        "rss_worker_after_requests_mb": round(worker_after, 1),
        "latency": latencies,
    }


def front_size_point(size: int, base: Path, inputs: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    root = base / f"front-{size}"
    root.mkdir()
    start = time.perf_counter()
    uri = fake_front(root, size)
    log(f"front of {size}: faked in {time.perf_counter() - start:.1f} s")
    env = environment(uri)
    sel = select(
        f"select --register-front (front of {size})",
        f"front-{size}",
        ["--weights", "0.5,0.5"],
        ["--register-front", f"front-{size}"],
        root / "searches",
        env,
        args,
    )
    params = [{"weights": w} for w in FRONT_WEIGHTS]
    with serving(sel.model_uri, env, root, args.start_timeout) as server:
        tree, worker = server.rss()
        lat = measure(
            server, f"front-{size}", inputs[:1], params, args.front_requests, args.warmup, args.request_timeout
        )
    log(
        f"front of {size}: startup {server.startup:.1f} s, RSS {tree:.0f} MB (worker {worker:.0f} MB), "
        f"p50 {lat.p50_ms} ms"
    )
    return {
        "members": size,
        "wall_s": round(sel.wall, 2),
        "registered_s": round(sel.seconds, 2),
        "startup_s": round(server.startup, 2),
        "rss_tree_mb": round(tree, 1),
        "rss_worker_mb": round(worker, 1),
        "p50_ms_batch1": lat.p50_ms,
    }


def memory_fit(points: Sequence[tuple[int, float, float]]) -> dict[str, Any]:
    """Least squares worker RSS = base + slope × members over (members, worker MB, tree MB) points."""
    members = np.array([p[0] for p in points], dtype=float)
    worker = np.array([p[1] for p in points])
    slope, base = np.polyfit(members, worker, 1)
    launcher = float(np.median([p[2] - p[1] for p in points]))
    budget = 2048 - launcher - base
    return {
        "points": [list(p) for p in points],
        "base_mb": round(float(base), 1),
        "mb_per_member": round(float(slope), 3),
        "launcher_mb": round(launcher, 1),
        "members_in_2gb": int(budget / slope) if slope > 0 else None,
    }


PSL_WEIGHTS = ([0.85, 0.15], [0.35, 0.65])  # no stored point (11: steps of 0.1) has these preferences


def psl_comparison(base: Path, inputs: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """A served PSL model (any trade-off per request; one point fixed) against one served plain member."""
    from pareto_search.testing.stored_psl_search import stored_psl_search
    from pareto_search.testing.stored_search import stored_search

    mnist = {"n_train": 64, "n_val": 64, "n_test": 64}
    member_root, psl_root = base / "psl-member", base / "psl"
    member_root.mkdir()
    psl_root.mkdir()
    stored_search(
        member_root, [(0.9, 0.9)], name="one", problem="multi_mnist", problem_args=mnist, reference_point=(0, 0)
    )
    stored_psl_search(
        psl_root,
        name="psl",
        problem="multi_mnist",
        problem_args=mnist,
        reference_point=(0.0, 0.0),
        points=11,
        conditioning="auto",
        hidden=64,
        spread=0.01,
    )
    member_env, psl_env = (
        environment(f"sqlite:///{member_root}/mlflow.db"),
        environment(f"sqlite:///{psl_root}/mlflow.db"),
    )
    member = select(
        "select --knee --register (plain member)",
        "one",
        ["--knee"],
        ["--register", "one"],
        member_root / "searches",
        member_env,
        args,
    )
    front = select(
        "select --knee --register-front (PSL trial)",
        "psl",
        ["--knee"],
        ["--register-front", "psl-front"],
        psl_root / "searches",
        psl_env,
        args,
    )
    point = select(
        "select --point --register (PSL point)",
        "psl",
        ["--point", "trial_00000/3"],
        ["--register", "psl-point"],
        psl_root / "searches",
        psl_env,
        args,
    )
    servers = [
        serve_and_measure("member", member.model_uri, 1, [None], inputs, member_env, member_root, args),
        serve_and_measure(
            "psl-front (any weights)",
            front.model_uri,
            11,
            [{"weights": w} for w in PSL_WEIGHTS],
            inputs,
            psl_env,
            psl_root,
            args,
        ),
        serve_and_measure("psl-point (fixed)", point.model_uri, 1, [None], inputs, psl_env, psl_root, args),
    ]
    return {"select": [s.to_json() for s in (member, front, point)], "servers": servers}


def psl_report(psl: dict[str, Any]) -> str:
    base = {lat["batch"]: lat for lat in psl["servers"][0]["latency"]}
    rows = []
    for srv in psl["servers"]:
        for lat in srv["latency"]:
            ratio = lat["p50_ms"] / base[lat["batch"]]["p50_ms"]
            rows.append(
                [
                    lat["model"],
                    lat["batch"],
                    lat["p50_ms"],
                    lat["p99_ms"],
                    lat["requests_per_s"],
                    f"{lat['predict_p50_ms']} ({lat['predict_min_ms']})",
                    f"{ratio:.2f}x",
                    srv["rss_worker_mb"],
                ]
            )
    text = table(
        [
            "model",
            "batch",
            "p50 ms",
            "p99 ms",
            "req/s",
            "in-process predict p50 (min) ms",
            "p50 / member's",
            "RSS worker MB",
        ],
        rows,
    )
    answered = [
        f"{lat['model']} batch {lat['batch']}: {lat['answered_by']}"
        for srv in psl["servers"]
        for lat in srv["latency"]
        if lat["answered_by"]
    ]
    return text + ("\n" + "\n".join(answered) if answered else "")


def parse_sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the search (default 2)")
    parser.add_argument("--n-train", type=int, default=2000, help="training composites (default 2000)")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per (model, batch)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests first")
    parser.add_argument("--batches", type=parse_sizes, default=[1, 64], help="batch sizes (default 1,64)")
    parser.add_argument(
        "--front-sizes",
        type=parse_sizes,
        default=[],
        help="also fake fronts of these sizes (e.g. 10,100,500) and measure RSS per member",
    )
    parser.add_argument("--front-requests", type=int, default=50, help="batch-1 requests per faked front")
    parser.add_argument("--predict-repeats", type=int, default=50, help="in-process predict calls per batch size")
    parser.add_argument("--search-timeout", type=float, default=900, help="seconds for `pareto-search run`")
    parser.add_argument("--command-timeout", type=float, default=300, help="seconds for each `select`")
    parser.add_argument("--start-timeout", type=float, default=180, help="seconds for a server's first /ping")
    parser.add_argument("--request-timeout", type=float, default=60, help="seconds for one HTTP request")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed) for inspection")
    parser.add_argument("--psl", action="store_true", help="also serve a Pareto set learning model (step 5)")
    parser.add_argument("--psl-only", action="store_true", help="step 5 alone: no search, no Multi-MNIST front")
    args = parser.parse_args()
    if min(args.requests, args.front_requests, args.predict_repeats) < 1 or not args.batches:
        parser.error("--requests, --front-requests, --predict-repeats and --batches need at least 1")
    if max(args.batches) > MNIST_ARGS["n_val"]:
        parser.error(f"--batches: at most {MNIST_ARGS['n_val']}")
    for tool in ("pareto-search", "mlflow", "uvicorn"):
        if not (BIN / tool).is_file():
            parser.error(f"{BIN / tool} is missing: run with the project's venv python (.venv/bin/python)")

    begin = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="serving_bench_")
    root = Path(folder)
    log(f"working in {root}")
    try:
        result = run_psl_only(root, args) if args.psl_only else run_benchmark(root, args)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["runtime_s"] = round(time.perf_counter() - begin, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(report(result) if "search" in result else _machine_line(result))
    if "psl" in result:
        print("\n" + psl_report(result["psl"]))
    print(f"\nwritten: {OUT.relative_to(REPO)}")


def _machine(load_at_start: float) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1min_at_start": load_at_start,
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
    }


def _machine_line(result: dict[str, Any]) -> str:
    machine = result["machine"]
    return (
        f"total runtime {result['runtime_s']} s on {machine['cpus']} CPUs; 1-min load average "
        f"{machine['loadavg_1min_at_start']} at start, {machine['loadavg_1min_at_end']} at end"
    )


def run_psl_only(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    load_at_start = round(os.getloadavg()[0], 2)
    from trials.problems import make_problem

    inputs = make_problem("multi_mnist", {"n_train": 64, **MNIST_ARGS}).example_inputs(max(args.batches)).numpy()
    psl = psl_comparison(root, inputs.astype(np.float32), args)
    return {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": _machine(load_at_start), "psl": psl}


def run_benchmark(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    load_at_start = round(os.getloadavg()[0], 2)
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    env = environment(tracking_uri)
    config_file = root / "search.yaml"
    config_file.write_text(yaml.safe_dump(search_config(root, args), sort_keys=False))

    log(f"search: pareto-search run ({args.epochs} epochs, {args.n_train} composites, K=5 + 1) ...")
    wall, stdout = run_command(
        [str(BIN / "pareto-search"), "run", str(config_file)],
        cwd=root,
        env=env,
        timeout=args.search_timeout,
        log_file=root / "run.log",
    )
    (root / "run.out").write_text(stdout)
    front = json.loads(
        run_command(
            [str(BIN / "pareto-search"), "front", SEARCH, "--format", "json", "--storage", str(root / "searches")],
            cwd=root,
            env=env,
            timeout=args.command_timeout,
            log_file=root / "front.log",
        )[1]
    )
    front_size = len(front["points"])
    log(f"search: {wall:.1f} s; front of {front_size} members")

    storage = root / "searches"
    member = select(
        f"select --knee --register {MEMBER_MODEL}", SEARCH, ["--knee"], ["--register", MEMBER_MODEL], storage, env, args
    )
    front_sel = select(
        f"select --knee --register-front {FRONT_MODEL}",
        SEARCH,
        ["--knee"],
        ["--register-front", FRONT_MODEL],
        storage,
        env,
        args,
    )
    again = select(
        f"select --knee --register {MEMBER_MODEL} (again)",
        SEARCH,
        ["--knee"],
        ["--register", MEMBER_MODEL],
        storage,
        env,
        args,
    )
    if again.created or again.version != member.version:
        log(
            f"SURPRISE: the second identical select created={again.created}, version {again.version} "
            f"(first: {member.version})"
        )

    from trials.problems import make_problem

    problem = make_problem("multi_mnist", {"n_train": 64, **MNIST_ARGS})
    inputs = problem.example_inputs(max(args.batches)).numpy().astype(np.float32)

    servers = [
        serve_and_measure(MEMBER_MODEL, member.model_uri, 1, [None], inputs, env, root, args),
        serve_and_measure(
            FRONT_MODEL,
            front_sel.model_uri,
            front_size,
            [{"weights": w} for w in FRONT_WEIGHTS],
            inputs,
            env,
            root,
            args,
        ),
    ]
    sizes = [front_size_point(n, root, inputs, args) for n in args.front_sizes]
    psl = psl_comparison(root, inputs, args) if args.psl else None
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_1min_at_start": load_at_start,
            "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "search": {"wall_s": round(wall, 1), "front_size": front_size, "epochs": args.epochs, "n_train": args.n_train},
        "select": [s.to_json() for s in (member, front_sel, again)],
        "idempotent_ok": (not again.created) and again.version == member.version,
        "servers": servers,
        "front_sizes": sizes,
    }
    if psl is not None:
        result["psl"] = psl
    if sizes:
        points = [
            (1, servers[0]["rss_worker_mb"], servers[0]["rss_tree_mb"]),
            (front_size, servers[1]["rss_worker_mb"], servers[1]["rss_tree_mb"]),
        ]
        points += [(f["members"], f["rss_worker_mb"], f["rss_tree_mb"]) for f in sizes]
        result["memory_fit"] = memory_fit(points)
    return result


if __name__ == "__main__":
    main()
