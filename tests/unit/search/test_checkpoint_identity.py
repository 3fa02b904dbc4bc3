"""A trial's checkpoints are its own on any device; a checkpoint of another training is one line, never damage.

And what `resume` hands Tune agrees with itself: the grid/random generator's running trials are the trial table's
unfinished ones (a generator waiting for a trial that ended left a resumed search idle forever)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import ray.cloudpickle as cloudpickle
import torch
from ray import tune

from pareto_search.search.checkpoints import restore, seal
from pareto_search.search.trainable import TRAINER_FILE
from pareto_search.search.tune_state import check_experiment_state
from trials.loop import Trainer
from trials.spec import OptimizerSpec, PopulationSpec, SpecMismatch, TransferSpec, TrialSpec, spec_difference
from trials.testing.contract import ConflictingRegression


def _spec(**overrides: object) -> TrialSpec:
    base: dict = dict(
        problem="contract",
        solver="tchebycheff",
        epochs=4,
        seed=3,
        optimizer=OptimizerSpec(name="adam", lr=0.01),
        population=PopulationSpec(size=3, transfer=TransferSpec(eps0=0.4, period=3)),
    )
    base.update(overrides)
    return TrialSpec(**base)


def _checkpoint(trainer: Trainer, folder: Path, spec: TrialSpec) -> Path:
    """A sealed checkpoint of `trainer` whose recorded spec is `spec` (what a trial on that device writes)."""
    folder.mkdir(parents=True)
    state = trainer.state_dict()
    state["spec"] = spec.to_dict()
    torch.save(state, folder / TRAINER_FILE)
    seal(folder)
    return folder


def _values(trainer: Trainer) -> list[list[dict[str, float]]]:
    return [[m.metrics for m in report.members] for report in trainer.history]


def test_a_checkpoint_written_on_cuda_restores_on_the_cpu_with_the_same_weights_and_front(tmp_path) -> None:
    problem = ConflictingRegression()
    spec = _spec()
    straight = Trainer(spec, problem=problem)
    straight.run()

    first = Trainer(spec, problem=problem)
    first.train_epoch()
    first.train_epoch()
    on_gpu = dataclasses.replace(spec, device="cuda")  # the spec field only: no GPU is needed to write it
    latest = _checkpoint(first, tmp_path / "checkpoint_000001", on_gpu)
    assert torch.load(latest / TRAINER_FILE, weights_only=True)["spec"]["device"] == "cuda"

    resumed = Trainer(spec, problem=problem)  # device "cpu"
    assert restore(tune.Checkpoint(str(latest)), resumed.load_state_dict, TRAINER_FILE) is None, "no recovery"
    for theirs, ours in zip(first.member_weights(), resumed.member_weights(), strict=True):
        assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    resumed.run()
    assert resumed.epoch == 4 and _values(resumed) == _values(straight), "the same front as a run on one device"


def test_device_and_execution_are_not_a_trials_identity() -> None:
    spec = _spec()
    for other in (
        dataclasses.replace(spec, device="cuda"),
        dataclasses.replace(spec, device="cuda:1"),
        dataclasses.replace(spec, device="auto"),
        dataclasses.replace(spec, population=dataclasses.replace(spec.population, execution="batched")),
    ):
        assert spec_difference(other.to_dict(), spec) is None
        assert spec_difference(spec.to_dict(), other) is None


def test_a_checkpoint_of_another_spec_is_one_line_naming_the_checkpoint_and_the_field(tmp_path) -> None:
    problem = ConflictingRegression()
    writer = Trainer(_spec(epochs=1), problem=problem)
    writer.train_epoch()
    latest = _checkpoint(writer, tmp_path / "checkpoint_000000", dataclasses.replace(_spec(epochs=1), device="cuda"))
    other = Trainer(_spec(epochs=1, optimizer=OptimizerSpec(name="adam", lr=0.03)), problem=problem)
    with pytest.raises(SpecMismatch) as error:
        restore(tune.Checkpoint(str(latest)), other.load_state_dict, TRAINER_FILE)
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        "checkpoint_000000: checkpoint was written by a different trial spec "
        "(`optimizer.lr` is 0.01 there, 0.03 here); refusing to resume"
    )
    assert other.epoch == 0, "nothing was loaded"


def test_a_spec_this_version_cannot_read_is_a_mismatch_naming_the_key() -> None:
    saved = {**_spec().to_dict(), "warmup": 3}  # written by a version with a field this one lacks
    assert spec_difference(saved, _spec()) == (
        "its spec is not one this version reads: unknown key `warmup`; allowed: "
        + ", ".join(f.name for f in dataclasses.fields(TrialSpec))
    )


STAMP = "2026-12-07_10-41-02"


def _tune_session(folder: Path, statuses: dict[str, str], live: set[str]) -> Path:
    """A trial table with these trials and a grid/random generator's state with these running (as Tune 2.x
    writes them: JSON pairs of trial state and run metadata; a pickled dict)."""
    table = [[json.dumps({"trial_id": trial, "status": status}), json.dumps({})] for trial, status in statuses.items()]
    (folder / f"experiment_state-{STAMP}.json").write_text(json.dumps({"trial_data": table}))
    state = folder / f"basic-variant-state-{STAMP}.json"
    state.write_bytes(cloudpickle.dumps({"_live_trials": set(live), "max_concurrent": 1, "_finished": False}))
    return state


def test_a_generator_waiting_for_a_trial_that_ended_counts_the_unfinished_ones_instead(tmp_path) -> None:
    state = _tune_session(tmp_path, {"a_00000": "TERMINATED", "a_00001": "RUNNING"}, live={"a_00000"})
    lines = check_experiment_state(tmp_path)
    assert lines == [
        "the search algorithm's state disagreed with the trial table: it no longer waits for a_00000 (ended or "
        "unknown in the trial table) and counts a_00001 as running"
    ]
    repaired = cloudpickle.loads(state.read_bytes())
    assert repaired["_live_trials"] == {"a_00001"} and repaired["max_concurrent"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([state.name, f"experiment_state-{STAMP}.json"])


def test_an_errored_trial_or_one_the_table_never_saved_is_not_waited_for(tmp_path) -> None:
    state = _tune_session(tmp_path, {"a_00000": "TERMINATED", "a_00001": "ERROR"}, live={"a_00001", "a_00002"})
    assert check_experiment_state(tmp_path) == [
        "the search algorithm's state disagreed with the trial table: it no longer waits for a_00001, a_00002 "
        "(ended or unknown in the trial table)"
    ]
    assert cloudpickle.loads(state.read_bytes())["_live_trials"] == set()


def test_a_generator_that_agrees_with_the_table_is_left_alone(tmp_path) -> None:
    state = _tune_session(tmp_path, {"a_00000": "TERMINATED", "a_00001": "PENDING"}, live={"a_00001"})
    before = state.read_bytes()
    assert check_experiment_state(tmp_path) == []
    assert state.read_bytes() == before
