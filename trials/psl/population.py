"""The trainer-side "population" of Pareto set learning: the interface :class:`trials.population.Population`
gives the Trainer (``members``, ``train_step``, ``end_epoch``, ``step``, ``state_dict``), over ONE conditioned
model. Its members are the N evaluation preferences: member k is the model at preference k, so the Trainer
evaluates, reports and stores them like a population's members and the service puts them on the front as
points of this trial with their preferences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trials.population import NonFiniteLossError, make_optimizer, make_scheduler
from trials.problems.base import Batch, Problem
from trials.psl.conditioning import AtPreference, make_conditioned
from trials.psl.sampling import drawn_preferences, evaluation_preferences
from trials.psl.scalarization import Scalarizer
from trials.spec import PSLSpec, TrialSpec


@dataclass
class PSLMember:
    """One evaluation preference: what the Trainer reads of a member (the optimizer is the shared one)."""

    index: int
    preference: Tensor  # (T,) float64, sums to 1
    model: AtPreference
    optimizer: torch.optim.Optimizer
    solver: Scalarizer  # its diagnostics()


class PSLPopulation:
    def __init__(self, problem: Problem, spec: TrialSpec, device: torch.device) -> None:
        psl = spec.population.psl
        assert psl is not None
        if spec.affinity_every:
            raise ValueError(
                f"`affinity_every` is {spec.affinity_every} with population.psl: the inter-task affinity is "
                "measured on a member's own model, which a conditioned model does not have; allowed here: 0"
            )
        self.problem = problem
        self.device = device
        self.spec: PSLSpec = psl
        self.seed = spec.seed
        self.step = 0
        self.total_steps = spec.epochs * problem.steps_per_epoch()
        num_tasks = problem.num_tasks
        base = problem.make_model()  # its initialization from the seeded global RNG, as a population's
        example = problem.example_inputs(2)
        self.model = make_conditioned(psl.conditioning, base, num_tasks, psl.rank, psl.hidden, example).to(device)
        self.optimizer = make_optimizer([p for p in self.model.parameters() if p.requires_grad], spec.optimizer)
        self.scheduler = make_scheduler(self.optimizer, spec.optimizer, self.total_steps)
        self.scalarizer = Scalarizer(spec.solver, spec.solver_args, num_tasks, psl.cosmos_penalty)
        self.preferences = evaluation_preferences(num_tasks, psl.points)
        self.members = [
            PSLMember(k, pref, AtPreference(self.model, pref).to(device), self.optimizer, self.scalarizer)
            for k, pref in enumerate(self.preferences)
        ]

    @property
    def model_epochs_per_epoch(self) -> int:
        """The budget of one epoch in model-epochs: one per drawn preference (each is a forward and backward
        pass of the whole model over every training example), whatever the number of points evaluated."""
        return self.spec.samples

    def __len__(self) -> int:
        return len(self.members)

    def train_step(self, batch: Batch) -> Tensor:
        """One optimizer step on the scalarized losses of P drawn preferences; returns their mean task losses
        as every member's row ``(N, T)`` (the training losses of the conditioned model, not of one point)."""
        batch = batch.to(self.device)
        psl = self.spec
        drawn = drawn_preferences(self.seed, self.step, self.problem.num_tasks, psl.samples, psl.concentration)
        drawn = drawn.to(self.device)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.model.forward_many(batch.inputs, drawn)
        losses = torch.stack([self.problem.task_losses(out, batch) for out in outputs])  # (P, T)
        if not bool(torch.isfinite(losses).all()):
            raise NonFiniteLossError(f"PSL model at step {self.step}: non-finite losses {losses.tolist()}")
        self.scalarizer.observe(losses)
        total = torch.stack([self.scalarizer(pref, loss) for pref, loss in zip(drawn, losses, strict=True)]).mean()
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return losses.detach().mean(dim=0).expand(len(self.members), -1)

    def end_epoch(self, epoch: int, mean_train_losses: Tensor) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "psl": {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scalarizer": self.scalarizer.state_dict(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "psl" not in state:
            raise ValueError("checkpoint holds a population of members, this trial trains a PSL model")
        self.step = int(state["step"])
        self.model.load_state_dict(state["psl"]["model"])
        self.optimizer.load_state_dict(state["psl"]["optimizer"])
        self.scheduler.load_state_dict(state["psl"]["scheduler"])
        self.scalarizer.load_state_dict(state["psl"]["scalarizer"])
