"""`mlflow models serve` answers POST /invocations with the registered members' own predictions: a single
selected model, and the whole front as one model choosing the trade-off per request (slow: real servers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pareto_search.cli import main
from pareto_search.testing.model_server import invoke, model_server
from pareto_search.testing.stored_search import PLUGIN, expected_predictions, stored_search
from trials.problems import make_problem

ROOT = Path(__file__).resolve().parents[3]
VALUES = [(0.2, 1.5), (0.5, 0.5), (1.5, 0.2), (1.0, 1.0)]  # knee trial_00001, ends trial_00000 / trial_00002

pytestmark = pytest.mark.slow


@pytest.fixture
def search(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    return stored_search(tmp_path, VALUES)


def _inputs(search, n: int) -> np.ndarray:
    return make_problem(PLUGIN, search.plan.config.problem.args).example_inputs(n).numpy()


def _assert_predictions(answer: dict, expected: dict[str, np.ndarray]) -> None:
    predictions = answer["predictions"]
    for task, values in expected.items():
        np.testing.assert_allclose(np.asarray(predictions[task], dtype=np.float32), values, rtol=1e-5, atol=1e-6)


def test_selected_model_round_trip_and_malformed_requests(search, capsys) -> None:
    assert main(["select", "served", "--storage", str(search.storage), "--knee", "--register", "plugin-model"]) == 0
    capsys.readouterr()
    inputs = _inputs(search, 16)
    with model_server("models:/plugin-model@champion", search.tracking_uri) as server:
        url = server.url
        status, answer = invoke(url, {"inputs": inputs.tolist()})
        assert status == 200
        assert set(answer["predictions"]) == {"task1", "task2"}
        _assert_predictions(answer, expected_predictions(search, "trial_00001/0", inputs))

        # malformed: wrong feature count, then not JSON: a 4xx with a message, never a 5xx
        status, answer = invoke(url, {"inputs": [[0.0, 1.0, 2.0]]})
        assert status == 400 and "does not match expected shape (-1, 8)" in answer["message"]
        status, answer = invoke(url, b"{not json")
        assert 400 <= status < 500 and answer.get("message"), answer
        # ... and the server keeps serving
        status, answer = invoke(url, {"inputs": inputs[:1].tolist()})
        assert status == 200
        _assert_predictions(answer, expected_predictions(search, "trial_00001/0", inputs[:1]))


def test_front_model_chooses_the_member_per_request(search, capsys) -> None:
    assert main(["select", "served", "--storage", str(search.storage), "--knee", "--register-front", "front"]) == 0
    capsys.readouterr()
    inputs = _inputs(search, 8)
    with model_server("models:/front@champion", search.tracking_uri) as server:
        url = server.url
        cases = [
            ({}, "trial_00001/0"),  # no params: the member chosen at registration (the knee)
            ({"weights": [1.0, 0.0]}, "trial_00000/0"),  # all weight on task1_mse: the point best on it
            ({"weights": [0.0, 1.0]}, "trial_00002/0"),
            ({"weights": [0.2, 0.8]}, "trial_00002/0"),
            ({"point": "trial_00000/0"}, "trial_00000/0"),
        ]
        answers = {}
        for params, point in cases:
            body = {"inputs": inputs.tolist(), **({"params": params} if params else {})}
            status, answer = invoke(url, body)
            assert status == 200, answer
            assert answer["predictions"]["point"] == [point] * len(inputs), params
            _assert_predictions(answer, expected_predictions(search, point, inputs))
            answers[point] = np.asarray(answer["predictions"]["task1"])
        assert not np.allclose(answers["trial_00000/0"], answers["trial_00002/0"])  # really different members

        status, answer = invoke(url, {"inputs": inputs.tolist(), "params": {"point": "trial_00003/0"}})
        assert status == 400 and "params.point: no member 'trial_00003/0'" in answer["message"]
        status, answer = invoke(url, {"inputs": inputs.tolist(), "params": {"weights": [1.0, 1.0, 1.0]}})
        assert status == 400 and "params.weights: expected 2 weights" in answer["message"]
        status, answer = invoke(url, {"inputs": inputs.tolist(), "params": {"weights": [0.0, 1.0]}})
        assert status == 200 and answer["predictions"]["point"][0] == "trial_00002/0"
