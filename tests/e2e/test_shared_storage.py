"""A search on shared storage: `storage: s3://…` against a real S3-compatible server (moto) on 127.0.0.1.

Tune's checkpoints and experiment state, and our own files (plan, front, affinity), all live in the bucket;
`front`, `compare`, `groups` and `select` read the search from the URI. (Resuming a search copied to S3 is in
test_search_service.py.) Storage that cannot be used is refused in one line before anything is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from pareto_search.cli import main
from pareto_search.search.runner import CHECKPOINTS_KEPT
from pareto_search.testing.processes import free_port
from tests.support.s3_server import S3Server, s3_server

CLI = [sys.executable, "-m", "pareto_search.cli"]
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch) -> S3Server:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


def _config(name: str, storage: str, tracking: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 20}},
        "epochs": 2,
        "solvers": [
            {"label": "pop", "solver": "linear", "population": {"size": 3}, "optimizer": {"lr": 0.02}},
            {"label": "single", "solver": "linear", "optimizer": {"lr": 0.02}},
        ],
        "search": {"algorithm": "grid", "num_samples": 1},
        "diagnostics": {"affinity_every": 5},  # what `groups` reads, kept next to the front
        "storage": storage,
        "tracking": {"uri": tracking, "experiment": "on-s3"},
        **overrides,
    }


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.mark.slow
def test_a_search_on_s3_is_read_back_by_every_command(tmp_path, s3_env: S3Server) -> None:
    storage = s3_env.uri("team", "searches")
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    for name, overrides in (("ons3", {}), ("ons3b", {"epochs": 1, "seed": 1})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(_config(name, storage, tracking, **overrides)))
        ran = _cli(["run", f"{name}.yaml"], tmp_path)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

    keys = s3_env.keys("team/searches/ons3/")
    ours = {k.rsplit("/", 1)[-1] for k in keys if "/pareto_search/" in k}
    assert {"search.json", "front_points.json", "affinity.json"} <= ours, keys
    assert any(k.endswith("experiment_state.json") or "experiment_state" in k for k in keys), keys
    checkpoints = [k for k in keys if k.endswith("/member_0.pt")]
    # the newest two checkpoints of each of the 2 trials (the older is the fallback for a damaged newest), sealed
    assert len(checkpoints) == 2 * CHECKPOINTS_KEPT, keys
    assert len([k for k in keys if k.endswith("/manifest.json")]) == len(checkpoints), keys
    assert not (tmp_path / "searches").exists(), "nothing of the search may land in the working directory"

    # `front` reads the bucket and agrees with what the search published to MLflow.
    front = _cli(["front", "ons3", "--format", "json", "--storage", storage], tmp_path)
    assert front.returncode == 0, front.stderr
    stored = json.loads(front.stdout)
    client = MlflowClient(tracking)
    parent = client.search_runs(
        [client.get_experiment_by_name("on-s3").experiment_id],
        "tags.`pareto_search.search` = 'ons3' and tags.`pareto_search.kind` = 'search'",
    )[0]
    tracked = json.loads(Path(client.download_artifacts(parent.info.run_id, "front.json", str(tmp_path))).read_text())
    assert tracked["points"] == stored["points"] and tracked["hypervolume"] == stored["hypervolume"] > 0
    # the epochs kept on the front have their weights in the bucket, and no file of a point off the front stays
    weights = {k for k in keys if "/pareto_search/epoch_weights/" in k and not k.endswith("/")}  # no folder marker
    kept = {p["model_uri"].removeprefix(s3_env.uri() + "/") for p in stored["points"] if "@e" in p["point"]}
    assert kept <= weights and len(weights) <= len(stored["points"]), (kept, weights)

    compared = _cli(["compare", "ons3", "ons3b", "--storage", storage, "--no-mlflow"], tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert "ons3b" in compared.stdout and f"{stored['hypervolume']:.6f}" in compared.stdout  # as compare prints it

    groups = _cli(["groups", "ons3", "--budget", "2", "--storage", storage], tmp_path)
    assert groups.returncode == 0, groups.stderr
    assert "f1" in groups.stdout and "f2" in groups.stdout

    selected = _cli(["select", "ons3", "--knee", "--format", "json", "--storage", storage], tmp_path)
    assert selected.returncode == 0, selected.stderr
    choice = json.loads(selected.stdout)
    on_front = {(p["trial_id"], p["member"]) for p in stored["points"]}
    assert (choice["chosen"]["trial_id"], choice["chosen"]["member"]) in on_front


def _refused(tmp_path: Path, argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "searches").exists()
    return err


def _write(tmp_path: Path, storage: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config("refused", storage, f"sqlite:///{tmp_path}/mlflow.db")))
    return str(path)


def test_an_unsupported_storage_scheme_is_refused_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    err = _refused(tmp_path, ["run", _write(tmp_path, "ftp://host/searches")], capsys)
    assert "`storage`: scheme 'ftp://'" in err and "allowed: a local path, file:///…, s3://…" in err
    err = _refused(tmp_path, ["front", "x", "--storage", "s3:///no-bucket"], capsys)
    assert "names no bucket" in err


def test_storage_that_does_not_answer_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for name, value in {"AWS_ENDPOINT_URL": nobody, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    err = _refused(tmp_path, ["run", _write(tmp_path, "s3://shared/searches")], capsys)
    assert "`storage`: storage s3://shared/searches/refused cannot be read" in err and "connect" in err.lower()
    err = _refused(tmp_path, ["front", "refused", "--storage", "s3://shared/searches"], capsys)
    assert "`--storage`: storage s3://shared/searches/refused cannot be read" in err


def test_a_missing_bucket_is_named(tmp_path, monkeypatch, capsys, s3_env: S3Server) -> None:
    monkeypatch.chdir(tmp_path)
    err = _refused(tmp_path, ["run", _write(tmp_path, "s3://no-such-bucket/searches")], capsys)
    assert "bucket 'no-such-bucket' does not exist" in err
    assert os.environ["AWS_ENDPOINT_URL"] == s3_env.endpoint
