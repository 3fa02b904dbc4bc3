"""`pareto-search serve MODEL[@ALIAS]`: a registered model served from the project's environment without an
activated venv, answering what the model answers in-process, a malformed request's 400 giving the reason first,
SIGTERM stopping the whole server tree; and the one-line refusals (no server) of names, aliases, versions, a
taken port and a store that does not answer. Searches are stored without Ray
(pareto_search/testing/stored_search.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pareto_search.cli import main
from pareto_search.serving.serve import ModelRef, parse_model
from pareto_search.testing.model_server import invoke, wait_for_ping
from pareto_search.testing.processes import free_port, stop_process_group, tail
from pareto_search.testing.stored_search import PLUGIN, PLUGIN_ARGS, stored_search
from trials.problems import make_problem

ROOT = Path(__file__).resolve().parents[3]
COMMAND = ROOT / ".venv" / "bin" / "pareto-search"
VALUES = [(0.2, 1.5), (0.5, 0.5), (1.5, 0.2)]  # the knee is trial_00001/0
START_TIMEOUT_S = 120.0  # importing MLflow twice (the command, the server), uvicorn, the model: a busy 2-core machine
STOP_TIMEOUT_S = 60.0  # the command's own grace time is 30 s


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A store holding 'plugin-model' version 1 with alias @champion (select --knee --register)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # the plug-in problem is imported from the repository root, as users run it
        search = stored_search(tmp_path_factory.mktemp("serve"), VALUES)
        assert main(["select", "served", "--storage", str(search.storage), "--knee", "--register", "plugin-model"]) == 0
    return search


def _refusal(capsys, *args: str) -> tuple[int, str]:
    code = main(["serve", *args, "--port", str(free_port())])
    captured = capsys.readouterr()
    assert captured.out == "", captured.out  # nothing announced: nothing was started
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return code, lines[0]


def test_model_names_parse() -> None:
    assert parse_model("m") == ModelRef("m")
    assert parse_model("m@champion") == ModelRef("m", alias="champion")
    assert parse_model("models:/m/3") == ModelRef("m", version="3")
    assert parse_model("models:/m@a") == ModelRef("m", alias="a")


def test_unknown_model_alias_and_version_are_one_line_naming_what_exists(registered, capsys) -> None:
    uri = registered.tracking_uri
    code, line = _refusal(capsys, "no-such-model@champion", "--tracking-uri", uri)
    assert code == 2
    assert "no registered model 'no-such-model'" in line and "registered models: plugin-model" in line

    code, line = _refusal(capsys, "plugin-model@nope", "--tracking-uri", uri)
    assert code == 2
    assert "has no alias 'nope'" in line and "its aliases: @champion (version 1)" in line

    code, line = _refusal(capsys, "plugin-model/7", "--tracking-uri", uri)
    assert code == 2 and "has no version 7" in line and "its versions: 1" in line

    code, line = _refusal(capsys, "plugin-model/abc", "--tracking-uri", uri)
    assert code == 2 and "the version must be a positive integer, found 'abc'" in line


def test_the_store_comes_from_mlflow_tracking_uri_like_other_commands(registered, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.tracking_uri)
    code, line = _refusal(capsys, "plugin-model@nope")
    assert code == 2 and "its aliases: @champion (version 1)" in line and registered.tracking_uri in line


def test_a_missing_store_a_taken_port_and_a_silent_server_are_one_line(registered, tmp_path, capsys) -> None:
    missing = f"sqlite:///{tmp_path}/elsewhere/mlflow.db"
    code, line = _refusal(capsys, "plugin-model", "--tracking-uri", missing)
    assert code == 2 and f"the tracking store {missing} does not exist" in line
    assert not (tmp_path / "elsewhere").exists()  # no empty store left behind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "plugin-model", "--tracking-uri", registered.tracking_uri, "--port", str(port)])
    err = capsys.readouterr().err.strip()
    assert (
        code == 2
        and err == f"pareto-search serve: error: --port: 127.0.0.1:{port} is already in use; pick another --port"
    )

    silent = f"http://127.0.0.1:{free_port()}"  # nothing listens there: refused at once
    started = time.monotonic()
    code, line = _refusal(capsys, "plugin-model", "--tracking-uri", silent)
    assert code == 1 and f"the tracking store {silent} did not answer" in line
    assert time.monotonic() - started < 30


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc), whatever session it started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_serve_without_activation_answers_like_the_model_and_stops_on_sigterm(registered, tmp_path) -> None:
    uri = registered.tracking_uri
    port = free_port()
    # No venv on PATH (as after a plain login): `mlflow models serve` alone would not find uvicorn here.
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT)))
    assert shutil.which("uvicorn", path=path) is None and shutil.which("pareto-search", path=path) is None
    env = {"PATH": path or "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": uri}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(COMMAND), "serve", "plugin-model@champion", "--port", str(port)],
            cwd=tmp_path,  # not the repository: the model carries its plug-in code
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url, process, START_TIMEOUT_S, str(log))
        first = log.read_text().splitlines()[0]
        assert first == f"serving plugin-model@champion (version 1) from {uri} on {url}/invocations", first

        inputs = make_problem(PLUGIN, PLUGIN_ARGS).example_inputs(6).numpy()
        status, answer = invoke(url, {"inputs": inputs.tolist()})
        assert status == 200, answer
        mlflow.set_tracking_uri(uri)  # conftest resets it
        expected = mlflow.pyfunc.load_model("models:/plugin-model@champion").predict(inputs)
        assert set(answer["predictions"]) == set(expected) == {"task1", "task2"}
        for task, values in expected.items():
            np.testing.assert_allclose(np.asarray(answer["predictions"][task]), values, rtol=1e-5, atol=1e-5)

        # 20 rows of 3 numbers where the model takes 8: the reason first, not a dump of the request
        status, answer = invoke(url, {"inputs": [[0.5, 1.5, 2.5]] * 20})
        assert status == 400, answer
        assert answer["message"].startswith("inputs: Shape of input (20, 3) does not match expected shape (-1, 8)"), (
            answer
        )
        assert "\n" not in answer["message"] and "0.5" not in answer["message"], answer
        status, answer = invoke(url, {"inputs": inputs[:1].tolist()})  # ... and it keeps serving
        assert status == 200

        tree = _descendants(process.pid)
        assert tree, "the server runs below the command"
        os.kill(process.pid, signal.SIGTERM)  # the command alone, as a supervisor would: it forwards
        assert process.wait(timeout=STOP_TIMEOUT_S) == 143, tail(log)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in tree if _alive(pid)], f"left running: {tree}\n{tail(log)}"
        with socket.socket() as again:  # the port is free again: no worker listens (TIME_WAIT is no listener)
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
            again.listen()
    finally:
        leftover = _descendants(process.pid)  # on a failure: the command forwards its SIGTERM, the rest is killed
        stop_process_group(process)
        for pid in leftover:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
