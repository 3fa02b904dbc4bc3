"""What Ray runs for one trial: build the trial from the config, train, report, checkpoint.

Every epoch the trial reports its members' objectives (own directions and minimization
form; on validation, and on test for the report), its own hypervolume, and a checkpoint holding the
full trainer state plus each member's weights, sealed by a checksum manifest. A retried or resumed
trial continues from its newest intact checkpoint, bit-identically (see trials/loop.py and checkpoints.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from pareto_search.config import SearchConfig, parse_config
from pareto_search.devices import check_assigned_gpus_usable
from pareto_search.front.pareto import Front, FrontPoint, NonFiniteValuesWarning, Objective, to_min_form
from pareto_search.search.budget import plateaued
from pareto_search.search.checkpoints import restore, seal
from pareto_search.search.space import unpack
from trials.loop import EpochReport, Trainer
from trials.problems import Problem
from trials.psl import PSLPopulation
from trials.spec import TrialSpec

TRAINER_FILE = "trainer.pt"


def member_file(member: int) -> str:
    return f"member_{member}.pt"


# A Pareto set learning trial's N points are one conditioned model at N preferences: its checkpoint stores that model
# once, in this file, and every point names it (the point's own preference is in its data, which serving reads).
CONDITIONED_FILE = "conditioned.pt"


def stored_weights(trainer: Trainer) -> dict[str, dict[str, torch.Tensor]]:
    """What a checkpoint stores per file: each member's weights (``member_k.pt``), or a conditioned model once."""
    if isinstance(trainer.population, PSLPopulation):
        model = trainer.population.members[0].model  # one model: no copy per point (as member_weights: on the CPU)
        return {CONDITIONED_FILE: {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return {member_file(k): weights for k, weights in enumerate(trainer.member_weights())}


def weights_file_of(member: int, conditioned: bool) -> str:
    """The checkpoint file that holds ``member``'s weights."""
    return CONDITIONED_FILE if conditioned else member_file(member)


def resolve_device(requested: str) -> str:
    """``auto``: the GPU Ray assigned to this trial (CUDA_VISIBLE_DEVICES is set by Ray, so
    ``cuda`` is that GPU), else the CPU."""
    check_assigned_gpus_usable(ray.get_gpu_ids())  # a GPU given to a torch without CUDA: one line, not the CPU
    if requested == "auto":
        return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    return requested


def _threads() -> int:
    resources = tune.get_context().get_trial_resources()
    cpus = resources.required_resources.get("CPU", 1) if resources is not None else 1
    return max(1, math.floor(cpus))


def report_hv(report: EpochReport, objectives: tuple[Objective, ...], reference_point: tuple[float, ...]) -> float:
    """The hypervolume of one epoch's members (the trial's ``trial_hv`` at that epoch)."""
    values = [[float(m.metrics[o.name]) for o in objectives] for m in report.members]
    front = Front(
        objectives, tuple(FrontPoint(f"m{m.member}", tuple(row)) for m, row in zip(report.members, values, strict=True))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteValuesWarning)  # a NaN member simply adds no volume
        return front.hypervolume(reference_point).value


def epoch_metrics(
    report: EpochReport, objectives: tuple[Objective, ...], reference_point: tuple[float, ...], label: str
) -> dict[str, Any]:
    values = [[float(m.metrics[o.name]) for o in objectives] for m in report.members]
    points_min: list[list[float]] = to_min_form(values, [o.direction for o in objectives]).tolist() if values else []
    trial_hv = report_hv(report, objectives, reference_point)
    metrics: dict[str, Any] = {
        "epoch": report.epoch,  # the trainer's own count: a trial restarted from scratch counts again from 1
        "label": label,
        "members": len(values),
        "values": values,
        "points_min": points_min,
        "preferences": [m.preference for m in report.members],
        "train_losses": [m.train_losses for m in report.members],
        "trial_hv": trial_hv,
        "epoch_seconds": report.train_seconds + report.eval_seconds,
    }
    for k, row in enumerate(values):
        for objective, value in zip(objectives, row, strict=True):
            metrics[f"m{k}/{objective.name}"] = value
    for member in report.members:  # the solver's own scalars (e.g. AdaTask's relative AU), logged per member
        metrics.update({f"m{member.member}/diag/{name}": value for name, value in member.diagnostics.items()})
    metrics.update(affinity_metrics(report.extra))
    for j, objective in enumerate(objectives):  # each objective's best over the members (for Optuna)
        column = [row[j] for row in values if math.isfinite(row[j])]
        best = (min(column) if objective.direction == "min" else max(column)) if column else math.nan
        metrics[f"best/{objective.name}"] = best
    return metrics


def held_out_metrics(trainer: Trainer, objectives: tuple[Objective, ...]) -> dict[str, Any]:
    """Each member's objectives on the test split at this epoch (``test_values``, one row per member, and
    ``m<k>/test/<objective>`` for MLflow): the front reports them beside the validation values it is made of
    (its test HV), never selects on them."""
    rows = [[float(metrics[o.name]) for o in objectives] for metrics in trainer.evaluate("test")]
    out: dict[str, Any] = {"test_values": rows}
    for k, row in enumerate(rows):
        out.update({f"m{k}/test/{o.name}": v for o, v in zip(objectives, row, strict=True)})
    return out


def affinity_metrics(extra: dict[str, Any]) -> dict[str, Any]:
    """TAG's inter-task affinity when the trial measures it (trials/affinity.py): the epoch's matrix
    as scalars ``affinity/<source>_to_<target>`` (logged to MLflow), plus the running total and the
    task names as plain lists for the driver (the `groups` command and the heatmap)."""
    tasks = extra.get("affinity_tasks")
    if tasks is None:
        return {}
    metrics: dict[str, Any] = {"affinity_tasks": list(tasks)}
    if "affinity" in extra:  # absent in an epoch without a measurement (affinity_every > steps per epoch)
        for source, row in zip(tasks, extra["affinity"], strict=True):
            metrics.update({f"affinity/{source}_to_{target}": v for target, v in zip(tasks, row, strict=True)})
    if "affinity_total" in extra:
        metrics["affinity_total"] = extra["affinity_total"]
    return metrics


def _quiet_termination_hook(unraisable: Any) -> None:
    """``sys.unraisablehook`` of a trial worker: Ray's SIGTERM handler raises SystemExit wherever the worker is,
    and inside a weakref callback or ``__del__`` Python cannot raise it, so it printed "Exception ignored …" and a
    traceback into the user's terminal while a stopped search shut its workers down. That one case is dropped
    (the process is being terminated anyway); every other unraisable exception is printed as before."""
    if unraisable.exc_type is SystemExit:
        return
    sys.__unraisablehook__(unraisable)


def quiet_termination() -> None:
    """Install :func:`_quiet_termination_hook` in this worker process (idempotent)."""
    sys.unraisablehook = _quiet_termination_hook


# How long Tune waits, when it hands this worker to the next trial (reuse_actors), for the previous trial's thread to
# end. Tune's 2 s default was too short on a loaded machine: the reset then fails, Tune errors the new trial without
# telling the search algorithm, which keeps counting it as running and, at max_concurrent_trials, never starts
# another — the search idled forever. The thread ends at its next report, normally within milliseconds.
THREAD_TIMEOUT_S = "120"


def run_trial(params: dict[str, Any], *, plan: dict[str, Any]) -> None:
    """The Tune function trainable; ``plan`` is :meth:`SearchPlan.to_dict` (plain data)."""
    quiet_termination()
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", THREAD_TIMEOUT_S)  # read by Tune at each reset
    config = parse_config(plan["config"])
    objectives = tuple(Objective(o["name"], o["direction"]) for o in plan["objectives"])
    reference_point = tuple(plan["reference_point"])
    variant, values, seed, repeat = unpack(params)
    spec = config.trial_spec(variant, values, seed, repeat)
    spec = dataclasses.replace(spec, device=resolve_device(spec.device))
    trainer = Trainer(spec, num_threads=_threads(), population_factory=_member_workers(config))
    try:
        _train(trainer, config, objectives, reference_point, variant)
    finally:  # the members' workers end with their trial (with reuse_actors this process lives on)
        close = getattr(trainer.population, "close", None)
        if close is not None:
            close()


def _member_workers(config: SearchConfig) -> Callable[[Problem, TrialSpec, torch.device], Any]:
    """The Trainer's population factory for ``placement: actors``: members on workers of their own, in this trial's
    placement group (bundles 1..K, reserved by Tune). Each worker resolves the configured ``device`` itself (``auto``:
    the GPU Ray gave that worker), not the trial process's."""

    def factory(problem: Problem, spec: TrialSpec, device: torch.device) -> Any:
        from ray.util import get_current_placement_group

        from pareto_search.search.member_actors import ActorPopulation, MemberPlacement

        resources = config.resources
        placement = MemberPlacement(
            resources.cpus_per_member, resources.gpus_per_member, get_current_placement_group(), config.device
        )
        return ActorPopulation(problem, spec, device, placement)

    return factory


def _train(
    trainer: Trainer,
    config: SearchConfig,
    objectives: tuple[Objective, ...],
    reference_point: tuple[float, ...],
    variant: int,
) -> None:
    checkpoint = tune.get_checkpoint()
    restored = restore(checkpoint, trainer.load_state_dict, TRAINER_FILE) if checkpoint is not None else None
    if restored is not None:
        print(f"trial {tune.get_context().get_trial_id()}: {restored.message()}", file=sys.stderr, flush=True)
    label = config.solvers[variant].display_label()
    every = config.search.checkpoint_every
    budgeted = config.search.budget_model_epochs is not None
    # A budget's trial ends once its HV stops rising (search/budget.py). Its history starts from the trainer's own
    # record of its epochs, restored with its checkpoint, so a resumed trial stops where the uninterrupted one would.
    hv_history = [report_hv(r, objectives, reference_point) for r in trainer.history] if budgeted else []
    while not trainer.done:
        report = trainer.train_epoch()
        metrics = epoch_metrics(report, objectives, reference_point, label)
        metrics.update(held_out_metrics(trainer, objectives))
        metrics["model_epochs"] = trainer.model_epochs  # the budget spent: K per epoch, P for a PSL model
        if restored is not None:  # with every later result: the last one is what the summary reads
            metrics["recovery"] = restored.message()
        hv_history.append(metrics["trial_hv"])
        plateau = budgeted and plateaued(hv_history)
        if plateau:
            metrics["plateau"] = True
        if report.epoch % every and not (trainer.done or plateau):  # between checkpoints: the result alone
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            trainer.save_checkpoint(Path(folder) / TRAINER_FILE)
            for name, weights in stored_weights(trainer).items():
                torch.save(weights, Path(folder) / name)
            seal(Path(folder))  # last: a checkpoint whose files do not match it is known to be damaged
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        if plateau:
            return
