"""The Python API (pareto_search.api): the README's example runs as written, selections are the command's own,
bad input is one ConfigError line before anything is written, and `import pareto_search` stays cheap."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest

import pareto_search
from pareto_search import ConfigError, open_search, run
from pareto_search.cli import DEFAULT_ALIAS, main
from pareto_search.testing.stored_search import stored_search

ROOT = Path(__file__).resolve().parents[2]
MARKER = "# Python API example"
# (task1_mse, task2_mse): t1 is the knee, t0 / t2 the ends, t3 is dominated by t1 (as in test_select_register)
VALUES = [(0.2, 1.5), (0.5, 0.5), (1.5, 0.2), (1.0, 1.0)]


def readme_example() -> str:
    """The README's fenced python block that starts with the marker line."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(MARKER)]
    assert len(found) == 1, f"README.md has {len(found)} python blocks starting with {MARKER!r}"
    return found[0]


@pytest.mark.slow
def test_readme_example_runs_selects_and_registers(tmp_path, monkeypatch, capsys) -> None:
    """The example as a user runs it: a real search (Ray, MLflow), its front, the knee, registered @champion."""
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts (./mlruns) land here
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # and the example's temporary folder
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (Python API example)", "exec"), namespace)
    search, selection, published = namespace["search"], namespace["selection"], namespace["published"]
    assert search.failures == [] and search.outcome is not None and search.outcome.trials >= 1
    assert Path(str(search.storage)).is_relative_to(tmp_path)

    client = mlflow.MlflowClient(search.tracking_uri, registry_uri=search.tracking_uri)
    version = client.get_model_version_by_alias(published.version.name, "champion")
    assert str(version.version) == published.version.version and published.version.alias == "champion"
    assert version.tags["pareto_search.point"] == selection.point

    capsys.readouterr()
    assert main(["front", search.name, "--storage", str(search.storage), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert selection.point in {p["point"] for p in printed["points"]}  # the knee is a point of the front
    assert search.hypervolume() == printed["hypervolume"] > 0
    points = search.points()
    assert [p.point for p in points] == [p["point"] for p in printed["points"]]
    assert all(p.params.get("optimizer.lr") == 1.0e-2 for p in points)  # the trial's hyperparameters


@pytest.fixture(scope="module")
def _stored(tmp_path_factory):
    return stored_search(tmp_path_factory.mktemp("api"), VALUES)


@pytest.fixture
def stored(_stored, monkeypatch):
    monkeypatch.chdir(ROOT)  # the plug-in problem is imported from the repository root
    return _stored


@pytest.mark.parametrize(
    ("api", "cli"),
    [
        ({"knee": True}, ["--knee"]),
        ({"weights": [1, 0]}, ["--weights", "1,0"]),
        ({"weights": "0,1"}, ["--weights", "0,1"]),
        ({"constraints": "task1_mse<=0.6"}, ["--constraint", "task1_mse<=0.6"]),
        (
            {"constraints": ["task1_mse<=1.2"], "optimize": "task1_mse"},
            ["--constraint", "task1_mse<=1.2", "--optimize", "task1_mse"],
        ),
        ({"point": "trial_00003/0"}, ["--point", "trial_00003/0"]),
    ],
)
def test_select_is_the_commands_selection(stored, capsys, api, cli) -> None:
    search = open_search(stored.plan.name, stored.storage)
    selection = search.select(**api)
    assert main(["select", search.name, "--storage", str(stored.storage), "--format", "json", *cli]) == 0
    assert selection.to_json() == json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"exactly one rule of weights, knee, constraint, point; found none"),
        ({"knee": True, "weights": [1, 0]}, r"exactly one rule .*; found weights, knee"),
        ({"weights": [1, 0, 0]}, r"--weights: expected 2 weights \(one per objective: task1_mse, task2_mse\)"),
        ({"knee": True, "optimize": "task1_mse"}, r"--optimize goes with --constraint"),
        ({"point": "trial_00009/0"}, r"--point: no evaluated point trial_00009/0"),
        ({"constraints": "task1_mse<=0.01"}, r"no point on the front meets task1_mse<=0.01"),
    ],
)
def test_select_refuses_in_one_line(stored, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        open_search(stored.plan.name, stored.storage).select(**kwargs)
    assert "\n" not in str(info.value)


def test_register_refuses_a_bad_name_before_anything(stored) -> None:
    search = open_search(stored.plan.name, stored.storage)
    client = mlflow.MlflowClient(stored.tracking_uri, registry_uri=stored.tracking_uri)
    with pytest.raises(ConfigError, match=r"^model_name: the registry refuses the model name 'a/b'"):
        search.register(search.select(knee=True), "a/b")
    with pytest.raises(ConfigError, match=r"^--alias: the registry refuses the alias 'latest'"):
        search.register(search.select(knee=True), "fine", alias="latest")
    assert client.search_registered_models() == []


def test_bad_config_raises_one_line_and_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = {
        "name": "api-bad",
        "problem": {"name": "toy2d"},
        "reference_point": [1.0, 1.0],
        "epochs": 0,
        "solvers": [{"solver": "linear"}],
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db"},
    }
    with pytest.raises(ConfigError) as info:
        run(config)
    assert str(info.value) == "`epochs`: Input should be greater than or equal to 1, found 0"  # one line, the field
    with pytest.raises(ConfigError, match=r"^`name`: .*found 'no spaces allowed'"):
        run({**config, "epochs": 1}, name="no spaces allowed")
    with pytest.raises(ConfigError, match=r"^config file 'missing.yaml' not found$"):
        run("missing.yaml")
    with pytest.raises(ConfigError, match=r"^search 'nowhere' not found: no .*searches/nowhere/pareto_search"):
        open_search("nowhere", tmp_path / "searches")
    assert list(tmp_path.iterdir()) == []  # no storage folder, no MLflow store, no artifacts


def test_import_is_cheap_and_exports_the_api() -> None:
    code = "import sys, pareto_search; print(sorted({'torch', 'ray', 'mlflow', 'numpy', 'pymoo'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"
    assert {"run", "resume", "open_search", "Search", "ConfigError"} <= set(pareto_search.__all__)
    assert pareto_search.DEFAULT_ALIAS == DEFAULT_ALIAS  # the command's default alias, one value
