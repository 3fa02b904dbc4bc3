"""A learning rate found once, before the trials: ``optimizer.lr: {probe: [lo, hi]}``.

Why: with a sampled learning rate, a search of a few populations lives or dies by a few random draws (measured:
our HV spread was 7x plain Optuna's on Multi-MNIST). A probe trains one model per candidate learning rate
(log-spaced over [lo, hi], ends included) for ``PROBE_EPOCHS`` epochs: the entry's solver at equal task weights,
every candidate from the same initialization (the search's seed), under the entry's schedule for the search's
epochs. The candidate whose validation point has the largest hypervolume (the search's objectives and reference
point) becomes the entry's fixed learning rate for every trial.

On this machine's own Ray (the embedded one, one node) with CPU trials, the candidates train one after another in
the driver, which has torch and the trial code loaded already: a Ray task would start a worker process and import
them again (~4 s a slot on 2 cores, against a candidate-epoch of a fraction of a second on small problems), and Ray
starts the trials' actors in processes of their own whatever the tasks left behind. Elsewhere (a cluster, GPU trials)
they run as Ray tasks with a trial's resources, side by side where slots allow. Either way each candidate is built
and trained the same way (``_train``): the same points. The choice is written into
the plan (``search.json``), so a resumed search does not probe again; a probe costs candidates x
``PROBE_EPOCHS`` model-epochs, which the plan records with it. A candidate that is the same model for two entries
(their probe specs are equal: e.g. ``method: mt2o`` and the same entry with ``transfer: {eps0: 0}``, since one
model at equal weights has nothing to transfer) is trained once and counts for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from pareto_search.config import (
    PROBE_EPOCHS,
    PROBE_PATH,
    Distribution,
    ResourcesConfig,
    SearchConfig,
    as_distribution,
    first_values,
    parse_config,
)
from pareto_search.config import probe_candidates as candidates_of
from pareto_search.console import say
from pareto_search.devices import check_assigned_gpus_usable
from pareto_search.errors import SearchStopped
from pareto_search.front.pareto import hypervolume, to_min_form
from pareto_search.plan import SearchPlan
from trials.spec import TrialSpec

# One epoch underrates the larger of two near-equal rates: its lead shows later (Multi-MNIST 6k, one model at equal
# weights, seed 1: 4.6e-3 led 1e-2 by 7 % in HV after the first epoch, they were level after the second, and 1e-2
# led from the third on: 0.816 against 0.793 after five). So the largest rate within 10 % of the best HV is kept,
# as a learning-rate range test keeps the largest rate that still trains well.
PROBE_TOLERANCE = 0.9
POLL_S = 1.0  # how often the driver looks at the probes while it waits


@dataclass(frozen=True)
class ProbeResult:
    """What one entry's probe tried and chose."""

    entry: int
    candidates: tuple[float, ...]
    points: tuple[tuple[float, ...] | None, ...]  # each candidate's validation objectives; None: it failed
    scores: tuple[float, ...]  # each point's HV (-inf: failed or not finite)
    chosen: float
    epochs: int = PROBE_EPOCHS
    # How many of the candidates this entry's probe trained itself; the others were the same models as an earlier
    # entry's candidates (equal probe specs) and were trained once, for both. None: all of them.
    trained: int | None = None
    # Model-epochs of one candidate's epoch: 1, or a Pareto set learning model's P preferences drawn per example.
    per_epoch: int = 1

    @property
    def model_epochs(self) -> int:
        return (len(self.candidates) if self.trained is None else self.trained) * self.epochs * self.per_epoch

    def where(self) -> str:
        return f"solvers[{self.entry}].{'.'.join(PROBE_PATH)}"

    def line(self) -> str:
        tried = ", ".join(
            f"{lr:.3g} → {'failed' if point is None else f'HV {score:.4g}'}"
            for lr, point, score in zip(self.candidates, self.points, self.scores, strict=True)
        )
        shared = "" if self.trained in (None, len(self.candidates)) else ", the others shared with an earlier entry"
        chose = f"chose {self.chosen:.3g} ({self.model_epochs} model-epochs{shared})"
        return f"learning-rate probe of `{self.where()}`: {tried}; {chose}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["scores"] = [s if math.isfinite(s) else None for s in self.scores]  # JSON has no -inf
        data["model_epochs"] = self.model_epochs
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        return cls(
            entry=int(data["entry"]),
            candidates=tuple(float(c) for c in data["candidates"]),
            points=tuple(None if p is None else tuple(float(v) for v in p) for p in data["points"]),
            scores=tuple(-math.inf if s is None else float(s) for s in data["scores"]),
            chosen=float(data["chosen"]),
            epochs=int(data.get("epochs", PROBE_EPOCHS)),
            trained=None if data.get("trained") is None else int(data["trained"]),
            per_epoch=int(data.get("per_epoch", 1)),
        )


def pending_probes(config: SearchConfig) -> list[tuple[int, Distribution]]:
    """The entries whose learning rate is still to be probed."""
    found = []
    for index, entry in enumerate(config.solvers):
        dist = as_distribution(getattr(entry.optimizer, PROBE_PATH[1]))
        if dist is not None and dist.kind == "probe":
            found.append((index, dist))
    return found


def probe_spec(config: SearchConfig, index: int, lr: float) -> TrialSpec:
    """One candidate: entry ``index`` as one model at equal task weights; values the entry samples sit at the
    first value of their distribution (as the config's validation has them). A Pareto set learning entry keeps its
    conditioned model (what its trials train: a hypernetwork's rate is not a plain network's), scored at its
    evaluation preference nearest equal weights (``_train``)."""
    entry = config.solvers[index]
    sample = first_values(entry.space())
    population = sample.get("population") or {}
    if population.get("psl") is not None:
        sample["population"] = {"size": 1, "psl": population["psl"]}
    else:
        sample["population"] = {"size": 1}  # one model, the centre preference
    sample["optimizer"] = {**sample["optimizer"], "lr": lr}
    return config.trial_spec(index, sample, config.seed)


def _train(spec: TrialSpec, epochs: int, names: tuple[str, ...], threads: int) -> tuple[float, ...]:
    """Train one candidate (its device resolved already); its validation objectives."""
    from trials.loop import Trainer

    trainer = Trainer(spec, num_threads=threads)
    report = None
    for _ in range(min(epochs, spec.epochs)):
        report = trainer.train_epoch()
    assert report is not None  # epochs >= 1
    # One member, or a conditioned model's evaluation preferences: the one nearest equal weights
    equal = 1.0 / len(report.members[0].preference)
    member = min(report.members, key=lambda m: sum((w - equal) ** 2 for w in m.preference))
    return tuple(float(member.metrics[name]) for name in names)


def _train_candidate(spec: TrialSpec, epochs: int, names: tuple[str, ...], threads: int) -> Any:
    """A Ray generator task: says it started (so the driver can tell a running probe from one still waiting
    for a slot), then trains and yields the candidate's validation objectives."""
    yield "started"
    from pareto_search.search.trainable import quiet_termination, resolve_device

    quiet_termination()  # a probe cancelled by a stopped search ends without a traceback (trainable.py)
    check_assigned_gpus_usable(ray.get_gpu_ids())  # a GPU candidate on a CPU torch fails, not trains on the CPU
    yield _train(dataclasses.replace(spec, device=resolve_device(spec.device)), epochs, names, threads)


def choose(plan: SearchPlan, points: list[tuple[float, ...] | None]) -> tuple[list[float], int]:
    """Each point's HV against the plan's reference point, and the index of the one to keep: the largest rate
    whose HV is within ``PROBE_TOLERANCE`` of the best (candidates ascend), else (when no point dominates the
    reference) the smallest sum of the objectives in minimization form."""
    directions = [o.direction for o in plan.objectives]
    reference = to_min_form([plan.reference_point], directions)[0]
    scores: list[float] = []
    keys: list[tuple[float, float]] = []
    for point in points:
        if point is None or not all(math.isfinite(v) for v in point):
            scores.append(-math.inf)
            keys.append((-math.inf, -math.inf))
            continue
        minimized = to_min_form([point], directions)
        scores.append(hypervolume(minimized, reference).value)
        keys.append((scores[-1], -float(minimized.sum())))
    best = max(range(len(points)), key=lambda i: keys[i])
    if scores[best] > 0:
        best = max(i for i, score in enumerate(scores) if score >= PROBE_TOLERANCE * scores[best])
    return scores, best


def run_probes(
    plan: SearchPlan,
    log: Callable[[str], None] = say,
    *,
    here: bool = False,
) -> tuple[SearchPlan, list[ProbeResult]]:
    """Probe every entry that asks for it; the plan with the chosen learning rates. ``here``: the candidates train
    one after another in this process (see :func:`trains_here`); else as Ray tasks side by side (Ray must be
    running). A candidate equal to another entry's is trained once."""
    pending = [
        (index, candidates, [probe_spec(plan.config, index, lr) for lr in candidates])
        for index, candidates in ((i, candidates_of(d)) for i, d in pending_probes(plan.config))
    ]
    if not pending:
        return plan, []
    slot_of: dict[str, int] = {}  # a spec's identity -> its place in the list of models to train
    unique: list[TrialSpec] = []
    trained_by: dict[int, int] = {}  # entry -> how many of its candidates it trains itself
    for index, candidates, specs in pending:
        log(
            f"[{plan.name}] learning-rate probe of `solvers[{index}].optimizer.lr`: "
            f"{len(candidates)} candidates in [{candidates[0]:.3g}, {candidates[-1]:.3g}], {PROBE_EPOCHS} epoch each"
        )
        trained_by[index] = 0
        for spec in specs:
            if _identity(spec) not in slot_of:
                slot_of[_identity(spec)] = len(unique)
                unique.append(spec)
                trained_by[index] += 1
    trained_points = (_train_here if here else _run_candidates)(plan, unique, log)
    results: list[ProbeResult] = []
    config_data = plan.config.model_dump(mode="json")
    for index, candidates, specs in pending:
        points = [trained_points[slot_of[_identity(spec)]] for spec in specs]
        if all(p is None for p in points):
            raise SearchStopped(
                f"learning-rate probe of `solvers[{index}].optimizer.lr`: every candidate failed (above); "
                f"search '{plan.name}' stopped before its trials"
            )
        scores, best = choose(plan, points)
        trained = None if trained_by[index] == len(candidates) else trained_by[index]
        psl = specs[0].population.psl
        per_epoch = psl.samples if psl is not None else 1
        result = ProbeResult(
            index, candidates, tuple(points), tuple(scores), candidates[best], trained=trained, per_epoch=per_epoch
        )
        log(f"[{plan.name}] {result.line()}")
        config_data["solvers"][index]["optimizer"]["lr"] = result.chosen
        results.append(result)
    resolved = dataclasses.replace(
        plan, config=parse_config(config_data), probes=plan.probes + tuple(r.to_dict() for r in results)
    )
    return resolved, results


def _identity(spec: TrialSpec) -> str:
    """Equal for two specs that train the same model the same way (specs hold dicts: not hashable)."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True, default=repr)


def trains_here(plan: SearchPlan, address: str | None) -> bool:
    """Whether the candidates train in the driver: the search's Ray is this machine alone (no ``--address``, one
    live node) and its trials train on the CPU. A cluster's driver may lack the trials' data or cores, and a GPU
    trial's device is the one Ray assigns it."""
    if address is not None or plan.config.resources.gpus_per_trial > 0:
        return False
    if not ray.is_initialized():
        return True  # the embedded Ray is this machine
    return sum(1 for node in ray.nodes() if node.get("Alive")) == 1


def _train_here(plan: SearchPlan, specs: list[TrialSpec], log: Callable[[str], None]) -> list[tuple[float, ...] | None]:
    """Each candidate in turn in this process, with a trial's threads (put back afterwards): the same model, data
    order and arithmetic as in a task (``_train``). Ctrl-C (KeyboardInterrupt) goes through to the caller."""
    import torch

    threads = max(1, math.floor(plan.config.resources.cpus_per_trial))
    names = tuple(o.name for o in plan.objectives)
    points: list[tuple[float, ...] | None] = []
    previous = torch.get_num_threads()
    try:
        for spec in specs:
            # A task without a GPU resolves `auto` to the CPU; so does the driver (asking Ray would start one here).
            cpu = dataclasses.replace(spec, device="cpu") if spec.device == "auto" else spec
            try:
                points.append(_train(cpu, PROBE_EPOCHS, names, threads))
            except Exception as exc:  # the candidate's own error: the others still count
                first = next((line for line in str(exc).splitlines() if line.strip()), "")
                log(f"[{plan.name}] probe lr {spec.optimizer.lr:.3g} failed: {type(exc).__name__}: {first}")
                points.append(None)
    finally:
        torch.set_num_threads(previous)
    return points


def candidate_task_options(resources: ResourcesConfig) -> dict[str, Any]:
    """The Ray task options of one candidate: a trial's resources, one generator of results, no retry. A GPU
    candidate's worker exits after its one task (``max_calls=1``): the CUDA context and cached memory torch keeps
    would otherwise stay in a worker Ray reuses for CPU work or the next probe, holding the GPU the trials are then
    given. Ray sets this by itself only for ``@ray.remote(num_gpus=...)``, not through ``.options()`` (which refuses
    ``max_calls``), so the options go to ``ray.remote`` directly. CPU candidates keep Ray's reuse (0: unlimited),
    which saves a worker start (~4 s on 2 cores) per candidate."""
    return {
        "num_cpus": resources.cpus_per_trial,
        "num_gpus": resources.gpus_per_trial,
        "num_returns": "streaming",
        "max_retries": 0,
        "max_calls": 1 if resources.gpus_per_trial > 0 else 0,
    }


def _run_candidates(
    plan: SearchPlan, specs: list[TrialSpec], log: Callable[[str], None]
) -> list[tuple[float, ...] | None]:
    resources = plan.config.resources
    threads = max(1, math.floor(resources.cpus_per_trial))
    names = tuple(o.name for o in plan.objectives)
    task = ray.remote(**candidate_task_options(resources))(_train_candidate)
    generators = [task.remote(spec, PROBE_EPOCHS, names, threads) for spec in specs]
    try:
        return _gather(plan, specs, generators, log)
    except BaseException:  # Ctrl-C or a stop: no probe keeps a slot after the driver gave up on it
        for generator in generators:
            with contextlib.suppress(Exception):  # best effort: the search stops either way
                ray.cancel(generator, force=True)
        raise


def _gather(
    plan: SearchPlan, specs: list[TrialSpec], generators: list[ray.ObjectRefGenerator], log: Callable[[str], None]
) -> list[tuple[float, ...] | None]:
    resources = plan.config.resources
    stage = [0] * len(specs)  # 0 waiting for a slot, 1 training, 2 done
    points: list[tuple[float, ...] | None] = [None] * len(specs)
    timeout_s = plan.config.search.pending_timeout_s
    last_progress = time.monotonic()
    while any(s < 2 for s in stage):
        live = [g for g, s in zip(generators, stage, strict=True) if s < 2]
        ready, _ = ray.wait(live, num_returns=1, timeout=POLL_S)
        for generator in ready:
            i = generators.index(generator)  # the candidate's own generator (ray.wait types it as either kind)
            last_progress = time.monotonic()
            try:
                value = ray.get(next(generators[i]))
            except Exception as exc:  # the candidate's own error: the others still count
                cause = getattr(exc, "cause", None) or exc
                first = next((line for line in str(cause).splitlines() if line.strip()), "")
                log(f"[{plan.name}] probe lr {specs[i].optimizer.lr:.3g} failed: {type(cause).__name__}: {first}")
                stage[i] = 2
                continue
            if stage[i] == 1:
                points[i] = value
            stage[i] += 1
        waiting = [i for i, s in enumerate(stage) if s == 0]
        if waiting and not any(s == 1 for s in stage) and time.monotonic() - last_progress > timeout_s:
            raise SearchStopped(
                f"learning-rate probe: no probe could be placed within search.pending_timeout_s = {timeout_s:g} s "
                f"(each asks for {resources.cpus_per_trial:g} CPU and {resources.gpus_per_trial:g} GPU, as a trial); "
                f"search '{plan.name}' stopped before its trials"
            )
    return points
