"""Contract tests every solver inherits (shipped in the package, like optuna's sampler tests).

Usage in a test module::

    class TestMySolver(SolverContract):
        solver = "my_solver"
        valid_params = {"alpha": 0.5}
        invalid_params = [({"alpha": -1.0}, "alpha")]

pytest collects the ``test_*`` methods below for every subclass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel
from trials.population import Population
from trials.problems.base import Batch, MetricSpec, Problem, Split
from trials.solvers import InvalidHyperparameterError, build_solver, solver_class
from trials.spec import OptimizerSpec, PopulationSpec, TrialSpec


class ConflictingRegression(Problem):
    """A tiny T-task regression whose tasks pull a shared linear trunk in different directions,
    fixed by its seed; fast enough to step hundreds of times in a unit test."""

    name = "contract"

    def __init__(self, num_tasks: int = 2, seed: int = 0, batches: int = 4, batch_size: int = 32) -> None:
        self.task_names = tuple(f"t{i}" for i in range(num_tasks))
        self.metrics = tuple(MetricSpec(f"t{i}_mse", "min") for i in range(num_tasks))
        self.default_objectives = tuple(m.name for m in self.metrics)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batches * batch_size, 4, generator=g)
        directions = torch.randn(num_tasks, 4, generator=g)
        # task 0 has a 10x larger scale: the imbalance most methods exist to handle
        scales = torch.tensor([10.0] + [1.0] * (num_tasks - 1))
        self.y = torch.tanh(self.x @ directions.T) * scales
        self.batch_size = batch_size

    def make_model(self) -> MultiTaskModel:
        trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        return MultiTaskModel(trunk, [nn.Linear(8, 1) for _ in self.task_names])

    def steps_per_epoch(self) -> int:
        return len(self.x) // self.batch_size

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self.x), generator=generator)
        for i in range(self.steps_per_epoch()):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield Batch(self.x[idx], tuple(self.y[idx, t] for t in range(self.num_tasks)))

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        return torch.stack([((o.squeeze(-1) - y) ** 2).mean() for o, y in zip(outputs, batch.targets, strict=True)])

    @torch.no_grad()
    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        batch = Batch(self.x, tuple(self.y[:, t] for t in range(self.num_tasks))).to(device)
        losses = self.task_losses(model(batch.inputs), batch)
        return {m.name: float(v) for m, v in zip(self.metrics, losses, strict=True)}


class SolverContract:
    """Properties every solver must have. Subclasses set the class attributes below."""

    solver: ClassVar[str]
    valid_params: ClassVar[dict[str, Any]] = {}
    invalid_params: ClassVar[list[tuple[dict[str, Any], str]]] = []  # (params, field named in the error)
    num_tasks: ClassVar[int] = 2
    population_size: ClassVar[int] = 1
    optimizer: ClassVar[OptimizerSpec] = OptimizerSpec(name="sgd", lr=0.01, momentum=0.9)
    steps: ClassVar[int] = 50

    def _population(self, seed: int = 0) -> Population:
        spec = TrialSpec(
            problem="contract",
            solver=self.solver,
            solver_args=self.valid_params,
            population=PopulationSpec(size=self.population_size),
            optimizer=self.optimizer,
            epochs=max(1, self.steps // 4),
            seed=seed,
        )
        torch.manual_seed(seed)
        return Population(ConflictingRegression(self.num_tasks), spec, torch.device("cpu"))

    def _run(self, population: Population, steps: int, start: int = 0) -> list[Tensor]:
        problem = population.problem
        losses: list[Tensor] = []
        epoch = start // problem.steps_per_epoch()
        per_epoch = problem.steps_per_epoch()
        while len(losses) < steps:
            for batch in problem.train_batches(torch.Generator().manual_seed(epoch)):
                losses.append(population.train_step(batch))
                if (start + len(losses)) % per_epoch == 0:  # an epoch finished: the loop's epoch hook
                    population.end_epoch(epoch + 1, torch.stack(losses[-per_epoch:]).mean(0))
                if len(losses) == steps:
                    break
            epoch += 1
        return losses

    def test_no_nan_over_steps(self) -> None:
        population = self._population()
        for losses in self._run(population, self.steps):
            assert torch.isfinite(losses).all()
        for member in population.members:
            assert all(torch.isfinite(p).all() for p in member.model.parameters())

    def test_parameters_move_and_loss_falls(self) -> None:
        population = self._population()
        model = population.members[0].model
        shared_before = [p.detach().clone() for p in model.shared_parameters()]
        heads_before = [p.detach().clone() for t in range(self.num_tasks) for p in model.task_parameters(t)]
        losses = self._run(population, self.steps)
        heads_after = [p for t in range(self.num_tasks) for p in model.task_parameters(t)]
        assert any(not torch.equal(b, a) for b, a in zip(shared_before, model.shared_parameters(), strict=True))
        assert all(not torch.equal(b, a) for b, a in zip(heads_before, heads_after, strict=True))
        assert float(losses[-1].sum()) < float(losses[0].sum())

    def test_state_dict_round_trip_is_exact(self) -> None:
        first = self._population()
        self._run(first, 8)
        saved = _clone(first.state_dict())
        continued = self._run(first, 8, start=8)
        second = self._population(seed=1)  # different init: everything must come from the state
        second.load_state_dict(saved)
        resumed = self._run(second, 8, start=8)
        for a, b in zip(continued, resumed, strict=True):
            assert torch.equal(a, b)
        for m1, m2 in zip(first.members, second.members, strict=True):
            for p1, p2 in zip(m1.model.parameters(), m2.model.parameters(), strict=True):
                assert torch.equal(p1, p2)

    def test_repr_shows_hyperparameters(self) -> None:
        solver = build_solver(
            self.solver, self.num_tasks, torch.full((self.num_tasks,), 1 / self.num_tasks), self.valid_params
        )
        text = repr(solver)
        for name in self.valid_params:
            assert f"{name}=" in text

    def test_unknown_hyperparameter_is_refused(self) -> None:
        with pytest.raises(InvalidHyperparameterError, match=r"unknown hyperparameter `no_such_knob`; allowed"):
            build_solver(self.solver, self.num_tasks, torch.ones(self.num_tasks) / self.num_tasks, {"no_such_knob": 1})

    def test_invalid_hyperparameters_name_the_field(self) -> None:
        for params, field in self.invalid_params:
            with pytest.raises(InvalidHyperparameterError, match=rf"`{field}`") as info:
                build_solver(self.solver, self.num_tasks, torch.ones(self.num_tasks) / self.num_tasks, params)
            assert self.solver in str(info.value) and "found" in str(info.value)

    def test_declares_a_paper(self) -> None:
        cls = solver_class(self.solver)
        assert cls.paper.strip() and (cls.__doc__ or "").strip()


def _clone(state: Any) -> Any:
    if isinstance(state, Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_clone(v) for v in state)
    return state
