"""The training loop of one trial: epochs of population steps, evaluation, reporting, checkpoints.

The loop knows nothing about which solver runs: it asks the population to step, evaluates every
member on the validation split after every epoch and hands an :class:`EpochReport` to a callback
(the Ray Tune adapter reports it; a plain script prints it). A checkpoint holds everything
(models, optimizers, schedulers, solver state, step counters, RNG state) and the data order
is derived from (seed, epoch), so a resumed run continues bit-identically; on a GPU with the deterministic
cuDNN/cuBLAS settings of :func:`deterministic_cuda`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from trials.affinity import AffinityProbe, add_matrices
from trials.population import Population
from trials.problems import Batch, Problem, make_problem
from trials.problems.base import Split
from trials.psl import PSLPopulation
from trials.spec import SpecMismatch, TrialSpec, spec_difference

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes


@dataclass
class MemberReport:
    member: int
    preference: list[float]
    metrics: dict[str, float]  # validation metrics, every one the problem defines
    train_losses: list[float]  # per-task mean training loss over the epoch
    diagnostics: dict[str, float] = field(default_factory=dict)  # the solver's own per-epoch scalars


@dataclass
class EpochReport:
    epoch: int  # 1-based: the number of epochs completed
    members: list[MemberReport]
    train_seconds: float
    eval_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` is {name!r} but CUDA is not available here; allowed: cpu, auto")
    return device


# cuBLAS is deterministic only with a fixed workspace per stream (NVIDIA's cuBLAS docs, "Results reproducibility");
# ":4096:8" is the setting torch's reproducibility notes name. It must be in the environment before cuBLAS starts.
CUBLAS_WORKSPACE = ":4096:8"


def deterministic_cuda() -> None:
    """Make a trial on a GPU repeat its arithmetic run after run (the seed fixes the data order and the
    initialization; this fixes the kernels): cuDNN without autotuning and with its deterministic algorithms, cuBLAS
    with a fixed workspace, and torch's deterministic implementations wherever an op has one. ``warn_only``: an op
    without a deterministic CUDA implementation (a plug-in problem's scatter-add, say) warns that the run is not
    repeatable instead of failing the trial. Process-wide, like the seed; a CPU trial never calls it (its kernels
    are deterministic already, and deterministic mode would fill new tensors with NaN for nothing)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data-order RNG of one epoch, a pure function of (seed, epoch): resuming needs only the epoch."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(state)


class ReportedMember(Protocol):
    """What the Trainer reports of every population's member."""

    @property
    def index(self) -> int: ...
    @property
    def preference(self) -> torch.Tensor: ...


class WorkerMember(ReportedMember, Protocol):
    """What the Trainer reads of a member that trains on a worker of its own (its model is not in this process)."""

    @property
    def diagnostics(self) -> dict[str, float]: ...  # the solver's scalars of the latest epoch


class WorkerPopulation(Protocol):
    """A population whose members train on workers of their own (the service's Ray actors,
    pareto_search/search/member_actors.py): the interface :class:`Population` gives the Trainer, plus evaluation
    and weights, which only the workers that hold the models can give."""

    step: int

    @property
    def members(self) -> Sequence[WorkerMember]: ...
    def __len__(self) -> int: ...
    def train_step(self, batch: Batch) -> torch.Tensor: ...
    def end_epoch(self, epoch: int, mean_train_losses: torch.Tensor) -> None: ...
    def evaluate(self, split: Split) -> list[dict[str, float]]: ...
    def member_weights(self) -> list[dict[str, torch.Tensor]]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Trainer:
    """Runs one trial. ``problem`` may be passed in to share loaded data between trainers."""

    def __init__(
        self,
        spec: TrialSpec,
        *,
        problem: Problem | None = None,
        num_threads: int | None = None,
        population_factory: Callable[[Problem, TrialSpec, torch.device], WorkerPopulation] | None = None,
    ) -> None:
        if num_threads is not None:
            torch.set_num_threads(max(1, num_threads))
        self.spec = spec
        self.device = resolve_device(spec.device)
        if self.device.type == "cuda":
            deterministic_cuda()  # before the first CUDA kernel of this process: cuBLAS reads its setting once
        self.problem = problem if problem is not None else make_problem(spec.problem, spec.problem_args)
        torch.manual_seed(spec.seed)  # the shared initialization of all members comes from the seed
        # Pareto set learning trains one conditioned model whose points stand in for the members (trials/psl/).
        self.population: Population | PSLPopulation | WorkerPopulation
        if spec.population.placement != "process":
            if population_factory is None:  # the members' workers are Ray actors: the service starts them
                raise ValueError(
                    f"`population.placement` is {spec.population.placement!r}, whose members run on Ray actors that "
                    "the search service starts; allowed for a trial trained on its own: process"
                )
            self.population = population_factory(self.problem, spec, self.device)
        elif spec.population.psl is not None:
            self.population = PSLPopulation(self.problem, spec, self.device)
        else:
            self.population = Population(self.problem, spec, self.device)
        # TAG's inter-task affinity of member 0 (trials/affinity.py); it leaves training bit-identical.
        self.affinity = AffinityProbe(spec.affinity_every, spec.affinity_lookahead) if spec.affinity_every else None
        self.epoch = 0
        self.history: list[EpochReport] = []

    @property
    def done(self) -> bool:
        return self.epoch >= self.spec.epochs

    @property
    def model_epochs(self) -> int:
        """Training spent so far in model-epochs (one model over every training example once): K per epoch for
        K members, P per epoch for a PSL model that draws P preferences per step."""
        return self.epoch * getattr(self.population, "model_epochs_per_epoch", len(self.population))

    def train_epoch(self) -> EpochReport:
        start = time.perf_counter()
        sums = torch.zeros(len(self.population), self.problem.num_tasks, dtype=torch.float64)
        batches = 0
        for batch in self.problem.train_batches(epoch_generator(self.spec.seed, self.epoch)):
            if self.affinity is not None and self.affinity.due(self.population.step):
                self._measure_affinity(batch)  # before the step: at the parameters the batch meets
            sums += self.population.train_step(batch).to(torch.float64).cpu()
            batches += 1
        self.epoch += 1
        self.population.end_epoch(self.epoch, sums / max(batches, 1))
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        evaluated = self.evaluate("val")
        population = self.population
        reported: Sequence[ReportedMember] = population.members
        diagnostics = (
            [m.solver.diagnostics() for m in population.members]
            if isinstance(population, Population | PSLPopulation)
            else [m.diagnostics for m in population.members]
        )
        members = [
            MemberReport(
                member=m.index,
                preference=m.preference.tolist(),
                metrics=metrics,
                train_losses=(sums[m.index] / max(batches, 1)).tolist(),
                diagnostics=diag,
            )
            for m, metrics, diag in zip(reported, evaluated, diagnostics, strict=True)
        ]
        report = EpochReport(self.epoch, members, train_seconds, time.perf_counter() - start)
        report.extra.update(self._affinity_extra())
        self.history.append(report)
        return report

    def _measure_affinity(self, batch: Batch) -> None:
        assert self.affinity is not None
        # the spec allows the affinity only for members in this process, and a PSL population refuses it
        assert isinstance(self.population, Population)
        member = self.population.members[0]
        self.affinity.measure(member.model, member.optimizer, self.problem, batch.to(self.device))

    def _affinity_extra(self) -> dict[str, Any]:
        """``affinity``: the epoch's mean T×T matrix (row = source task i, column = target j);
        ``affinity_total``: the sum of the epoch means so far, what grouping uses. The total is
        carried by the history (which checkpoints hold), so a resumed run continues it."""
        if self.affinity is None:
            return {}
        mean, count = self.affinity.end_epoch()
        totals = [r.extra["affinity_total"] for r in self.history if "affinity_total" in r.extra]
        previous = totals[-1] if totals else None
        extra: dict[str, Any] = {"affinity_tasks": list(self.problem.task_names), "affinity_measurements": count}
        if mean is not None:
            extra["affinity"] = mean
            extra["affinity_total"] = add_matrices(previous, mean)
        elif previous is not None:
            extra["affinity_total"] = previous
        return extra

    def run(self, callback: Callable[[EpochReport], bool | None] | None = None) -> list[EpochReport]:
        """Train until ``spec.epochs``; a callback returning ``False`` stops early."""
        while not self.done:
            report = self.train_epoch()
            if callback is not None and callback(report) is False:
                break
        return self.history

    def evaluate(self, split: Split = "test") -> list[dict[str, float]]:
        population = self.population
        if not isinstance(population, Population | PSLPopulation):
            return population.evaluate(split)  # members on workers of their own evaluate there, all at once
        # a PSL point (AtPreference) is not a MultiTaskModel but predicts like one: all evaluate calls
        return [self.problem.evaluate(m.model, split, self.device) for m in population.members]  # type: ignore[arg-type]

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "spec": self.spec.to_dict(),
            "epoch": self.epoch,
            "population": self.population.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "history": [r.to_dict() for r in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"checkpoint format {state.get('format')!r} is not supported; expected {CHECKPOINT_FORMAT}"
            )
        difference = spec_difference(state["spec"], self.spec)  # device and execution are not compared
        if difference is not None:
            raise SpecMismatch(f"checkpoint was written by a different trial spec ({difference}); refusing to resume")
        self.epoch = int(state["epoch"])
        self.population.load_state_dict(state["population"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.history = [
            EpochReport(
                epoch=r["epoch"],
                members=[MemberReport(**m) for m in r["members"]],
                train_seconds=r["train_seconds"],
                eval_seconds=r["eval_seconds"],
                extra=r["extra"],
            )
            for r in state["history"]
        ]

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename) so a crash never leaves a half-written checkpoint."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(Path(path), map_location="cpu", weights_only=True))

    def member_weights(self) -> list[dict[str, torch.Tensor]]:
        """Each member's weights on the CPU: what the service stores per front point."""
        population = self.population
        if not isinstance(population, Population | PSLPopulation):
            return population.member_weights()
        return [{k: v.detach().cpu().clone() for k, v in m.model.state_dict().items()} for m in population.members]
