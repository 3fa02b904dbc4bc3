"""The whole path of docs/serving.md, as a user runs it: `run` -> `front` -> `select --knee --register` ->
`mlflow models serve` -> POST /invocations (slow: a real Ray search and a real model server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pareto_search.serving.network import NetworkSpec
from pareto_search.testing.model_server import invoke, model_server
from trials.problems import make_problem

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "pareto_search.cli"]
TIMEOUT_S = 300  # a 2-trial search with Ray start-up on a busy 2-core machine

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{args}: rc {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    return _run(args, cwd, env).stdout


def test_run_front_select_register_serve(tmp_path) -> None:
    config = yaml.safe_load((ROOT / "configs" / "plugin_example.yaml").read_text())
    config["epochs"] = 2  # the path, not the training, is under test
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
    # The user's working directory holds mlflow.db and mlruns/; the plug-in module comes from PYTHONPATH.
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": tracking_uri}

    ran = _run(["run", "search.yaml"], tmp_path, env)
    # The terminal shows our progress and the front; Ray's and Tune's own output is in the search's driver.log.
    terminal = ran.stdout + ran.stderr
    assert "[plugin-example] trials " in ran.stderr and "model-epochs" in ran.stderr, ran.stderr[-2000:]
    assert "points on the front of" in ran.stdout
    log = (tmp_path / "searches" / "plugin-example" / "pareto_search" / "driver.log").read_text()
    for ray_or_tune in ("Trial status", "Checkpoint successfully created", "Started a local Ray instance"):
        assert ray_or_tune in log and ray_or_tune not in terminal, (ray_or_tune, terminal[-3000:])
    front = json.loads(_cli(["front", "plugin-example", "--format", "json"], tmp_path, env))
    assert len(front["points"]) >= 2
    chosen = json.loads(
        _cli(["select", "plugin-example", "--knee", "--register", "plugin-model", "--format", "json"], tmp_path, env)
    )
    assert (
        chosen["registered"]["version"] == "1" and chosen["registered"]["model_uri"] == "models:/plugin-model@champion"
    )
    assert chosen["chosen"]["point"] in {f"{p['trial_id']}/{p['member']}" for p in front["points"]}

    # the in-process prediction of the chosen member, from the weights the search stored
    problem = make_problem(config["problem"]["name"], config["problem"]["args"])
    inputs = problem.example_inputs(4).numpy()
    run_id, _, path = chosen["chosen"]["model_uri"].removeprefix("runs:/").partition("/")
    import mlflow

    weights = mlflow.MlflowClient(tracking_uri).download_artifacts(run_id, path, str(tmp_path))
    model = NetworkSpec.of(problem, config["problem"]["name"], config["problem"]["args"]).load(weights)
    with torch.no_grad():
        expected = [o.numpy() for o in model(torch.as_tensor(inputs))]

    with model_server("models:/plugin-model@champion", tracking_uri, cwd=tmp_path) as server:
        url = server.url
        status, answer = invoke(url, {"inputs": inputs.tolist()})
    assert status == 200, answer
    for task, values in zip(problem.task_names, expected, strict=True):
        np.testing.assert_allclose(
            np.asarray(answer["predictions"][task], dtype=np.float32), values, rtol=1e-5, atol=1e-6
        )
