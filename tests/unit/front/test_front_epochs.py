"""The global front keeps a model's best epochs, not only its last: a better earlier epoch stays on the front
(``TRIAL/mK@eE``) with its own weights, the global HV never goes down, weights files stay bounded by the front,
and `select` / `select --register` work on kept epochs. Test values ride along for the report (val HV and test
HV of the front). The end-to-end test runs a real search (Ray, MLflow) on a problem that gets worse after
epoch 2 (tests/support/fault_problems.py: ``overfitting``)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from pareto_search.cli import main
from pareto_search.config import parse_config
from pareto_search.front.global_front import FORMAT, GlobalFront, kept_epoch, point_id
from pareto_search.front.pareto import Objective
from pareto_search.front.selection import PointRule
from pareto_search.plan import make_plan
from pareto_search.serving.network import NetworkSpec
from pareto_search.testing.stored_search import PLUGIN, PLUGIN_ARGS, stored_search
from trials.problems import make_problem

REPO = Path(__file__).resolve().parents[3]
OBJECTIVES = [Objective("f1", "min"), Objective("f2", "min")]


def _front(tmp_path: Path) -> GlobalFront:
    return GlobalFront("s", OBJECTIVES, [1.0, 1.0], tmp_path / "pareto_search" / "front_points.json")


def _report(front: GlobalFront, trial: str, epoch: int, rows: list, weights: bool = True) -> None:
    """One result of `trial` at `epoch` (a row per member), then its checkpoint, as the driver sees them."""
    members = [
        {"member": k, "values": v, "epoch": epoch, "test_values": [x + 0.01 for x in v]} for k, v in enumerate(rows)
    ]
    front.update(trial, members)
    if weights:
        front.keep_weights(trial, epoch, lambda k: f"{trial}/m{k}@{epoch}".encode())


def _weights_files(tmp_path: Path) -> set[str]:
    return {p.relative_to(tmp_path / "pareto_search").as_posix() for p in tmp_path.rglob("*.pt")}


def test_points_of_one_conditioned_model_share_one_weights_file_until_the_last_of_them_leaves(tmp_path) -> None:
    front = _front(tmp_path)

    def report(trial: str, epoch: int, rows: list) -> None:  # a PSL trial: every point is the one model's file
        front.update(trial, [{"member": k, "values": v, "epoch": epoch} for k, v in enumerate(rows)])
        front.keep_weights(trial, epoch, lambda k: f"{trial}@{epoch}".encode(), lambda k: "conditioned.pt")

    report("p", 1, [[0.2, 0.8], [0.5, 0.5], [0.8, 0.2]])
    assert _weights_files(tmp_path) == {"epoch_weights/p/conditioned_e1.pt"}  # one copy for the three points
    assert {front.points[f"p/m{k}"].data["weights_file"] for k in range(3)} == {"epoch_weights/p/conditioned_e1.pt"}
    report("q", 1, [[0.45, 0.45]])  # dominates p's middle point: the file stays, p's other two points name it
    assert "p/m1" not in {pt.id for pt in front.front().points}
    assert _weights_files(tmp_path) == {"epoch_weights/p/conditioned_e1.pt", "epoch_weights/q/conditioned_e1.pt"}
    report("q", 2, [[0.1, 0.1]])  # dominates all of p: the file goes with the last point that named it
    assert _weights_files(tmp_path) == {"epoch_weights/q/conditioned_e2.pt"}


def test_a_better_earlier_epoch_stays_with_its_weights_until_another_point_dominates_it(tmp_path) -> None:
    front = _front(tmp_path)
    _report(front, "t", 1, [[0.5, 0.5]])
    _report(front, "t", 2, [[0.4, 0.4]])  # better: epoch 1 is dominated by it and leaves, its file too
    assert sorted(front.points) == ["t/m0"] and _weights_files(tmp_path) == {"epoch_weights/t/m0_e2.pt"}
    _report(front, "t", 3, [[0.6, 0.6]])  # worse: epoch 2 stays as t/m0@e2, with its weights
    assert sorted(front.points) == ["t/m0", "t/m0@e2"]
    assert [p.id for p in front.front().points] == ["t/m0@e2"]
    kept = front.points["t/m0@e2"]
    assert (
        kept.values == (0.4, 0.4)
        and kept.data["epoch"] == 2
        and kept.data["test_values"] == pytest.approx([0.41, 0.41])
    )
    assert (tmp_path / "pareto_search" / kept.data["weights_file"]).read_bytes() == b"t/m0@2"
    assert _weights_files(tmp_path) == {"epoch_weights/t/m0_e2.pt"}  # epoch 3 is dominated: no copy
    assert front.hypervolume().value == pytest.approx(0.36)
    assert front.to_json()["points"][0]["point"] == "t/0@e2"
    assert front.to_json()["points"][0]["model_uri"] == str(tmp_path / "pareto_search" / "epoch_weights/t/m0_e2.pt")

    # the trial's end gives its latest point the MLflow URI of the final weights, never the kept epoch
    front.set_data("t", model_uri=lambda p: "runs:/r/weights/member_0.pt" if kept_epoch(p.id) is None else "")
    assert front.points["t/m0"].data["model_uri"] == "runs:/r/weights/member_0.pt"
    assert front.weights_uri(front.points["t/m0@e2"]).endswith("epoch_weights/t/m0_e2.pt")

    _report(front, "u", 1, [[0.3, 0.3]])  # another model dominates it: the point and its file leave
    assert sorted(front.points) == ["t/m0", "u/m0"] and _weights_files(tmp_path) == {"epoch_weights/u/m0_e1.pt"}

    # a reloaded front (what `resume` and `select` read) is the same
    again = GlobalFront.load(front.path)
    assert {pid: (p.values, p.data) for pid, p in again.points.items()} == {
        pid: (p.values, p.data) for pid, p in front.points.items()
    }


@pytest.mark.filterwarnings("ignore::pareto_search.front.pareto.NonFiniteValuesWarning")  # the NaN rows, on purpose
def test_global_hv_never_decreases_and_weights_files_stay_within_the_front(tmp_path) -> None:
    rng = random.Random(7)
    front = _front(tmp_path)
    hv, epochs, seen = 0.0, {}, {}
    for step in range(300):
        trial = f"t{rng.randrange(6)}"
        epochs[trial] = epochs.get(trial, 0) + 1
        if rng.random() < 0.1:  # a trial run again from an older checkpoint reports epochs again
            epochs[trial] = max(1, epochs[trial] - 2)
        rows = [[rng.uniform(0.0, 1.2), rng.uniform(0.0, 1.2)] for _ in range(3)]
        if rng.random() < 0.05:
            rows[0] = [float("nan"), 0.5]
        rows = seen.setdefault((trial, epochs[trial]), rows)  # the same values again: training is deterministic
        _report(front, trial, epochs[trial], rows, weights=rng.random() < 0.8)  # checkpoint_every > 1: not always
        now = front.hypervolume().value
        assert now >= hv - 1e-12, f"step {step}: HV {hv} -> {now}"
        hv = now
        on_front = {p.id for p in front.front().points}
        kept = [pid for pid in front.points if kept_epoch(pid) is not None]
        assert set(kept) <= on_front  # only non-dominated epochs are kept
        with_weights = {p.data["weights_file"] for p in front.points.values() if p.data.get("weights_file")}
        assert {pid for pid, p in front.points.items() if p.data.get("weights_file")} <= on_front
        assert _weights_files(tmp_path) == with_weights  # every file is named by a point, and only those
        assert len(with_weights) <= len(on_front)
    assert hv > 0.9 and any(kept_epoch(pid) is not None for pid in front.points)


def test_format_1_front_files_still_load(tmp_path) -> None:
    path = tmp_path / "front_points.json"
    path.write_text(
        json.dumps(
            {
                "format": 1,
                "search": "old",
                "objectives": [{"name": "f1", "direction": "min"}, {"name": "f2", "direction": "min"}],
                "reference_point": [1.0, 1.0],
                "points": [
                    {"id": "t/m0", "values": [0.2, 0.6], "data": {"trial_id": "t", "member": 0, "epoch": 3}},
                    {
                        "id": "t/m1",
                        "values": [0.6, 0.2],
                        "data": {"trial_id": "t", "member": 1, "model_uri": "runs:/x"},
                    },
                ],
            }
        )
    )
    front = GlobalFront.load(path)
    data = front.to_json()
    assert data["hypervolume"] == pytest.approx(0.48) and data["test_hypervolume"] is None
    assert [p["point"] for p in data["points"]] == ["t/0", "t/1"]
    assert "0.480000 on validation" in front.to_table() and "n/a on test" in front.to_table()
    _report(front, "t", 4, [[0.3, 0.7], [0.5, 0.1]], weights=False)  # a resumed old search goes on
    assert "t/m0@e3" in front.points and json.loads(path.read_text())["format"] == FORMAT == 2


def test_point_rule_names_a_kept_epoch(tmp_path) -> None:
    front = _front(tmp_path)
    _report(front, "t", 1, [[0.2, 0.2]])
    _report(front, "t", 2, [[0.5, 0.5]])
    points = front.all_points()
    assert PointRule("t", 0, 1).select(points).point == "t/0@e1"
    assert PointRule("t", 0).select(points).point == "t/0"  # the latest epoch
    assert PointRule("t", 0, 2).select(points).point == "t/0"  # the latest point is epoch 2
    with pytest.raises(ValueError, match=r"no evaluated point t/0@e7; points: t/0, t/0@e1"):
        PointRule("t", 0, 7).select(points)
    assert point_id("t", 0, 1) == "t/m0@e1" and kept_epoch("t/m0@e1") == 1 and kept_epoch("t/m0") is None


def test_a_front_model_serves_a_kept_epoch_by_name_and_by_weights(tmp_path, monkeypatch, capsys) -> None:
    """`select --register-front` with a kept epoch among the members: the served front answers with that
    epoch's own weights when a request names it (`TRIAL/MEMBER@eEPOCH`) or when the weights pick it."""
    monkeypatch.chdir(REPO)  # the plug-in problem is imported from the repository root
    search = stored_search(tmp_path, [(0.5, 0.5), (1.5, 0.2)])  # weights stored as a search stores them
    front = GlobalFront.load(search.plan.front_path)
    uri = front.points["trial_00000/m0"].data["model_uri"]
    problem = make_problem(PLUGIN, PLUGIN_ARGS)
    torch.manual_seed(99)
    epoch1 = problem.make_model()  # trial_00000's member at epoch 1: better on task1, then epoch 2 (stored)
    buffer = io.BytesIO()
    torch.save(epoch1.state_dict(), buffer)
    front.update("trial_00000", [{"member": 0, "values": (0.1, 1.0), "epoch": 1, "solver": "linear"}])
    front.keep_weights("trial_00000", 1, lambda k: buffer.getvalue())
    front.update("trial_00000", [{"member": 0, "values": (0.5, 0.5), "epoch": 2, "model_uri": uri}])
    assert {p.id for p in front.front().points} == {"trial_00000/m0", "trial_00000/m0@e1", "trial_00001/m0"}

    args = ["select", "served", "--storage", str(search.storage), "--knee", "--register-front", "front"]
    assert main(args) == 0
    capsys.readouterr()
    mlflow.set_tracking_uri(search.tracking_uri)  # conftest resets it
    model = mlflow.pyfunc.load_model("models:/front@champion")
    inputs = problem.example_inputs(4).numpy()
    with torch.no_grad():
        expected = epoch1(torch.as_tensor(inputs))
    for params in ({"point": "trial_00000/0@e1"}, {"point": "trial_00000/m0@e1"}, {"weights": [1.0, 0.0]}):
        answer = model.predict(inputs, params=params)
        assert list(answer["point"]) == ["trial_00000/0@e1"] * len(inputs), params
        for task, mine in zip(problem.task_names, expected, strict=True):
            np.testing.assert_allclose(answer[task], mine.numpy(), rtol=1e-6)
    latest = model.predict(inputs, params={"point": "trial_00000/0"})
    assert list(latest["point"]) == ["trial_00000/0"] * len(inputs)
    assert not np.allclose(latest["task1"], answer["task1"])


# -- end to end ------------------------------------------------------------------------------------------------

ARGS = {"n_train": 256, "n_val": 64, "n_test": 64, "dim": 8, "hidden": 16, "batch_size": 32, "good_epochs": 2}


@pytest.mark.slow
def test_a_models_better_earlier_epoch_stays_on_the_front_with_its_weights_and_can_be_selected_and_registered(
    tmp_path, monkeypatch, capsys
) -> None:
    import ray

    from pareto_search.search.runner import run_search

    monkeypatch.chdir(tmp_path)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = parse_config(
        {
            "name": "overfit",
            "problem": {"name": "tests.support.fault_problems:overfitting", "args": ARGS},
            "reference_point": [20.0, 20.0],
            "epochs": 4,
            "solvers": [{"label": "linear", "solver": "linear", "optimizer": {"name": "adam", "lr": 0.03}}],
            "search": {"algorithm": "grid", "num_samples": 1, "max_failures": 0},
            "resources": {"cpus_per_trial": 1},
            "storage": str(tmp_path / "searches"),
            "tracking": {"uri": tracking_uri, "experiment": "tests"},
        }
    )
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        outcome = run_search(make_plan(config))
        # `resume` restores Tune's state and the callback, which reopens the front file: the kept epoch stays
        resumed = run_search(make_plan(config), resume=True).front
    finally:
        ray.shutdown()
    assert {pid: p.data for pid, p in resumed.points.items()} == {
        pid: p.data for pid, p in outcome.front.points.items()
    }
    assert outcome.trials == 1 and not outcome.failures
    front = outcome.front
    (trial,) = {p.data["trial_id"] for p in front.points.values()}
    latest, best = front.points[f"{trial}/m0"], front.points.get(f"{trial}/m0@e2")

    # the property holds: the last epoch is worse than epoch 2 on both objectives
    assert latest.data["epoch"] == 4 and best is not None
    assert all(late > early for late, early in zip(latest.values, best.values, strict=True)), (latest, best)
    # epoch 2 is on the front (epochs 3 and 4 are not: epoch 2 dominates them), with its val and test values
    assert f"{trial}/m0@e2" in {p.id for p in front.front().points}
    assert f"{trial}/m0@e3" not in front.points
    assert len(best.data["test_values"]) == 2 and all(np.isfinite(best.data["test_values"]))
    weights_file = front.path.parent / best.data["weights_file"]
    assert weights_file.is_file() and len(list((front.path.parent.local_path / "epoch_weights").rglob("*.pt"))) <= len(
        front.front()
    )
    # the weights are epoch 2's: they evaluate to its validation values (the last epoch's do not)
    problem = make_problem("tests.support.fault_problems:overfitting", ARGS)
    network = NetworkSpec.of(problem, "tests.support.fault_problems:overfitting", ARGS)
    epoch2 = network.load(weights_file.local_path)
    val = problem.evaluate(epoch2, "val", torch.device("cpu"))
    assert (val["task1_mse"], val["task2_mse"]) == pytest.approx(best.values, rel=1e-5)
    last_uri = latest.data["model_uri"]
    assert last_uri.startswith("runs:/")
    last = network.load(
        Path(mlflow.artifacts.download_artifacts(last_uri, dst_path=str(tmp_path / "dl"), tracking_uri=tracking_uri))
    )
    assert (
        problem.evaluate(last, "val", torch.device("cpu"))["task1_mse"],
        problem.evaluate(last, "val", torch.device("cpu"))["task2_mse"],
    ) == pytest.approx(latest.values, rel=1e-5)

    # the global HV logged during the search never went down
    client = mlflow.MlflowClient(tracking_uri)
    parent = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id],
        filter_string="tags.`pareto_search.kind` = 'search'",
    )[0]
    history = [
        m.value for m in sorted(client.get_metric_history(parent.info.run_id, "global_hv"), key=lambda m: m.step)
    ]
    assert len(history) == 4 and history == sorted(history), history
    assert "final_test_hv" in parent.data.metrics

    # val HV and test HV of the front, side by side
    capsys.readouterr()
    storage = str(tmp_path / "searches")
    assert main(["front", "overfit", "--storage", storage]) == 0
    table = capsys.readouterr().out
    assert "on validation (the front is chosen on it)" in table and " on test," in table and "0@e2" in table

    # selected by a rule and by name, then registered: the registered model is epoch 2's, not epoch 4's
    assert main(["select", "overfit", "--knee", "--format", "json", "--storage", storage]) == 0
    assert json.loads(capsys.readouterr().out)["chosen"]["point"] == f"{trial}/0@e2"
    monkeypatch.chdir(REPO)  # the registered model carries the plug-in problem's package from here
    args = ["select", "overfit", "--point", f"{trial}/0@e2", "--register", "overfit-model", "--format", "json"]
    assert main([*args, "--storage", storage]) == 0
    registered = json.loads(capsys.readouterr().out)["registered"]
    assert registered["created"] is True and registered["source_run_id"] != parent.info.run_id  # the trial's run
    mlflow.set_tracking_uri(tracking_uri)  # conftest resets it
    model = mlflow.pyfunc.load_model("models:/overfit-model@champion")
    (served,) = model.unwrap_python_model().members.values()
    for name, tensor in torch.load(weights_file.local_path, weights_only=True).items():
        assert torch.equal(served.state_dict()[name], tensor), name
    inputs = problem.example_inputs(5).numpy()
    predicted = model.predict(inputs)
    with torch.no_grad():
        own, final = epoch2(torch.as_tensor(inputs)), last(torch.as_tensor(inputs))
    for task, mine, theirs in zip(problem.task_names, own, final, strict=True):
        np.testing.assert_allclose(predicted[task], mine.numpy(), rtol=1e-6)
        assert not np.allclose(predicted[task], theirs.numpy())
    version = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(
        "overfit-model", "champion"
    )
    assert version.tags["pareto_search.point"] == f"{trial}/0@e2" and version.tags["pareto_search.epoch"] == "2"
