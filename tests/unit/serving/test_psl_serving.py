"""A Pareto set learning trial's model (method: psl) served: `--register-front` holds its ONE conditioned model
and a request's weights get exactly that trade-off's predictions; `--register` of a point, and `select --weights
--exact`, give the model fixed at a preference. The trial is stored as a search stores it (one conditioned model's
file that every point names, the point's preference in its data), without Ray; and as searches stored it before
(a file per point)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from pareto_search.cli import EXIT_USAGE, main
from pareto_search.testing.model_server import invoke, model_server
from pareto_search.testing.stored_psl_search import stored_psl_search
from pareto_search.testing.stored_search import PLUGIN, PLUGIN_ARGS, stored_search
from trials.problems import make_problem
from trials.psl.conditioning import AtPreference, Conditioned

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def psl(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    return stored_psl_search(
        tmp_path, name="psl-served", problem=PLUGIN, problem_args=PLUGIN_ARGS, reference_point=(2.0, 2.0)
    )


def _inputs(n: int) -> np.ndarray:
    return make_problem(PLUGIN, PLUGIN_ARGS).example_inputs(n).numpy()


def _fixed(conditioned: Conditioned, preference: list[float], inputs: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outputs = AtPreference(conditioned, preference)(torch.as_tensor(inputs))
    return {t: o.numpy() for t, o in zip(("task1", "task2"), outputs, strict=True)}


def _assert_equal(predictions: dict, expected: dict[str, np.ndarray]) -> None:
    for task, values in expected.items():
        np.testing.assert_allclose(np.asarray(predictions[task], dtype=np.float32), values, rtol=1e-5, atol=1e-5)


def _assert_registered_predicts(search, name: str, conditioned: Conditioned, preference: list[float], capsys) -> None:
    """Registered model `name` predicts as the conditioned model fixed at `preference`."""
    capsys.readouterr()
    mlflow.set_tracking_uri(search.tracking_uri)  # conftest resets it
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    inputs = _inputs(8)
    _assert_equal(model.predict(inputs), _fixed(conditioned, preference, inputs))


@pytest.mark.slow
def test_served_psl_front_answers_any_preference_exactly(psl, capsys) -> None:
    search, conditioned = psl
    assert main(["select", "psl-served", "--storage", str(search.storage), "--knee", "--register-front", "f"]) == 0
    capsys.readouterr()
    # the model holds the conditioned model once, not once per point
    mlflow.set_tracking_uri(search.tracking_uri)  # conftest resets it
    folder = Path(mlflow.artifacts.download_artifacts("models:/f@champion"))
    assert sorted(p.name for p in (folder / "artifacts" / "weights").iterdir()) == ["conditioned_0.pt"]
    inputs = _inputs(8)
    with model_server("models:/f@champion", search.tracking_uri) as server:
        answers = {}
        for weights in ([0.9, 0.1], [0.1, 0.9]):
            status, answer = invoke(server.url, {"inputs": inputs.tolist(), "params": {"weights": weights}})
            assert status == 200, answer
            label = "@pref=" + ",".join(f"{w:.6g}" for w in weights)
            assert all(p.endswith(label) for p in answer["predictions"]["point"]), answer["predictions"]["point"]
            _assert_equal(answer["predictions"], _fixed(conditioned, weights, inputs))
            answers[tuple(weights)] = np.asarray(answer["predictions"]["task1"])
        assert not np.allclose(answers[(0.9, 0.1)], answers[(0.1, 0.9)], atol=1e-3)  # really another trade-off
        # neither is a stored point's preference: the stored (1, 0) and (0.75, 0.25) answer otherwise
        assert not np.allclose(answers[(0.9, 0.1)], _fixed(conditioned, [1.0, 0.0], inputs)["task1"], atol=1e-3)
        assert not np.allclose(answers[(0.9, 0.1)], _fixed(conditioned, [0.75, 0.25], inputs)["task1"], atol=1e-3)
        for bad, reason in (
            ([1.0, 1.0, 1.0], "params.weights: expected 2 weights"),
            ([-0.5, 1.5], "params.weights: weights must be finite, >= 0 and not all 0"),
            ([0.0, 0.0], "params.weights: weights must be finite, >= 0 and not all 0"),
        ):
            status, answer = invoke(server.url, {"inputs": inputs.tolist(), "params": {"weights": bad}})
            assert status == 400 and answer["message"].startswith(reason), (bad, answer)
            assert "\n" not in answer["message"]


def test_a_registered_psl_point_predicts_as_the_model_fixed_at_its_preference(psl, capsys) -> None:
    search, conditioned = psl
    storage = str(search.storage)
    assert main(["select", "psl-served", "--storage", storage, "--point", "trial_00000/1", "--register", "p"]) == 0
    _assert_registered_predicts(search, "p", conditioned, [0.75, 0.25], capsys)


def test_a_point_of_a_search_stored_before_the_shared_file_still_registers(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    search, conditioned = stored_psl_search(
        tmp_path, name="psl-old", problem=PLUGIN, problem_args=PLUGIN_ARGS, reference_point=(2.0, 2.0), shared=False
    )
    storage = str(search.storage)
    assert main(["select", "psl-old", "--storage", storage, "--point", "trial_00000/1", "--register", "old"]) == 0
    _assert_registered_predicts(search, "old", conditioned, [0.75, 0.25], capsys)


def test_select_exact_evaluates_and_registers_that_preference(psl, capsys) -> None:
    search, conditioned = psl
    storage = str(search.storage)
    assert main(["select", "psl-served", "--storage", storage, "--weights", "0.7,0.3", "--exact"]) == 0
    text = capsys.readouterr().out
    problem = make_problem(PLUGIN, PLUGIN_ARGS)
    metrics = problem.evaluate(AtPreference(conditioned, [0.7, 0.3]), "val", torch.device("cpu"))
    assert "evaluated at exactly the preference [0.7, 0.3]" in text and "on the validation split" in text
    assert f"task1_mse {metrics['task1_mse']:.4f}" in text and f"task2_mse {metrics['task2_mse']:.4f}" in text

    assert (
        main(["select", "psl-served", "--storage", storage, "--weights", "0.7,0.3", "--exact", "--register", "x"]) == 0
    )
    _assert_registered_predicts(search, "x", conditioned, [0.7, 0.3], capsys)


def test_exact_needs_weights_and_a_psl_point(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    plain = stored_search(tmp_path, [(0.2, 1.5), (1.5, 0.2)])
    capsys.readouterr()  # MLflow's own lines while the search was stored
    storage = str(plain.storage)
    assert main(["select", "served", "--storage", storage, "--knee", "--exact"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() == (
        "pareto-search select: error: --exact goes with --weights (the preference to evaluate a PSL trial's model at)"
    )
    assert main(["select", "served", "--storage", storage, "--weights", "0.5,0.5", "--exact"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a model of one trade-off, not a Pareto set learning" in err
