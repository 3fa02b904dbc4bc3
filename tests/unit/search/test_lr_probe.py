"""`optimizer.lr: {probe: [lo, hi]}`: a learning rate found once before the trials (search/lr_probe.py).

What matters: the candidates are the log-spaced range; each candidate's point is exactly one model of the entry's
solver at equal weights trained one epoch at that rate from the search's seed; the chosen rate is the one with the
largest HV; every trial then uses it; the plan keeps it, so a resumed search does not probe again; a failing
candidate is named and the others still count; when all fail the search stops before its trials.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
import ray
import yaml
from ray.tune import ExperimentAnalysis

from pareto_search.config import as_distribution, parse_config, probe_candidates
from pareto_search.errors import SearchStopped
from pareto_search.plan import PLAN_FILE, load_plan, make_plan
from pareto_search.search import lr_probe
from pareto_search.search.lr_probe import PROBE_EPOCHS, PROBE_TOLERANCE, ProbeResult, choose, probe_spec, run_probes
from pareto_search.search.runner import run_search
from trials.loop import Trainer
from trials.preferences import pull_to_centre, trial_preferences
from trials.presets import MT2O

REPO = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path, name: str = "probe", **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 20}},
        "reference_point": [1.0, 1.0],
        "epochs": 3,
        "seed": 7,
        "solvers": [
            {
                "label": "mt2o",
                "method": "mt2o",
                "population": {"size": 3},
                "optimizer": {"name": "adam", "lr": {"probe": [0.001, 0.1, 3]}, "schedule": "cosine"},
            }
        ],
        "search": {"algorithm": "random", "num_samples": 2, "max_failures": 0},
        "resources": {"cpus_per_trial": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield
    ray.shutdown()


def test_candidates_are_log_spaced_over_the_range_with_both_ends() -> None:
    assert probe_candidates(as_distribution({"probe": [0.001, 0.1, 3]})) == (0.001, 0.01, 0.1)
    four = probe_candidates(as_distribution({"probe": [1e-3, 1e-2]}))
    assert len(four) == 4 and four[0] == 1e-3 and four[-1] == 1e-2
    assert all(math.isclose(b / a, 10 ** (1 / 3), rel_tol=1e-5) for a, b in itertools.pairwise(four))


def test_a_candidate_is_one_model_of_the_entry_at_equal_weights(tmp_path) -> None:
    config = parse_config(_config(tmp_path))
    spec = probe_spec(config, 0, 0.01)
    assert spec.population.size == 1 and spec.optimizer.lr == 0.01 and spec.seed == 7
    assert spec.solver == "linear" and spec.optimizer.schedule == "cosine" and spec.epochs == 3
    preferences = Trainer(spec).population.preferences
    assert preferences.tolist() == [[0.5, 0.5]]


def test_the_largest_hv_wins_and_failed_or_diverged_candidates_never_do(tmp_path) -> None:
    plan = make_plan(parse_config(_config(tmp_path)))  # toy2d: both objectives minimized, reference (1, 1)
    scores, best = choose(plan, [(0.5, 0.5), None, (0.2, 0.6), (float("nan"), 0.0)])
    assert scores[0] == pytest.approx(0.25) and scores[2] == pytest.approx(0.32)
    assert scores[1] == scores[3] == -math.inf and best == 2
    # Within PROBE_TOLERANCE of the best HV, the larger rate (the later candidate) is kept.
    scores, best = choose(plan, [(0.5, 0.5), (0.2, 0.6), (0.25, 0.6)])  # HV 0.25, 0.32, 0.30
    assert best == 2 and scores[2] >= PROBE_TOLERANCE * scores[1]
    assert choose(plan, [(0.2, 0.6), (0.5, 0.5)])[1] == 0  # 0.25 < 0.9 x 0.32: the best stays
    # No point inside the reference: the smallest sum of objectives decides.
    assert choose(plan, [(1.5, 2.0), (1.2, 1.1)])[1] == 1


def test_a_probe_result_survives_json() -> None:
    result = ProbeResult(0, (0.001, 0.01), ((0.5, 0.5), None), (0.25, -math.inf), 0.001)
    again = ProbeResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and again.model_epochs == 2 * PROBE_EPOCHS
    assert "0.01 → failed" in result.line() and "chose 0.001" in result.line()
    shared = ProbeResult(1, (0.001, 0.01), ((0.5, 0.5), (0.4, 0.4)), (0.25, 0.36), 0.01, trained=0)
    assert ProbeResult.from_dict(json.loads(json.dumps(shared.to_dict()))) == shared and shared.model_epochs == 0


def test_a_candidate_two_entries_share_is_trained_once(tmp_path, monkeypatch) -> None:
    """The mt2o entry and its no-transfer control probe the same models (one model at equal weights has nothing to
    transfer): each candidate trains once and counts for both; a range that overlaps shares its common rates."""
    entry = _config(tmp_path)["solvers"][0]
    control = {**entry, "label": "independent", "population": {"size": 3, "transfer": {"eps0": 0.0}}}
    overlapping = {**entry, "label": "wider", "optimizer": {**entry["optimizer"], "lr": {"probe": [0.01, 1.0, 3]}}}
    plan = make_plan(parse_config(_config(tmp_path, solvers=[entry, control, overlapping])))
    trained: list[float] = []

    def fake_training(plan: Any, specs: list[Any], log: Any) -> list[tuple[float, ...]]:
        trained.extend(spec.optimizer.lr for spec in specs)
        return [(abs(math.log10(spec.optimizer.lr) + 2) / 4, 0.5) for spec in specs]  # best at lr 0.01

    monkeypatch.setattr(lr_probe, "_run_candidates", fake_training)
    lines: list[str] = []
    resolved, (first, second, third) = run_probes(plan, log=lines.append)
    assert trained == pytest.approx([0.001, 0.01, 0.1, 1.0])  # 0.001, 0.01, 0.1 once; the wider range adds 1.0
    assert (first.model_epochs, second.model_epochs, third.model_epochs) == (3, 0, 1)
    assert first.points == second.points and first.chosen == second.chosen == third.chosen == pytest.approx(0.01)
    assert "the others shared with an earlier entry" in second.line() and second.line() in "\n".join(lines)
    assert [s.optimizer.lr for s in resolved.config.solvers] == pytest.approx([0.01] * 3)


def test_the_probe_trains_each_candidate_and_fixes_the_best(tmp_path, local_ray) -> None:
    plan = make_plan(parse_config(_config(tmp_path)))
    lines: list[str] = []
    resolved, (result,) = run_probes(plan, log=lines.append)
    # Each point is exactly the candidate trained alone for one epoch (same seed, same data order).
    for lr, point in zip(result.candidates, result.points, strict=True):
        trainer = Trainer(probe_spec(plan.config, 0, lr), num_threads=1)
        report = trainer.train_epoch()
        assert point == tuple(report.members[0].metrics[o.name] for o in plan.objectives)
    scores, best = choose(plan, list(result.points))
    assert result.chosen == result.candidates[best] and result.scores == tuple(scores)
    assert resolved.config.solvers[0].optimizer.lr == result.chosen
    assert resolved.probes == (result.to_dict(),)
    assert any(f"chose {result.chosen:.3g}" in line for line in lines)


def test_a_failing_candidate_is_named_and_all_failing_stops_the_search(tmp_path, local_ray) -> None:
    diverging = {"name": "tests.support.fault_problems:diverging", "args": {"mode": "raise", "steps_per_epoch": 50}}
    solvers = [{"solver": "linear", "optimizer": {"name": "sgd", "lr": {"probe": [0.1, 10.0, 3]}}}]
    plan = make_plan(parse_config(_config(tmp_path, problem=diverging, solvers=solvers, reference_point=[10, 10])))
    lines: list[str] = []
    _, (result,) = run_probes(plan, log=lines.append)
    assert result.points[2] is None and result.chosen in (0.1, 1.0)  # lr 10 explodes (x <- -4x per step)
    assert any("probe lr 10 failed: RuntimeError: simulated crash in user code" in line for line in lines)
    solvers[0]["optimizer"]["lr"] = {"probe": [8.0, 10.0, 2]}
    plan = make_plan(parse_config(_config(tmp_path, problem=diverging, solvers=solvers, reference_point=[10, 10])))
    with pytest.raises(SearchStopped, match=r"learning-rate probe of `solvers\[0\].optimizer.lr`: every candidate"):
        run_probes(plan, log=lines.append)


@pytest.mark.slow
def test_every_trial_uses_the_probed_rate_and_resume_does_not_probe_again(tmp_path, local_ray, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = make_plan(parse_config(_config(tmp_path)))
    outcome = run_search(plan)
    assert outcome.trials == 2 and not outcome.failures
    saved = json.loads((tmp_path / "searches" / "probe" / "pareto_search" / PLAN_FILE).read_text())
    (probe,) = saved["probes"]
    chosen = probe["chosen"]
    assert saved["config"]["solvers"][0]["optimizer"]["lr"] == chosen and probe["model_epochs"] == 3
    analysis = ExperimentAnalysis(str(tmp_path / "searches" / "probe"))
    rates = [t.config["entry"]["values"]["optimizer"]["lr"] for t in analysis.trials]
    assert rates == [chosen, chosen]
    # The preset's `across_trials: fill`: the entry's second trial (repeat 1) trains the gaps between the first's
    # preferences, so the search's 6 members hold 6 distinct trade-offs (and resume, below, keeps them).
    assert sorted(t.config["entry"]["repeat"] for t in analysis.trials) == [0, 1]
    expected = {
        tuple(round(v, 9) for v in row)
        for repeat in (0, 1)
        for row in pull_to_centre(trial_preferences(2, 3, repeat), MT2O.population["interior"]).tolist()
    }
    trained = {tuple(round(v, 9) for v in p.data["preference"]) for p in outcome.front.points.values()}
    assert trained == expected and len(expected) == 6
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(saved["parent_run_id"])
    assert float(parent.data.tags["pareto_search.lr_probe.solvers.0.lr"]) == pytest.approx(chosen)

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a resumed search probed again")

    monkeypatch.setattr("pareto_search.search.runner.run_probes", must_not_run)
    stored, _ = load_plan(tmp_path / "searches", "probe")
    assert not lr_probe.pending_probes(stored.config)
    again = run_search(stored, resume=True)
    assert again.front.hypervolume().value == pytest.approx(outcome.front.hypervolume().value, abs=0.0)


@pytest.mark.slow
def test_ctrl_c_while_probing_exits_130_and_resume_probes_then_trains(tmp_path) -> None:
    config = _config(
        tmp_path,
        "probing",
        problem={"name": "toy2d", "args": {"steps_per_epoch": 20_000}},  # ~8 s a candidate: time to press Ctrl-C
        epochs=1,
        solvers=[{"solver": "linear", "optimizer": {"name": "adam", "lr": {"probe": [0.001, 0.01, 2]}}}],
        search={"algorithm": "random", "num_samples": 1, "max_failures": 0},
    )
    path = tmp_path / "probing.yaml"
    path.write_text(yaml.safe_dump(config))
    run = _cli(["run", str(path)], tmp_path)
    lines = _Lines(run)
    assert lines.wait_for("candidates in [0.001, 0.01]", timeout_s=120), lines.text()[-3000:]
    time.sleep(2.0)  # the probe tasks are training
    os.kill(run.pid, signal.SIGINT)
    assert run.wait(timeout=120) == 130, lines.text()[-3000:]
    lines.join()
    printed = lines.text()
    assert printed.rstrip().endswith("interrupted — `pareto-search resume probing` continues it"), printed[-3000:]
    saved = json.loads((tmp_path / "searches" / "probing" / "pareto_search" / PLAN_FILE).read_text())
    assert saved["probes"] == [] and saved["config"]["solvers"][0]["optimizer"]["lr"] == {"probe": [0.001, 0.01, 2]}

    resumed = _cli(["resume", "probing", "--storage", str(tmp_path / "searches")], tmp_path)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    assert "learning-rate probe of `solvers[0].optimizer.lr`: 0.001 → HV" in out
    saved = json.loads((tmp_path / "searches" / "probing" / "pareto_search" / PLAN_FILE).read_text())
    assert saved["config"]["solvers"][0]["optimizer"]["lr"] == saved["probes"][0]["chosen"]


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pareto_search.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class _Lines:
    """A process's output, read on a thread so that waiting for a line is bounded."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self._lines.extend(process.stdout), daemon=True)
        self._thread.start()

    def wait_for(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in list(self._lines)):
                return True
            time.sleep(0.2)
        return False

    def join(self) -> None:
        self._thread.join(timeout=30)

    def text(self) -> str:
        return "".join(self._lines)


def test_candidates_trained_in_the_driver_are_the_tasks_points_and_failures(tmp_path, local_ray, monkeypatch) -> None:
    """On this machine's own Ray with CPU trials the candidates train in the driver (no worker start-up), without
    asking Ray anything (before Ray starts): the same points, choice and failure lines as Ray tasks; a cluster
    (`--address`) or GPU trials keep the tasks."""
    plan = make_plan(parse_config(_config(tmp_path)))
    assert lr_probe.trains_here(plan, None) and not lr_probe.trains_here(plan, "http://head:8265")
    gpu = make_plan(parse_config(_config(tmp_path, resources={"cpus_per_trial": 1, "gpus_per_trial": 1})))
    assert not lr_probe.trains_here(gpu, None)
    tasks, (by_tasks,) = run_probes(plan, log=lambda line: None)

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the driver's probe asked Ray (which would start it)")

    for name in ("init", "get_gpu_ids", "remote", "get", "wait", "nodes"):
        monkeypatch.setattr(ray, name, no_ray)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    here, (by_driver,) = run_probes(plan, log=lambda line: None, here=True)
    assert by_driver == by_tasks and here.config == tasks.config
    diverging = {"name": "tests.support.fault_problems:diverging", "args": {"mode": "raise", "steps_per_epoch": 50}}
    solvers = [{"solver": "linear", "optimizer": {"name": "sgd", "lr": {"probe": [0.1, 10.0, 3]}}}]
    failing = make_plan(parse_config(_config(tmp_path, problem=diverging, solvers=solvers, reference_point=[10, 10])))
    lines: list[str] = []
    _, (result,) = run_probes(failing, log=lines.append, here=True)
    assert result.points[2] is None and any("probe lr 10 failed: RuntimeError: simulated crash" in x for x in lines)


def test_a_psl_entry_probes_its_conditioned_model_and_is_charged_its_preferences(tmp_path) -> None:
    """A Pareto set learning entry's candidate is the conditioned model its trials train (a hypernetwork's rate is
    not a plain network's), scored at its evaluation preference nearest equal weights; each candidate-epoch costs
    the P preferences it draws per example."""
    solvers = [{"method": "psl", "optimizer": {"name": "adam", "lr": {"probe": [0.003, 0.03, 2]}}}]
    plan = make_plan(parse_config(_config(tmp_path, solvers=solvers, epochs=2)))
    spec = probe_spec(plan.config, 0, 0.01)
    assert spec.population.psl is not None and spec.population.psl.samples == 4
    trainer = Trainer(spec)
    assert len(trainer.population.members) == 11  # the preset's N evaluation preferences, not one plain model
    report = trainer.train_epoch()
    middle = next(m for m in report.members if m.preference == [0.5, 0.5])
    names = ("f1", "f2")
    assert lr_probe._train(spec, 1, names, 1) == tuple(middle.metrics[n] for n in names)
    _, (result,) = run_probes(plan, log=lambda line: None, here=True)
    assert result.per_epoch == 4 and result.model_epochs == 2 * PROBE_EPOCHS * 4
    assert ProbeResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
