"""Everything fixed when a search starts, checked before Ray starts.

The plan resolves what the config leaves to defaults (objectives, the HV reference point,
storage and tracking locations) and checks the config against the problem itself (metric
names, population sizes), so that bad input fails in one line before any trial runs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pareto_search.config import SearchConfig, SolverEntry, as_distribution, parse_config
from pareto_search.devices import check_trial_device
from pareto_search.errors import ConfigError
from pareto_search.front.global_front import write_atomic
from pareto_search.front.pareto import Objective
from pareto_search.locations import TrackingRecord, record_tracking
from pareto_search.storage import Location, StorageError, check_reachable
from trials.data.sources import DataUnavailableError
from trials.preferences import make_preferences
from trials.problems import Problem, make_problem

PLAN_DIR = "pareto_search"  # our files inside Tune's experiment folder
PLAN_FILE = "search.json"


@dataclass(frozen=True)
class SearchPlan:
    config: SearchConfig
    objectives: tuple[Objective, ...]
    reference_point: tuple[float, ...]  # own directions
    storage_dir: Location  # <storage>/<name>: Tune's experiment folder, ours inside it
    # What learning-rate probes found (search/lr_probe.py ProbeResult.to_dict), once they ran: `config` then
    # holds the chosen values, so a resumed search does not probe again.
    probes: tuple[dict[str, Any], ...] = ()
    # How the search's tracking store was given (locations.py), resolved again by every command where it runs;
    # None: a search.json written before searches recorded it (only the config's `tracking.uri` is known).
    tracking: TrackingRecord | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def files(self) -> Location:
        return self.storage_dir / PLAN_DIR

    @property
    def front_path(self) -> Location:
        return self.files / "front_points.json"

    @property
    def probe_model_epochs(self) -> int:
        """What the learning-rate probes trained before the trials, in model-epochs (a budget charges it first)."""
        return sum(int(probe.get("model_epochs", 0)) for probe in self.probes)

    def to_dict(self, parent_run_id: str | None = None) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives],
            "reference_point": list(self.reference_point),
            "probes": list(self.probes),
            # No absolute location: a search folder is read where it is found (moved, copied or mounted
            # elsewhere); the tracking store is recorded as it was given (locations.py).
            **({"locations": {"tracking": self.tracking.to_json()}} if self.tracking is not None else {}),
            "parent_run_id": parent_run_id,
        }

    def save(self, parent_run_id: str | None) -> None:
        write_atomic(self.files / PLAN_FILE, json.dumps(self.to_dict(parent_run_id), indent=2))


def _objectives(config: SearchConfig, problem: Problem) -> tuple[Objective, ...]:
    if config.objectives is None:
        return tuple(Objective(n, problem.metric(n).direction) for n in problem.default_objectives)
    allowed = ", ".join(f"{m.name} ({m.direction})" for m in problem.metrics)
    for index, objective in enumerate(config.objectives):
        known = {m.name: m for m in problem.metrics}.get(objective.name)
        if known is None:
            raise ConfigError(
                f"`objectives[{index}].name`: problem '{problem.name}' has no metric {objective.name!r}; "
                f"allowed: {allowed}"
            )
        if known.direction != objective.direction:
            raise ConfigError(
                f"`objectives[{index}].direction`: {objective.name} is better when "
                f"{'smaller' if known.direction == 'min' else 'larger'}: it must be {known.direction!r}, "
                f"found {objective.direction!r}"
            )
    return tuple(Objective(o.name, o.direction) for o in config.objectives)


def _reference_point(config: SearchConfig, problem: Problem, objectives: tuple[Objective, ...]) -> tuple[float, ...]:
    if config.reference_point is not None:
        if len(config.reference_point) != len(objectives):
            raise ConfigError(
                f"`reference_point`: needs {len(objectives)} values (one per objective: "
                f"{', '.join(o.name for o in objectives)}), found {config.reference_point}"
            )
        return tuple(config.reference_point)
    default = getattr(problem, "default_reference_point", None)
    if default is not None and tuple(o.name for o in objectives) == tuple(problem.default_objectives):
        return tuple(float(v) for v in default)
    raise ConfigError(
        f"`reference_point` is required for objectives {[o.name for o in objectives]}: problem '{problem.name}' "
        "documents no default for them (give each objective's worst acceptable value)"
    )


# A trial holds its whole population in one process (one worker's memory, or one GPU's): refused above this, as
# `n_train` is above what its composites take. A cluster worker has 32 GiB for 16 one-CPU trials and a GPU node
# one 24 GB A10G (ray_cluster.yaml): 16 GiB is already more than any one trial there gets; a larger population
# would start and run until the machine's memory killed it.
MAX_TRIAL_MEMORY_BYTES = 16 * 2**30
# What one member costs beyond its tensors: its nn.Module, optimizer, scheduler and solver objects. Measured
# ~220 KB per member building toy2d populations of 500 and 4000 members (RSS over K).
MEMBER_OVERHEAD_BYTES = 200 * 2**10
# Tensors per parameter besides the weights and their gradients, by optimizer: Adam's two moments, SGD's
# momentum buffer (none without momentum).
_OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 1}


def _gigabytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**28 else f"{count / 2**20:.0f} MiB"


def _parameter_count(problem: Problem) -> tuple[int, int]:
    """(parameters, bytes per parameter) of one model, counted without allocating it (torch's meta device):
    a model too large to build is what this check is for."""
    import torch

    try:
        with torch.device("meta"):
            model = problem.make_model()
    except Exception:  # a plug-in model that reads data while it is built: build it for real
        model = problem.make_model()
    params = list(model.parameters())
    return sum(p.numel() for p in params), max((p.element_size() for p in params), default=4)


def _size_options(value: Any) -> list[Any]:
    """Every population size an entry may sample: a fixed size, a choice/grid's options, a range's ends."""
    dist = as_distribution(value)
    return dist.boundary_values() if dist is not None else [value]


def _optimizer_states(entry: SolverEntry) -> tuple[int, str]:
    """The most state tensors per parameter the entry's optimizer may keep, and its name (for the message)."""
    optimizer = entry.optimizer
    names = _size_options(optimizer.effective("name"))
    momentum = optimizer.effective("momentum")
    has_momentum = as_distribution(momentum) is not None or bool(momentum)
    states = max(_OPTIMIZER_STATES.get(str(n), 2) if n != "sgd" or has_momentum else 0 for n in names)
    return states, "/".join(str(n) for n in names)


def _check_memory(config: SearchConfig, problem: Problem) -> None:
    """Refuse a population (or a model) a trial cannot hold: K × parameters × bytes × (weights + gradients +
    optimizer state) + K × the member's objects + the K × K transfer kernel, against MAX_TRIAL_MEMORY_BYTES."""
    params, width = _parameter_count(problem)
    for index, entry in enumerate(config.solvers):
        states, optimizer = _optimizer_states(entry)
        per_member = params * width * (2 + states) + MEMBER_OVERHEAD_BYTES
        for size in _size_options(entry.population.effective("size")):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                continue  # the spec's own check names it
            need = size * per_member + size * size * 8  # float64 (K, K) transfer kernel
            if need <= MAX_TRIAL_MEMORY_BYTES:
                continue
            state = f", {states} {optimizer} state{'s' * (states > 1)}" if states else ""
            what = (
                f"{size:,} x {params:,} parameters x {width} bytes x {2 + states} (weights, gradients{state}) + "
                f"{MEMBER_OVERHEAD_BYTES // 1024} KiB of "
                f"objects per member{' + the K x K transfer kernel' if size > 1 else ''} = {_gigabytes(need)}"
            )
            most = _largest_population(per_member)
            if most < 1:
                raise ConfigError(
                    f"`problem.args`: one model of problem '{problem.name}' has {params:,} parameters, more than a "
                    f"trial can hold ({what}, the most is {_gigabytes(MAX_TRIAL_MEMORY_BYTES)}), found "
                    f"{dict(config.problem.args)}"
                )
            raise ConfigError(
                f"`solvers[{index}].population.size` must be at most {most:,} for problem '{problem.name}' (a trial "
                f"holds its members in memory: {what}, the most is {_gigabytes(MAX_TRIAL_MEMORY_BYTES)}), "
                f"found {size:,}"
            )


def _largest_population(per_member: int) -> int:
    """The largest K with K x per_member + 8 K² <= MAX_TRIAL_MEMORY_BYTES."""
    a, b, c = 8.0, float(per_member), -float(MAX_TRIAL_MEMORY_BYTES)
    return int((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def _check_populations(config: SearchConfig, problem: Problem) -> None:
    _check_memory(config, problem)  # first: generating a million preference vectors is itself the hazard
    num_tasks = problem.num_tasks
    for index, entry in enumerate(config.solvers):
        sizes = entry.population.effective("size")
        options = _size_options(sizes)
        prefs = entry.population.effective("preferences")
        for size in options:
            try:
                if prefs is None:
                    make_preferences(num_tasks, int(size))
                elif any(len(row) != num_tasks for row in prefs):
                    raise ValueError(
                        f"`population.preferences` rows must have {num_tasks} weights (one per task), found {prefs}"
                    )
            except ValueError as exc:
                raise ConfigError(f"`solvers[{index}]`: {exc}") from None
        if entry.population.effective("execution") == "batched":
            _check_batchable(index, entry.solver, options, problem)


def _check_batchable(index: int, solver: str, sizes: list[Any], problem: Problem) -> None:
    """`execution: batched` asked for what cannot run batched: say so now rather than in every trial."""
    from trials.batched import batching_obstacle
    from trials.solvers import build_solver

    num_tasks = problem.num_tasks
    for size in sizes:
        models = [problem.make_model() for _ in range(max(int(size), 1))]
        solvers = [build_solver(solver, num_tasks, make_preferences(num_tasks, 1)[0], {})] * len(models)
        obstacle = batching_obstacle(models, solvers)
        if obstacle is not None:
            raise ConfigError(
                f"`solvers[{index}].population.execution` is batched, but {obstacle}; allowed here: auto, sequential"
            )


def make_plan(config: SearchConfig, problem: Problem | None = None) -> SearchPlan:
    """Resolve and check everything; builds the problem once (which also proves its data is there)."""
    if problem is None:
        try:
            problem = make_problem(config.problem.name, config.problem.args)
        except (ValueError, DataUnavailableError) as exc:
            raise ConfigError(f"`problem`: {str(exc).splitlines()[0]}") from None
    objectives = _objectives(config, problem)
    reference_point = _reference_point(config, problem, objectives)
    _check_populations(config, problem)
    check_trial_device(config.device, config.resources)  # a device no trial could use under Ray
    location = search_location(config.storage, config.name)
    for folder in (location.parent, location):
        if folder.is_local and folder.local_path.exists() and not folder.local_path.is_dir():
            raise ConfigError(f"`storage`: {folder} exists and is not a folder")
    tracking = record_tracking(config.tracking.uri, storage_dir=location, cwd=Path.cwd(), env=os.environ)
    return SearchPlan(config, objectives, reference_point, location, tracking=tracking)


def search_location(storage: str | Path | Location, name: str) -> Location:
    """``<storage>/<name>``; a storage that cannot be a location is a one-line config error."""
    try:
        return Location(storage) / name
    except StorageError as exc:
        raise ConfigError(f"`storage`: {exc}") from None


def load_plan(storage: str | Path | Location, name: str) -> tuple[SearchPlan, str | None]:
    """The plan of an existing search and its MLflow parent run id."""
    storage_dir = search_location(storage, name)
    path = storage_dir / PLAN_DIR / PLAN_FILE
    try:
        check_reachable(storage_dir)  # bounded: remote storage that does not answer is one line, not a hang
        found = path.is_file()
    except StorageError as exc:
        raise ConfigError(f"`--storage`: {exc}") from None
    except OSError as exc:  # remote storage that refuses the read
        raise ConfigError(f"search '{name}': cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not found:
        raise ConfigError(f"search '{name}' not found: no {path}; is --storage right?")
    data = json.loads(path.read_text())
    config = parse_config(data["config"])
    recorded = (data.get("locations") or {}).get("tracking")
    try:
        tracking = TrackingRecord.from_json(recorded) if recorded is not None else None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"search '{name}': {path} has an unreadable `locations.tracking` ({exc})") from None
    plan = SearchPlan(
        config,
        tuple(Objective(o["name"], o["direction"]) for o in data["objectives"]),
        tuple(data["reference_point"]),
        storage_dir,
        tuple(data.get("probes", ())),
        tracking,
    )
    return plan, data.get("parent_run_id")
