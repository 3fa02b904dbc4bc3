"""``population.placement: actors``: each member on a Ray actor of its own trains exactly what the in-process
population trains — per member, per epoch — under both transfer rules, the beneficial mode and no transfer at all,
and a checkpoint of either placement restores under the other."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import torch

from pareto_search.search.member_actors import ActorPopulation, MemberPlacement
from trials.loop import Trainer
from trials.problems import Problem
from trials.spec import TrialSpec

# related3: three regression tasks (one conflicting) on a small MLP with a shared trunk: transfer has work to do
# and an epoch takes milliseconds. Small n so that the whole module runs in seconds.
PROBLEM = {"problem": "related3", "problem_args": {"n_train": 256, "n_val": 64, "n_test": 64, "batch_size": 32}}


@pytest.fixture(scope="module", autouse=True)
def _ray() -> Iterator[None]:
    # 4 logical CPUs on any machine: three members and the test's own process, one CPU each.
    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def _spec(transfer: dict[str, Any], placement: str, epochs: int = 2) -> TrialSpec:
    return TrialSpec.from_dict(
        {
            **PROBLEM,
            "epochs": epochs,
            "seed": 7,
            "solver": "linear",
            "optimizer": {"name": "adam", "lr": 0.01},
            "population": {
                "size": 3,
                "execution": "sequential",
                "interior": 0.3,
                "transfer": transfer,
                "placement": placement,
            },
        }
    )


def _actors(problem: Problem, spec: TrialSpec, device: torch.device) -> ActorPopulation:
    return ActorPopulation(problem, spec, device, MemberPlacement(cpus=1.0))


def _train(spec: TrialSpec) -> tuple[list[list[dict[str, float]]], list[dict[str, torch.Tensor]], dict[str, Any]]:
    """Each epoch's members' metrics and the final weights; for actors, what the population saw of its workers
    (the workers are stopped before returning: a test's CPUs are few)."""
    factory = _actors if spec.population.placement == "actors" else None
    trainer = Trainer(spec, num_threads=1, population_factory=factory)
    try:
        metrics = [[m.metrics for m in trainer.train_epoch().members] for _ in range(spec.epochs)]
        weights = trainer.member_weights()
        seen: dict[str, Any] = {}
        if isinstance(trainer.population, ActorPopulation):
            seen = {
                "worker_pids": ray.get([w.pid.remote() for w in trainer.population.workers]),
                "transfer_seconds": trainer.population.transfer_seconds,
            }
        return metrics, weights, seen
    finally:
        _close(trainer)


def _close(trainer: Trainer) -> None:
    if isinstance(trainer.population, ActorPopulation):
        trainer.population.close()


TRANSFERS = {
    "periodic-beneficial": {"rule": "periodic", "eps0": 0.3, "period": 3, "mode": "beneficial"},
    "periodic-symmetric": {"rule": "periodic", "eps0": 0.5, "period": 2, "mode": "symmetric"},
    "mtgd-beneficial": {"rule": "mtgd", "alpha": 1.0, "period": 3, "mode": "beneficial"},
    "none": {"eps0": 0.0},
}
EQUAL = ("periodic-beneficial", "mtgd-beneficial", "none")


@pytest.mark.parametrize("transfer", EQUAL, ids=EQUAL)
def test_actor_members_train_what_the_in_process_population_trains(transfer: str) -> None:
    process_metrics, process_weights, _ = _train(_spec(TRANSFERS[transfer], "process"))
    actor_metrics, actor_weights, seen = _train(_spec(TRANSFERS[transfer], "actors"))
    # The members really lived apart: three workers, each a process of its own, none of them this one.
    assert len(set(seen["worker_pids"])) == 3 and os.getpid() not in seen["worker_pids"]
    if transfer != "none":  # and transfer really read the others' parameters there
        assert seen["transfer_seconds"] > 0
    # Same training, per member, per epoch: on the CPU the arithmetic is the same, so equal to the last bit.
    assert actor_metrics == process_metrics
    for ours, theirs in zip(actor_weights, process_weights, strict=True):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_transfer_changes_what_the_actor_members_train() -> None:
    """The equality above is not a population that ignores transfer: with it the members end elsewhere."""
    _, with_transfer, _ = _train(_spec(TRANSFERS["periodic-symmetric"], "actors", epochs=1))
    _, without, _ = _train(_spec(TRANSFERS["none"], "process", epochs=1))
    assert any(not torch.equal(a[n], b[n]) for a, b in zip(with_transfer, without, strict=True) for n in a)


@pytest.mark.parametrize("first,second", [("actors", "process"), ("process", "actors"), ("process", "process")])
def test_a_checkpoint_of_either_placement_resumes_under_the_other(first: str, second: str, tmp_path: Path) -> None:
    transfer = TRANSFERS["mtgd-beneficial"]
    _, uninterrupted, _ = _train(_spec(transfer, "process", epochs=3))

    factory = {"actors": _actors, "process": None}
    spec = _spec(transfer, first, epochs=3)
    trainer = Trainer(spec, num_threads=1, population_factory=factory[first])
    try:
        trainer.train_epoch()
        path = trainer.save_checkpoint(tmp_path / "trainer.pt")
    finally:
        _close(trainer)

    resumed_spec = dataclasses.replace(spec, population=dataclasses.replace(spec.population, placement=second))
    resumed = Trainer(resumed_spec, num_threads=1, population_factory=factory[second])
    try:
        resumed.load_checkpoint(path)
        assert resumed.epoch == 1
        resumed.run()
        weights = resumed.member_weights()
    finally:
        _close(resumed)
    for ours, theirs in zip(weights, uninterrupted, strict=True):
        assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_actors_without_the_service_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"`population.placement` is 'actors'.*allowed .*: process"):
        Trainer(_spec(TRANSFERS["none"], "actors"))


def _search(tmp_path: Path, name: str, placement: str) -> dict[str, Any]:
    return {
        "name": name,
        "problem": {"name": "related3", "args": dict(PROBLEM["problem_args"])},
        "epochs": 2,
        "seed": 3,
        "solvers": [
            {
                "label": "mt2o",
                "method": "mt2o",
                "population": {"placement": placement},
                "optimizer": {"name": "adam", "lr": 0.01},
            }
        ],
        "search": {"algorithm": "random", "num_samples": 1, "max_failures": 0},
        # the trial's own process and its three members' workers: 4 CPUs, what this module's Ray has
        "resources": {"cpus_per_trial": 1, "cpus_per_member": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "tests"},
    }


def test_a_search_with_members_on_actors_finds_the_in_process_front(tmp_path: Path, monkeypatch) -> None:
    """Through the service: Tune reserves the trial and its members in one placement group, the members train on
    their workers, and the front is the in-process search's, point for point."""
    from pareto_search.config import parse_config
    from pareto_search.plan import make_plan
    from pareto_search.search.runner import run_search

    monkeypatch.chdir(tmp_path)
    fronts = {}
    for placement in ("process", "actors"):
        outcome = run_search(make_plan(parse_config(_search(tmp_path, f"s-{placement}", placement))))
        assert not outcome.failures
        points = outcome.front.all_points().points
        fronts[placement] = sorted((p.values, tuple(p.data["preference"]), p.data.get("epoch")) for p in points)
    assert len(fronts["actors"]) >= 3
    assert fronts["actors"] == fronts["process"]
    # The members' workers ended with their trial: none is left holding a CPU (Ray frees them within moments).
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 4


def test_a_population_that_cannot_be_placed_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    from pareto_search.config import ConfigError, parse_config
    from pareto_search.plan import make_plan
    from pareto_search.search.runner import run_search

    monkeypatch.chdir(tmp_path)
    config = _search(tmp_path, "too-big", "actors")
    config["solvers"][0]["population"]["size"] = 8  # 1 + 8 CPUs on a Ray of 4
    with pytest.raises(ConfigError, match=r"`population.size` 8 with `population.placement: actors` needs 9 CPUs"):
        run_search(make_plan(parse_config(config)))
    assert not (tmp_path / "searches" / "too-big").exists()  # refused before anything was written


def test_the_shipped_actors_config_fits_a_two_core_machine() -> None:
    from pareto_search.config import load_config
    from pareto_search.search.member_actors import largest_members_apart
    from pareto_search.search.resources import check_members_fit

    config = load_config(Path(__file__).resolve().parents[3] / "configs" / "actors.yaml")
    assert largest_members_apart(config) == 3  # the preset's K, each on a worker of its own
    check_members_fit(config.resources, 3, [{"CPU": 2.0}])  # refused with a ConfigError if it did not fit
