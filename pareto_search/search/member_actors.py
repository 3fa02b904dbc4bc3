"""A population whose members live on Ray actors of their own (``population.placement: actors``).

Each of the K members is a :class:`MemberWorker` actor holding one member exactly as the in-process population
builds it (trials/population.py, ``only=k``): its model, optimizer, scheduler and solver. The trial's own process
(the coordinator, :class:`ActorPopulation`) loads the data, hands every member the same batch and runs the epochs,
evaluation reports and checkpoints as for any population; the members meet only at transfer time.

Transfer, in the same Jacobi order and with the same arithmetic as in one process (trials/transfer.py decides and
applies each member's row from its own parameters and the others' mixed ones): on a step that needs the others'
parameters, every member first publishes its mixed-scope parameters once to Ray's object store (``publish``: the
task's return value is the published object), then each member's ``step`` reads the K published objects, decides its
own row (under ``mode: beneficial`` on its own objective and the current batch), mixes its own parameters and takes
its optimizer step. Nothing else crosses between members: optimizer and solver state stay on their worker.

Why actors rather than one process: K copies of a large model do not fit one GPU, and the members only meet at
transfer time, so each can have its own GPU (or a fraction) and node. What it costs: a batch sent to K workers per
step and, on transfer steps, K parameter objects read by K workers (benchmarks/population_actors.py measures both).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
import torch
from torch import Tensor
from torch.func import functional_call

from pareto_search.search.trainable import resolve_device as resolve_worker_device
from trials.loop import resolve_device
from trials.population import Population, population_preferences, resolved_transfer
from trials.problems import Batch, Problem, make_problem
from trials.problems.base import Split
from trials.spec import TrialSpec
from trials.transfer import MTGDTransfer, PeriodicTransfer, make_transfer, mixed_names

# Bundle 0 of a trial's placement group is the trial (the coordinator); member k runs in bundle 1 + k.
COORDINATOR_BUNDLE = 0

# How long a member may take to answer one call before the trial fails (and Tune restores it from its last
# checkpoint): far above any step or evaluation of the models this runs, short enough that a worker whose node
# vanished without Ray noticing does not hang the search.
MEMBER_CALL_TIMEOUT_S = 600.0

if TYPE_CHECKING:
    from pareto_search.config import SearchConfig


def _mixed_parameters(model: torch.nn.Module, names: Sequence[str]) -> dict[str, Tensor]:
    keep = set(names)
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if n in keep}


class MemberWorker:
    """One member of a population on a worker of its own (a Ray actor; see :func:`member_actor_class`)."""

    def __init__(self, spec_data: dict[str, Any], index: int, num_threads: int) -> None:
        torch.set_num_threads(max(1, num_threads))
        spec = TrialSpec.from_dict(spec_data)
        self.index = index
        # As a trial resolves its own: `auto` is the GPU Ray gave this worker, else the CPU (one line when that GPU
        # meets a torch without CUDA).
        self.device = resolve_device(resolve_worker_device(spec.device))
        self.problem: Problem = make_problem(spec.problem, spec.problem_args)
        torch.manual_seed(spec.seed)  # the shared initialization: the same template as the trial's own process
        self.population = Population(self.problem, spec, self.device, only=index)
        self.member = self.population.members[0]
        transfer = resolved_transfer(spec)
        # The member's copy of the rule: it uses row `index` only (its share of the beneficial mask under mtgd).
        self.transfer = make_transfer(
            transfer, self.population.preferences, self.population.total_steps, spec.optimizer.lr
        )
        self.mixed_names = mixed_names(self.member.model, transfer.mixed_scope)

    def ready(self) -> int:
        return self.index

    def pid(self) -> int:
        return os.getpid()

    def publish(self) -> dict[str, Tensor]:
        """This member's mixed-scope parameters as they are now (before this step's updates)."""
        return _mixed_parameters(self.member.model, self.mixed_names)

    def _objective(self, batch: Batch) -> Callable[[dict[str, Tensor]], float]:
        member, problem = self.member, self.problem

        @torch.no_grad()
        def objective(params: dict[str, Tensor]) -> float:
            outputs = functional_call(member.model, params, (batch.inputs,))
            return float(member.solver.objective(problem.task_losses(outputs, batch)))

        return objective

    @torch.no_grad()
    def _own(self) -> dict[str, Tensor]:
        return {n: p.detach().clone() for n, p in self.member.model.named_parameters()}

    def step(self, batch: Batch, published: list[ray.ObjectRef[dict[str, Tensor]]] | None) -> tuple[Tensor, float]:
        """Transfer (when ``published`` is given), then this member's optimizer step; returns its ``(T,)`` losses and
        the seconds spent reading the others' parameters and mixing."""
        batch = batch.to(self.device)
        k, step, transfer = self.index, self.population.step, self.transfer
        pre_step: list[dict[str, Tensor]] | None = None
        start = time.perf_counter()
        if published is not None:
            shared = [{n: v.to(self.device) for n, v in params.items()} for params in ray.get(published)]
            if isinstance(transfer, PeriodicTransfer) and transfer.due(step):
                eps = transfer.epsilon(step)
                row = transfer.row(k, self._own(), shared, eps, self._objective(batch))
                transfer.mix_row(self.member.model, k, shared, row, eps)
            elif isinstance(transfer, MTGDTransfer) and transfer.enabled:
                if transfer.refresh_due(step):
                    transfer.refresh_row(k, self._own(), shared, self._objective(batch))
                pre_step = shared
        transfer_seconds = time.perf_counter() - start
        losses = self.population.train_step(batch)[0]
        if pre_step is not None:
            start = time.perf_counter()
            lr = self.population._step_lrs[k]  # this step's lr (the scheduler has moved on to the next one)
            assert isinstance(transfer, MTGDTransfer)
            MTGDTransfer.pull_row(self.member.model, k, pre_step, transfer.weights_row(k, lr))
            transfer_seconds += time.perf_counter() - start
        return losses.cpu(), transfer_seconds

    def end_epoch(self, epoch: int, mean_train_losses: Tensor) -> dict[str, float]:
        self.member.solver.end_epoch(epoch, mean_train_losses)
        return self.member.solver.diagnostics()

    def evaluate(self, split: Split) -> dict[str, float]:
        return self.problem.evaluate(self.member.model, split, self.device)

    def weights(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.member.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        member = self.member
        return {
            "model": {k: v.cpu() for k, v in member.model.state_dict().items()},
            "optimizer": member.optimizer.state_dict(),
            "scheduler": member.scheduler.state_dict(),
            "solver": member.solver.state_dict(),
            "transfer": self.transfer.state_dict(),  # this member's row of it is the one it keeps up to date
        }

    def load_state_dict(self, step: int, saved: dict[str, Any], transfer: dict[str, Tensor]) -> None:
        member = self.member
        self.population.step = step
        member.model.load_state_dict(saved["model"])
        member.optimizer.load_state_dict(saved["optimizer"])
        member.scheduler.load_state_dict(saved["scheduler"])
        member.solver.load_state_dict(saved["solver"])
        self.transfer.load_state_dict(transfer)


@dataclass
class RemoteMember:
    """What the trial's process knows of a member that lives on a worker (the fields a report reads)."""

    index: int
    preference: Tensor
    diagnostics: dict[str, float]


@dataclass(frozen=True)
class MemberPlacement:
    """Where the workers run: each with ``cpus`` CPUs and ``gpus`` GPUs (fractions allowed), in bundles 1..K of
    ``placement_group`` when the trial has one (Tune reserved them with the trial), else wherever Ray has room."""

    cpus: float = 1.0
    gpus: float = 0.0
    placement_group: Any = None
    device: str = "auto"  # as configured: each worker resolves `auto` to the GPU Ray gave it, else the CPU


class ActorPopulation:
    """The interface :class:`trials.population.Population` gives the Trainer, over K :class:`MemberWorker` actors."""

    def __init__(self, problem: Problem, spec: TrialSpec, device: torch.device, placement: MemberPlacement) -> None:
        self.problem = problem
        self.device = device
        self.step = 0
        size = spec.population.size
        transfer = resolved_transfer(spec)
        self.preferences = population_preferences(spec, problem.num_tasks)
        total_steps = spec.epochs * problem.steps_per_epoch()
        self.transfer = make_transfer(transfer, self.preferences, total_steps, spec.optimizer.lr)
        threads = max(1, math.floor(placement.cpus))
        actor = ray.remote(MemberWorker)
        # Actor handles: Ray types their methods' `.remote()` only under a bare `@ray.method`, which Ray before 2.48
        # (the lowest version this project allows is 2.40) refuses
        self.workers: list[Any] = []
        for k in range(size):
            options: dict[str, Any] = {"num_cpus": placement.cpus, "num_gpus": placement.gpus, "max_restarts": 0}
            if placement.placement_group is not None:
                from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=placement.placement_group,
                    placement_group_bundle_index=COORDINATOR_BUNDLE + 1 + k,
                )
            worker_spec = {**spec.to_dict(), "device": placement.device}
            self.workers.append(actor.options(**options).remote(worker_spec, k, threads))
        self._get([w.ready.remote() for w in self.workers])
        self.members = [RemoteMember(k, self.preferences[k], {}) for k in range(size)]
        self.transfer_seconds = 0.0  # summed over the members' calls: what transfer cost (benchmarks read it)

    def __len__(self) -> int:
        return len(self.workers)

    @staticmethod
    def _get(refs: Any) -> Any:
        return ray.get(refs, timeout=MEMBER_CALL_TIMEOUT_S)

    def _exchange_due(self, step: int) -> bool:
        transfer = self.transfer
        if isinstance(transfer, PeriodicTransfer):
            return transfer.enabled and step > 0 and step % transfer.spec.period == 0
        return transfer.enabled  # mtgd: every step reads the others' pre-step parameters

    def train_step(self, batch: Batch) -> Tensor:
        """Transfer (when due), then one optimizer step per member on its worker; returns the ``(K, T)`` losses."""
        batch_ref = ray.put(batch.to("cpu"))
        published = [w.publish.remote() for w in self.workers] if self._exchange_due(self.step) else None
        results = self._get([w.step.remote(batch_ref, published) for w in self.workers])
        self.step += 1
        self.transfer_seconds += sum(seconds for _, seconds in results)
        return torch.stack([losses for losses, _ in results])

    def end_epoch(self, epoch: int, mean_train_losses: Tensor) -> None:
        diagnostics = self._get([w.end_epoch.remote(epoch, mean_train_losses[k]) for k, w in enumerate(self.workers)])
        for member, diag in zip(self.members, diagnostics, strict=True):
            member.diagnostics = diag

    def evaluate(self, split: Split) -> list[dict[str, float]]:
        """Every member evaluated on its own worker, all at once."""
        return list(self._get([w.evaluate.remote(split) for w in self.workers]))

    def member_weights(self) -> list[dict[str, Tensor]]:
        return list(self._get([w.weights.remote() for w in self.workers]))

    def state_dict(self) -> dict[str, Any]:
        """The in-process population's layout, so a checkpoint restores under either placement. The rule's state
        (mtgd's beneficial mask) is kept row by row on the workers: row k comes from member k."""
        saved = self._get([w.state_dict.remote() for w in self.workers])
        transfer: dict[str, Tensor] = {}
        if saved and "mask" in saved[0]["transfer"]:
            transfer["mask"] = torch.stack([s["transfer"]["mask"][k] for k, s in enumerate(saved)])
        keys = ("model", "optimizer", "scheduler", "solver")
        return {"step": self.step, "transfer": transfer, "members": [{key: s[key] for key in keys} for s in saved]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["members"]) != len(self.workers):
            raise ValueError(f"checkpoint holds {len(state['members'])} members, the population {len(self.workers)}")
        self.step = int(state["step"])
        transfer = state.get("transfer", {})
        self._get(
            [
                w.load_state_dict.remote(self.step, saved, transfer)
                for w, saved in zip(self.workers, state["members"], strict=True)
            ]
        )

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []


def members_apart(spec: TrialSpec) -> int:
    """How many member workers a trial of this spec starts: K under ``placement: actors``, else none."""
    return spec.population.size if spec.population.placement == "actors" else 0


def largest_members_apart(config: SearchConfig) -> int:
    """The most member workers any trial of the search may start (0: every population stays in its trial's
    process), read from each entry's population as written (a searched size counts with its largest option)."""
    from pareto_search.config import as_distribution

    largest = 0
    for entry in config.solvers:
        population = entry.population
        if population.effective("placement") != "actors":
            continue
        size = population.effective("size")
        distribution = as_distribution(size)
        options = distribution.boundary_values() if distribution is not None else [size]
        largest = max([largest, *(int(v) for v in options if isinstance(v, int | float) and not isinstance(v, bool))])
    return largest
