"""`pareto-search select`: rules through the CLI, one-line refusals, registration in the MLflow Model
Registry (tags, alias, idempotence, the run link, the marked front plot) and a plug-in model loading
in a fresh process. Searches are stored without Ray (pareto_search/testing/stored_search.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pareto_search.cli import main
from pareto_search.testing.stored_search import PLUGIN, PLUGIN_ARGS, expected_predictions, stored_search
from trials.problems import make_problem

ROOT = Path(__file__).resolve().parents[3]
# (task1_mse, task2_mse): t1 is the knee, t0 / t2 the ends, t3 is dominated by t1
VALUES = [(0.2, 1.5), (0.5, 0.5), (1.5, 0.2), (1.0, 1.0)]


@pytest.fixture
def search(tmp_path, monkeypatch):
    """A fresh store per test: for tests that register models."""
    monkeypatch.chdir(ROOT)  # the plug-in problem is imported from the repository root, as users run it
    return stored_search(tmp_path, VALUES)


@pytest.fixture(scope="module")
def _shared_search(tmp_path_factory):
    return stored_search(tmp_path_factory.mktemp("readonly"), VALUES)


@pytest.fixture
def readonly_search(_shared_search, monkeypatch):
    """One store for the tests that must not write anything (they check that nothing was written)."""
    monkeypatch.chdir(ROOT)
    return _shared_search


def _select(search, *args: str) -> list[str]:
    return ["select", search.plan.name, "--storage", str(search.storage), *args]


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _client(search) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(search.tracking_uri, registry_uri=search.tracking_uri)


def test_each_rule_through_the_cli(readonly_search, capsys) -> None:
    search = readonly_search
    assert main(_select(search, "--knee", "--format", "json")) == 0
    data = _json(capsys)
    assert data["chosen"]["point"] == "trial_00001/0"
    assert [p["point"] for p in data["runners_up"]] == ["trial_00000/0", "trial_00002/0"]
    assert data["chosen"]["model_uri"].startswith("runs:/")

    assert main(_select(search, "--weights", "1,0", "--format", "json")) == 0
    assert _json(capsys)["chosen"]["point"] == "trial_00000/0"  # best task1_mse
    assert main(_select(search, "--weights", "0,1", "--format", "json")) == 0
    assert _json(capsys)["chosen"]["point"] == "trial_00002/0"

    assert main(_select(search, "--constraint", "task1_mse<=0.6", "--format", "json")) == 0
    data = _json(capsys)
    assert data["chosen"]["point"] == "trial_00001/0" and data["rule"] == "best task2_mse subject to task1_mse<=0.6"

    assert main(_select(search, "--point", "trial_00003/0")) == 0  # dominated, but named
    out = capsys.readouterr().out
    assert "selected    trial_00003/0" in out and "not on the front" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--constraint", "task1_mse<=0.1"],
            "no point on the front meets task1_mse<=0.1; best achievable on the front: task1_mse 0.2",
        ),
        (["--constraint", "acc>=0.9"], "unknown objective 'acc'; valid: task1_mse, task2_mse"),
        (["--weights", "1,2,3"], "expected 2 weights (one per objective: task1_mse, task2_mse), found 3"),
        (["--point", "nope/0"], "--point: no evaluated point nope/0; points: trial_00000/0"),
        (["--knee", "--optimize", "task1_mse"], "--optimize goes with --constraint"),
        (["--knee", "--register", "it's"], "a model name must be non-empty and have no quotes"),
    ],
)
def test_bad_selections_are_refused_in_one_line_before_anything_is_written(
    readonly_search, capsys, args, message
) -> None:
    search = readonly_search
    client = _client(search)
    before = {a.path for a in client.list_artifacts(search.parent_run_id)}
    assert main(_select(search, *args, "--register", "m") if "--register" not in args else _select(search, *args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert client.search_registered_models() == []
    assert {a.path for a in client.list_artifacts(search.parent_run_id)} == before


def test_exactly_one_rule_is_required(readonly_search, capsys) -> None:
    search = readonly_search
    for args, message in (
        ((), "one of the arguments --weights --knee --constraint --point is required"),
        (("--knee", "--weights", "1,1"), "argument --weights: not allowed with argument --knee"),
    ):
        with pytest.raises(SystemExit) as info:
            main(_select(search, *args))
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


def test_a_search_without_a_front_says_so(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    empty = stored_search(tmp_path, [])
    assert main(_select(empty, "--knee")) == 2
    assert "search 'served' has no evaluated point yet" in capsys.readouterr().err
    assert main(["select", "missing", "--knee", "--storage", str(tmp_path)]) == 2
    assert "search 'missing' not found" in capsys.readouterr().err


def test_a_problem_without_inputs_cannot_be_registered(tmp_path, capsys) -> None:
    toy = stored_search(tmp_path, [(0.2, 0.8), (0.8, 0.2)], problem="toy2d", problem_args={})
    assert main(_select(toy, "--knee", "--register", "toy")) == 2
    assert "problem 'toy2d' takes no input" in capsys.readouterr().err
    assert _client(toy).search_registered_models() == []


def test_register_tags_links_and_is_idempotent(search, capsys) -> None:
    client = _client(search)
    assert main(_select(search, "--knee", "--register", "plugin-model", "--format", "json")) == 0
    first = _json(capsys)["registered"]
    assert first["created"] is True and first["version"] == "1" and first["alias"] == "champion"
    version = client.get_model_version_by_alias("plugin-model", "champion")
    trial_run = first["source_run_id"]
    assert version.run_id == trial_run  # the version links back to the trial's run
    assert client.get_run(trial_run).data.tags["pareto_search.trial_id"] == "trial_00001"
    tags = version.tags
    assert tags["pareto_search.search"] == "served"
    assert tags["pareto_search.trial_id"] == "trial_00001" and tags["pareto_search.member"] == "0"
    assert tags["pareto_search.objective.task1_mse"] == "0.5" and tags["pareto_search.objective.task2_mse"] == "0.5"
    assert tags["pareto_search.selection_rule"] == "knee (pymoo HighTradeoffPoints)"
    # the parent run's front plot is redrawn with the selection, which is recorded there too
    parent = client.get_run(search.parent_run_id)
    assert parent.data.tags["pareto_search.selected"] == "trial_00001/0"
    assert {"front.png", "front.html", "selection.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}

    # the same point again (by another rule): no new version, the alias stays on it
    assert main(_select(search, "--weights", "0.5,0.5", "--register", "plugin-model", "--format", "json")) == 0
    again = _json(capsys)["registered"]
    assert again["created"] is False and again["version"] == "1"
    assert len(client.search_model_versions("name = 'plugin-model'")) == 1

    # another point: a second version, and the alias moves to it; back to the first: the alias moves back
    assert main(_select(search, "--weights", "1,0", "--register", "plugin-model", "--format", "json")) == 0
    assert _json(capsys)["registered"]["version"] == "2"
    assert str(client.get_model_version_by_alias("plugin-model", "champion").version) == "2"
    assert main(_select(search, "--knee", "--register", "plugin-model", "--alias", "champion")) == 0
    assert "already registered as 'plugin-model' version 1, alias @champion" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias("plugin-model", "champion").version) == "1"
    assert len(client.search_model_versions("name = 'plugin-model'")) == 2


def test_plugin_model_loads_in_a_fresh_process_with_its_code(search, tmp_path, capsys) -> None:
    assert main(_select(search, "--knee", "--register", "plugin-model")) == 0
    capsys.readouterr()
    inputs = make_problem(PLUGIN, PLUGIN_ARGS).example_inputs(5).numpy()
    np.save(tmp_path / "inputs.npy", inputs)
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        import mlflow.pyfunc
        assert not any(p.rstrip("/").endswith("{ROOT.name}") for p in sys.path if p), sys.path
        model = mlflow.pyfunc.load_model("models:/plugin-model@champion")
        import examples.plugin_problem as plugin  # importable only from the model's carried code
        assert "/code" in plugin.__file__, plugin.__file__
        out = model.predict(np.load("{tmp_path / "inputs.npy"}"))
        print(json.dumps({{k: v.tolist() for k, v in out.items()}}))
        """
    )
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": search.tracking_uri}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=fresh, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    expected = expected_predictions(search, "trial_00001/0", inputs)
    assert set(served) == {"task1", "task2"}
    for task, values in expected.items():
        np.testing.assert_allclose(np.asarray(served[task]), values, rtol=1e-5, atol=1e-6)


def test_registered_model_has_signature_and_validation_input_example(search, capsys) -> None:
    assert main(_select(search, "--knee", "--register", "plugin-model")) == 0
    capsys.readouterr()
    mlflow.set_tracking_uri(search.tracking_uri)  # conftest resets it
    info = mlflow.models.get_model_info("models:/plugin-model@champion")
    inputs = info.signature.inputs.to_dict()[0]
    assert inputs["type"] == "tensor" and list(inputs["tensor-spec"]["shape"]) == [-1, 8]
    assert {o["name"] for o in info.signature.outputs.to_dict()} == {"task1", "task2"}
    model = mlflow.pyfunc.load_model("models:/plugin-model@champion")
    example = model.input_example
    validation = make_problem(PLUGIN, PLUGIN_ARGS).example_inputs(2).numpy()
    np.testing.assert_allclose(np.asarray(example), validation, rtol=1e-6)
