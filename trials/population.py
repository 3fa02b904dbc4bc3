"""A population of K members, each a (model, optimizer, solver, preference vector).

MT2O, the finite-set methods and independent scalarizations are populations; a plain
single-model run is the K=1 case. All members start from one shared initialization (averaging
independently initialized nets is meaningless because of permutation symmetry) and see the
same batches, so member k of a population with ε0 = 0 reproduces a single run with λ_k exactly.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from trials.batched import StackedMembers, batched_backward, batching_obstacle, functional_losses
from trials.gradients import representation_gradients, task_gradients
from trials.models import MultiTaskModel
from trials.preferences import normalize_preferences, pull_to_centre, trial_preferences
from trials.problems.base import Batch, Problem
from trials.solvers import Solver, StepContext, build_solver, solver_class
from trials.spec import OptimizerSpec, TransferSpec, TrialSpec
from trials.transfer import Objective, make_transfer

MTGD_DEFAULT_ALPHA = 1.0  # α of the MTGD code (w = α·η0·r); what an unset alpha means under rule mtgd


def batches_by_default(device: torch.device) -> bool:
    """Whether ``execution: auto`` batches the members on this device: on a GPU only. On 2 CPU cores the
    vmapped LeNets measured 1.4-1.6x slower than the loop (benchmarks/population_device.py): a CPU gains
    nothing from fewer, larger kernels, a GPU running small networks is bound by kernel launches."""
    return device.type == "cuda"


class NonFiniteLossError(FloatingPointError):
    """A member's training losses became NaN or infinite: the trial has diverged."""


@dataclass
class Member:
    index: int
    preference: Tensor  # (T,), sums to 1
    model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    solver: Solver


def make_optimizer(params: list[torch.nn.Parameter], spec: OptimizerSpec) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, spec: OptimizerSpec, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def population_preferences(spec: TrialSpec, num_tasks: int) -> Tensor:
    """The ``(K, T)`` preference vectors of a trial's members: the explicit ones, or the generated ones for this
    trial (``across_trials: fill`` moves them with ``spec.repeat``) pulled toward the centre by ``interior``."""
    pop = spec.population
    if pop.preferences is not None:
        return normalize_preferences(pop.preferences, num_tasks)
    return pull_to_centre(
        trial_preferences(num_tasks, pop.size, spec.repeat if pop.across_trials == "fill" else 0), pop.interior
    )


def resolved_transfer(spec: TrialSpec) -> TransferSpec:
    """The trial's transfer with an unset strength (ε0, or α under mtgd) replaced by what suits its solver (see
    Solver): its `default_transfer_eps0`, or under mtgd α = 1 where that is not 0."""
    transfer = spec.population.transfer
    if transfer.strength is None:
        default = solver_class(spec.solver).default_transfer_eps0
        if transfer.rule == "mtgd" and default > 0:
            default = MTGD_DEFAULT_ALPHA
        transfer = transfer.with_strength(default)
    return transfer


class Population:
    """The K members of a trial in this process. ``only``: build member ``only`` alone (its model, optimizer and
    solver exactly as in the whole population, every solver still constructed in order), with transfer left to the
    caller: how a member runs on a worker of its own (pareto_search/search/member_actors.py)."""

    def __init__(self, problem: Problem, spec: TrialSpec, device: torch.device, *, only: int | None = None) -> None:
        self.problem = problem
        self.device = device
        self.step = 0
        self.total_steps = spec.epochs * problem.steps_per_epoch()
        num_tasks = problem.num_tasks
        pop = spec.population
        self.preferences = population_preferences(spec, num_tasks)
        template = problem.make_model().to(device)
        self.members: list[Member] = []
        for k in range(pop.size):
            model = copy.deepcopy(template) if only is None or k == only else None
            solver = build_solver(
                spec.solver,
                num_tasks,
                self.preferences[k],
                spec.solver_args,
                population_preferences=self.preferences,
            )
            if model is None:  # another worker's member: its solver was built only to keep the construction order
                continue
            # The method's own learnable parameters (if any) train with the model's, same optimizer.
            optimizer = make_optimizer(list(model.parameters()) + solver.extra_parameters(), spec.optimizer)
            self.members.append(
                Member(
                    index=k,
                    preference=self.preferences[k],
                    model=model,
                    optimizer=optimizer,
                    scheduler=make_scheduler(optimizer, spec.optimizer, self.total_steps),
                    solver=solver,
                )
            )
        transfer = resolved_transfer(spec)
        self._step_lrs = [spec.optimizer.lr] * pop.size  # each member's lr at its latest step (mtgd's η)
        if only is not None:  # the workers' coordinator transfers (same rows, same arithmetic)
            transfer = transfer.with_strength(0.0)
        self.transfer = make_transfer(transfer, self.preferences, self.total_steps, spec.optimizer.lr)
        self._may_fall_back = False
        self.stacked = self._choose_execution(pop.execution)

    def _choose_execution(self, execution: str) -> StackedMembers | None:
        """The batched stack when the members run batched, else ``None`` (one after the other)."""
        if execution == "sequential":
            return None
        obstacle = batching_obstacle([m.model for m in self.members], [m.solver for m in self.members])
        if execution == "batched" and obstacle is not None:
            raise ValueError(f"`population.execution` is batched, but {obstacle}; allowed here: auto, sequential")
        if obstacle is not None or (execution == "auto" and not batches_by_default(self.device)):
            return None
        # Under auto a problem's model or losses that vmap cannot trace (data-dependent Python control flow,
        # `.item()`) fall back to the sequential path at the first step instead of failing the trial.
        self._may_fall_back = execution == "auto"
        return StackedMembers([m.model for m in self.members])

    @property
    def batched(self) -> bool:
        return self.stacked is not None

    def __len__(self) -> int:
        return len(self.members)

    def train_step(self, batch: Batch) -> Tensor:
        """Transfer (when due), then one optimizer step per member; returns the ``(K, T)`` losses."""
        batch = batch.to(self.device)
        models = [m.model for m in self.members]
        state = self.transfer.before_steps(models, self.step, self._objective_on(batch))
        if self.stacked is not None:
            losses = self._batched_steps(self.stacked, batch)
        else:
            losses = torch.stack([self._member_step(member, batch) for member in self.members])
        # lrs as they were for this step (the schedulers have just moved on to the next one)
        self.transfer.after_steps(models, state, self._step_lrs)
        self.step += 1
        return losses

    def _member_step(self, member: Member, batch: Batch) -> Tensor:
        model, solver = member.model, member.solver
        model.train()
        member.optimizer.zero_grad(set_to_none=True)
        losses = self.problem.task_losses(model(batch.inputs), batch)
        self._check_finite(member.index, losses)
        needs = solver.needs
        ctx = StepContext(
            losses=losses,
            model=model,
            optimizer=member.optimizer,
            step=self.step,
            task_gradients=task_gradients(losses, model.shared_parameters()) if needs.task_gradients else None,
            closure=(lambda: self.problem.task_losses(model(batch.inputs), batch)) if needs.loss_closure else None,
            representation_gradients=(
                representation_gradients(model, batch.inputs, lambda outputs: self.problem.task_losses(outputs, batch))
                if needs.representation_gradients
                else None
            ),
        )
        solver.backward(ctx)
        self._finish_step(member, ctx)
        return losses.detach()

    def _batched_steps(self, stacked: StackedMembers, batch: Batch) -> Tensor:
        """All members' steps with one batched forward and backward (trials/batched.py); the same
        updates as :meth:`_member_step` for solvers whose update reads only their losses."""
        for member in self.members:
            member.model.train()
            member.optimizer.zero_grad(set_to_none=True)
        loss_of = functional_losses(lambda outputs: self.problem.task_losses(outputs, batch), batch.inputs)
        try:
            losses = stacked.losses(loss_of)
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(exc) from None
        except Exception as exc:  # nothing has changed yet: the forward pass only read the parameters
            if not self._may_fall_back or not self._plain_forward_runs(batch):
                raise  # forced `batched`, a later step, or the problem's own error (it fails unbatched too)
            self._warn_fallback(exc)
            return torch.stack([self._member_step(member, batch) for member in self.members])
        self._may_fall_back = False  # proven: from here on an error is a real one
        for member in self.members:
            self._check_finite(member.index, losses[member.index])
        contexts: list[StepContext] = []

        def solver_backward(k: int, proxy: Tensor) -> None:
            member = self.members[k]
            contexts.append(StepContext(losses=proxy, model=member.model, optimizer=member.optimizer, step=self.step))
            member.solver.backward(contexts[-1])

        try:
            batched_backward(losses, solver_backward)
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(exc) from None
        stacked.hand_out_gradients()
        for member, ctx in zip(self.members, contexts, strict=True):
            self._finish_step(member, ctx)
        return losses.detach()

    def _plain_forward_runs(self, batch: Batch) -> bool:
        """Whether member 0's losses compute one member at a time: then the batched forward failed on something
        ``torch.func.vmap`` cannot trace (``.item()``, Python branching on a tensor's value, ``.numpy()``, an
        ``autograd.Function`` without ``setup_context``, random ops), which the sequential path can run. The RNG is
        put back, so that the members' steps that follow draw what a sequential run would."""
        member = self.members[0]
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                self.problem.task_losses(member.model(batch.inputs), batch)
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(exc) from None
        except Exception:
            return False
        return True

    def _warn_fallback(self, exc: Exception) -> None:
        """Once per population: from here on it runs sequentially, so the batched forward is never tried again."""
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        warnings.warn(
            f"population: this problem's model or losses cannot run batched ({type(exc).__name__}: "
            f"{first_line[:200]}); its members run one after the other",
            RuntimeWarning,
            stacklevel=3,
        )
        self.stacked = None
        self._may_fall_back = False

    def _out_of_memory(self, exc: torch.OutOfMemoryError) -> torch.OutOfMemoryError:
        """Out of memory is never a reason to fall back: the sequential path would hide a GPU share too small for
        the population (and usually fail later anyway). One line that says what to change."""
        first_line = (str(exc).strip().splitlines() or ["out of memory"])[0]
        return torch.OutOfMemoryError(
            f"population: the batched step of {len(self.members)} members ran out of memory on {self.device} "
            f"({first_line[:200]}); give the trial more of a GPU (`resources.gpus_per_trial`), a smaller population "
            "or batch, or set `population.execution: sequential`"
        )

    def _check_finite(self, index: int, losses: Tensor) -> None:
        if not bool(torch.isfinite(losses).all()):
            raise NonFiniteLossError(f"member {index} at step {self.step}: non-finite losses {losses.tolist()}")

    def _finish_step(self, member: Member, ctx: StepContext) -> None:
        member.solver.step(ctx)
        self._step_lrs[member.index] = float(member.optimizer.param_groups[0]["lr"])
        member.scheduler.step()

    def end_epoch(self, epoch: int, mean_train_losses: Tensor) -> None:
        """Hand every member's solver its ``(T,)`` mean training losses of the finished epoch."""
        for member in self.members:
            member.solver.end_epoch(epoch, mean_train_losses[member.index])

    def _objective_on(self, batch: Batch) -> Objective:
        @torch.no_grad()
        def objective(k: int, params: dict[str, Tensor]) -> float:
            member = self.members[k]
            outputs = functional_call(member.model, params, (batch.inputs,))
            return float(member.solver.objective(self.problem.task_losses(outputs, batch)))

        return objective

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "transfer": self.transfer.state_dict(),
            "members": [
                {
                    "model": m.model.state_dict(),
                    "optimizer": m.optimizer.state_dict(),
                    "scheduler": m.scheduler.state_dict(),
                    "solver": m.solver.state_dict(),
                }
                for m in self.members
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["members"]) != len(self.members):
            raise ValueError(f"checkpoint holds {len(state['members'])} members, the population {len(self.members)}")
        self.step = int(state["step"])
        self.transfer.load_state_dict(state.get("transfer", {}))  # absent from checkpoints of older versions
        for member, saved in zip(self.members, state["members"], strict=True):
            member.model.load_state_dict(saved["model"])
            member.optimizer.load_state_dict(saved["optimizer"])
            member.scheduler.load_state_dict(saved["scheduler"])
            member.solver.load_state_dict(saved["solver"])
