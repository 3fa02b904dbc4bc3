"""The search config: schema, YAML loading, one-line errors, and the per-trial spec.

A config is validated completely before Ray starts. Unknown keys are errors, and every error
is one line naming the field, the value found and what is allowed. Hyperparameters of a solver
entry may be search-space distributions, written as one-key mappings::

    lr: {loguniform: [1.0e-4, 1.0e-2]}     # also: uniform, quniform [lo, hi, q], randint [lo, hi]
    eps0: {choice: [0.0, 0.3]}              # sampled
    size: {grid: [1, 5]}                    # every value, once per sample (not with optuna)
    lr: {probe: [1.0e-3, 1.0e-2]}           # found once before the trials (search/lr_probe.py), then fixed

The Ray Tune adapter turns these into Tune's sampling primitives; this module stays Ray-free.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, cast

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from pareto_search.errors import ConfigDeprecation, ConfigError
from pareto_search.storage import default_storage, storage_scheme_error

# Names only: the solver and problem modules import torch, which a schema error should not wait for (~1.5 s).
from trials.names import PROBLEMS, check_solver_name
from trials.presets import PRESETS, merge
from trials.spec import OptimizerSpec, PopulationSpec, PSLSpec, SpecError, TransferSpec, TrialSpec

DISTRIBUTIONS: dict[str, int | None] = {  # name -> number of arguments (None: a non-empty list)
    "choice": None,
    "grid": None,
    "uniform": 2,
    "loguniform": 2,
    "quniform": 3,
    "randint": 2,
    "probe": None,  # [lo, hi] or [lo, hi, candidates]; optimizer.lr only
}
PROBE_PATH = ("optimizer", "lr")  # the one value a probe may find (search/lr_probe.py)
# A probe tries this many learning rates, log-spaced over [lo, hi] (ends included), when the config does not say:
# 4 spans a decade in steps of ~2.2x, the resolution that separated 5-epoch outcomes on Multi-MNIST
# (benchmarks/README.md, "The headline"), for 4 model-epochs.
PROBE_CANDIDATES = 4
PROBE_MAX_CANDIDATES = 16
# One epoch ranks learning rates well enough for the fixed budgets of a search (Multi-MNIST 6k, equal weights,
# Adam: the epoch-1 HV order of 1e-3 / 2e-3 / 4e-3 / 1e-2 was their order after 5 epochs) and costs one
# model-epoch per candidate; more epochs would cost the trials' budget.
PROBE_EPOCHS = 1
# `search.budget_model_epochs`: a trial stops once its HV rose by less than PLATEAU_GAIN (relative) over its last
# PLATEAU_EPOCHS epochs, and the next trial (which fills the gaps between earlier trials' preferences) takes the rest
# of the budget. Chosen on the in-sample problems (benchmarks/README.md, "Spending a budget"): a population trained
# longer beat several short ones where the models were still learning (related3, Multi-*), and short populations
# with the gaps filled won where a model converges in a few epochs (zdt1); the plateau serves both.
PLATEAU_EPOCHS = 2
PLATEAU_GAIN = 0.01
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a search's name is also its storage folder name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
    kind: Literal["choice", "grid", "uniform", "loguniform", "quniform", "randint", "probe"]
    args: tuple[Any, ...]

    def boundary_values(self) -> list[Any]:
        """The values that must each be valid: every option of a list, the ends of a range."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        return [self.args[0], self.args[1]]


def as_distribution(value: Any) -> Distribution | None:
    """A one-key mapping naming a distribution, else None (a fixed value)."""
    if isinstance(value, Mapping) and len(value) == 1:
        kind, args = next(iter(value.items()))
        if kind in DISTRIBUTIONS:
            return Distribution(kind=kind, args=tuple(args) if isinstance(args, list | tuple) else (args,))
    return None


class ProblemConfig(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in PROBLEMS and ":" not in name:
            raise ValueError(f"must be one of {', '.join(sorted(PROBLEMS))} or a plug-in 'package.module:factory'")
        return name


class ObjectiveConfig(_Strict):
    name: str
    direction: Literal["min", "max"]


# A value of a solver entry's section, or a distribution over values written as a one-key mapping ({choice: [...]},
# {loguniform: [lo, hi]}, ...). The section models below name every field a trial reads; the value of each is checked
# by the trial's own dataclass (trials/spec.py) on representative samples of the space (_validate_entry), so that a
# value and its message are decided in one place, and so are the defaults: a field left unset takes the trial's.
Searchable = Any


class _Section(_Strict):
    """A section of a solver entry: only the fields the config sets are its data (what is saved, flattened for
    Tune and MLflow, and given to the trial), so an unset field always means the trial's own default."""

    # The trial dataclass whose fields this section mirrors (tests check that the two name the same fields).
    spec_class: ClassVar[type]

    @model_serializer(mode="wrap")
    def _only_what_is_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if key in self.model_fields_set}

    def effective(self, name: str) -> Any:
        """The field's value as a trial sees it: what the config set, else the trial dataclass's default."""
        if name in self.model_fields_set:
            return getattr(self, name)
        return spec_default(self.spec_class, name)


def spec_default(spec_class: type, name: str) -> Any:
    """The default of field `name` of a trial dataclass (trials/spec.py): where every default is defined."""
    field = next(f for f in dataclasses.fields(spec_class) if f.name == name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise KeyError(f"{spec_class.__name__}.{name} has no default")


class OptimizerConfig(_Section):
    """`optimizer`: trials/spec.py OptimizerSpec."""

    spec_class: ClassVar[type] = OptimizerSpec
    name: Searchable = None  # sgd, adam, adamw
    lr: Searchable = None  # may also be {probe: [lo, hi]}: found once before the trials (search/lr_probe.py)
    momentum: Searchable = None  # SGD only
    weight_decay: Searchable = None
    schedule: Searchable = None  # constant or cosine


class TransferConfig(_Section):
    """`population.transfer`: MT2O's transfer among the members (trials/spec.py TransferSpec). Each rule's
    strength is its own field: `eps0` for periodic, `alpha` for mtgd."""

    spec_class: ClassVar[type] = TransferSpec
    eps0: Searchable = None  # periodic: ε0 in [0, 1]
    rule: Searchable = None  # periodic or mtgd
    alpha: Searchable = None  # mtgd: α >= 0
    decay: Searchable = None  # periodic: linear, cosine or constant
    period: Searchable = None  # τ: steps between transfers (mtgd: between its beneficial checks)
    sigma: Searchable = None  # periodic: kernel width in preference space
    mode: Searchable = None  # symmetric or beneficial
    scope: Searchable = None  # trunk or all (unset: the rule's own)
    lr_tied: Searchable = None  # mtgd: η is the current learning rate (true) or the initial one


class PSLConfig(_Section):
    """`population.psl`: Pareto set learning, one conditioned model (trials/spec.py PSLSpec)."""

    spec_class: ClassVar[type] = PSLSpec
    conditioning: Searchable = None  # auto, lowrank, hyper or film
    rank: Searchable = None
    hidden: Searchable = None
    samples: Searchable = None  # P: preferences drawn per step
    concentration: Searchable = None  # Dirichlet concentration of the draws
    cosmos_penalty: Searchable = None
    points: Searchable = None  # the front's points (unset: the problem's default)


class PopulationConfig(_Section):
    """`population`: the trial's K members, or one conditioned model (trials/spec.py PopulationSpec)."""

    spec_class: ClassVar[type] = PopulationSpec
    size: Searchable = None  # K
    preferences: Searchable = None  # K rows of T weights (unset: generated)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    execution: Searchable = None  # auto, sequential or batched
    interior: Searchable = None  # how far generated preferences are pulled toward equal weights
    across_trials: Searchable = None  # same or fill
    psl: PSLConfig | None = None
    placement: Searchable = None  # process or actors


def _transfer_of(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    population = entry.get("population")
    transfer = population.get("transfer") if isinstance(population, Mapping) else None
    return transfer if isinstance(transfer, Mapping) else {}


def _alpha_of_mtgd(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """An entry whose `population.transfer` gives rule mtgd's α as `eps0` (the spelling before α had a field of its
    own) with `alpha` under its own name, and a one-line note saying so; any other entry as it is."""
    transfer = _transfer_of(entry)
    if transfer.get("rule") != "mtgd" or "eps0" not in transfer or "alpha" in transfer:
        return entry
    value = transfer["eps0"]
    warnings.warn(
        f"`population.transfer.eps0` under rule mtgd is the rule's α and is now spelled `alpha`: write "
        f"`alpha: {value}` (eps0 still loads)",
        ConfigDeprecation,
        stacklevel=2,
    )
    renamed = {("alpha" if key == "eps0" else key): item for key, item in transfer.items()}
    return {**entry, "population": {**entry["population"], "transfer": renamed}}


S = TypeVar("S", bound=_Section)


def overlay(base: S, top: S) -> S:
    """`base` with every field `top` sets replacing its own (a section inside both is overlaid in turn); what
    neither sets stays unset, so it still reads as the trial's default."""
    return cast(S, _overlay(base, top))


def _overlay(base: _Section, top: _Section) -> _Section:
    values: dict[str, Any] = {name: getattr(base, name) for name in base.model_fields_set}
    for name in top.model_fields_set:
        value, under = getattr(top, name), values.get(name)
        values[name] = _overlay(under, value) if isinstance(value, _Section) and isinstance(under, _Section) else value
    return type(base).model_construct(_fields_set=set(values), **values)


def _without(section: S, *names: str) -> S:
    """`section` with the fields `names` unset again."""
    kept = {name: getattr(section, name) for name in section.model_fields_set - set(names)}
    return cast(S, section.model_construct(_fields_set=set(kept), **kept))


def _with_preset(preset: dict[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """A `method:` entry: the preset's solver, population and optimizer under what the entry sets itself, the
    sections overlaid as typed models. A preset's transfer strength belongs to its rule: an entry that picks another
    rule gets that rule's own default, never the preset's ε0 read as α."""
    try:
        population = PopulationConfig.model_validate(entry.get("population", {}))
        optimizer = OptimizerConfig.model_validate(entry.get("optimizer", {}))
    except ValidationError:  # refused where the entry's fields are validated, with their location
        return merge(preset, entry)
    base = PopulationConfig.model_validate(preset.get("population", {}))
    rule = population.transfer.rule if "rule" in population.transfer.model_fields_set else None
    if isinstance(rule, str) and rule != base.transfer.effective("rule"):
        base = base.model_copy(update={"transfer": _without(base.transfer, "eps0", "alpha")})
    return {
        **preset,
        **entry,
        "population": overlay(base, population),
        "optimizer": overlay(OptimizerConfig.model_validate(preset.get("optimizer", {})), optimizer),
    }


class SolverEntry(_Strict):
    """One method to try: a solver, its population and optimizer; any value may be a distribution.

    ``method`` names a preset (trials/presets.py: ``mt2o``) that fills in the solver, population and
    transfer; what the entry sets itself wins."""

    label: str | None = None  # how fronts and tables name this entry; default from method/solver and K
    method: str | None = None
    solver: str
    # The solver's own hyperparameters: each solver's Params dataclass names and checks them (trials/solvers/).
    solver_args: dict[str, Any] = Field(default_factory=dict)
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)

    @model_validator(mode="before")
    @classmethod
    def _expand_method(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = _alpha_of_mtgd(data)
        if data.get("method") is None:
            return data
        name = data["method"]
        preset = PRESETS.get(name) if isinstance(name, str) else None
        if preset is None:
            raise ValueError(f"`method`: method {name!r} is unknown; allowed: {', '.join(PRESETS)}")
        return _with_preset(preset.entry(), data)

    @field_validator("solver")
    @classmethod
    def _known_solver(cls, name: str) -> str:
        return check_solver_name(name)  # raises "solver 'x' is unknown; allowed: ..."

    def display_label(self) -> str:
        if self.label:
            return self.label
        if self.population.psl is not None:  # one conditioned model: its K is 1 and says nothing (its points are N)
            return self.method or f"psl-{self.solver}"
        size = self.population.effective("size")
        if self.method is not None:
            return f"{self.method}-k{size}" if isinstance(size, int) else self.method
        transfer = self.population.transfer
        strength = transfer.effective("alpha" if transfer.effective("rule") == "mtgd" else "eps0")
        if strength is None:
            from trials.solvers import solver_class

            strength = solver_class(self.solver).default_transfer_eps0
        if isinstance(size, int) and size > 1:
            kind = "independent" if strength == 0 else "mt2o"
            return f"{kind}-{self.solver}-k{size}"
        return self.solver

    def space(self) -> dict[str, Any]:
        """The searchable part as a nested dict whose leaves are values or :class:`Distribution`."""
        sections = {
            "solver_args": self.solver_args,
            "population": self.population.model_dump(),
            "optimizer": self.optimizer.model_dump(),
        }
        space: dict[str, Any] = _map_leaves(
            sections,
            lambda v: as_distribution(v) or v,
        )
        return space


class SchedulerConfig(_Strict):
    name: Literal["fifo", "asha", "pareto_asha"] = "fifo"
    grace_period: int = Field(1, ge=1)  # epochs before the first stop decision
    reduction_factor: float = Field(3.0, gt=1)  # η: keep the top 1/η at every rung (ASHA's default)


class SearchAlgorithmConfig(_Strict):
    algorithm: Literal["grid", "random", "optuna"] = "random"
    num_samples: int = Field(1, ge=1)  # random/optuna: trials; grid: repetitions of the grid
    # What the search may spend, in model-epochs (one model over the training set once; a learning-rate probe's
    # candidates included), instead of num_samples x epochs: trials run one at a time, each until its hypervolume
    # stops rising (PLATEAU_GAIN over PLATEAU_EPOCHS) or the budget is spent, and the next trial takes the rest.
    # `epochs` then caps a trial (default: the whole budget), num_samples the trials (default: as many as fit),
    # max_concurrent_trials defaults to 1. One solver entry. None: num_samples trials of `epochs` epochs.
    budget_model_epochs: int | None = Field(None, ge=1)
    # None lets Ray fill the CPUs; a bound keeps a laptop responsive.
    max_concurrent_trials: int | None = Field(None, ge=1)
    # Optuna's multi-objective target: each objective's best value over a trial's members, or
    # the trial's own hypervolume (one number, better for large populations).
    optuna_target: Literal["objectives", "hypervolume"] = "objectives"
    # One retry recovers from a lost worker; the retry resumes from the trial's last checkpoint,
    # so a deterministic failure (NaN losses) fails again at the same epoch, cheaply.
    max_failures: int = Field(1, ge=0)
    # How long a search none of whose trials can be placed waits (an autoscaler adding a node takes minutes)
    # before it stops, naming what it asked for and what the nodes offer.
    pending_timeout_s: float = Field(600.0, gt=0)
    # A trial checkpoints every this many epochs, and always after its last. 1 (safe): a killed driver or a lost
    # worker resumes from the last epoch. N: up to N-1 epochs are trained again after a fault (to the same
    # points: training is deterministic per seed) for N times fewer checkpoint writes and Tune state snapshots.
    checkpoint_every: int = Field(1, ge=1)
    # Run the next trial in the finished trial's worker process (Tune's reuse_actors): no new process and no
    # re-import of torch per trial. Every trial still builds its model, optimizer and data order from its own
    # seed, so results do not depend on it.
    reuse_actors: bool = True
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)


class ResourcesConfig(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0)  # torch threads = the CPUs Ray gives the trial
    gpus_per_trial: float = Field(0.0, ge=0)  # fractions share one GPU between trials
    # `population.placement: actors`: what each member's own worker gets (the trial's process keeps cpus_per_trial
    # and gpus_per_trial for the data and the coordination); all reserved with the trial in one placement group.
    cpus_per_member: float = Field(1.0, gt=0)
    gpus_per_member: float = Field(0.0, ge=0)  # a fraction puts several members on one GPU
    # PACK: the members on as few nodes as fit (transfer stays in one node's shared memory); SPREAD: one node each
    # where there are nodes enough (a node lost takes fewer members with it).
    member_strategy: Literal["PACK", "SPREAD"] = "PACK"


class TrackingConfig(_Strict):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db
    # MLflow's experiment (its name); MLflow refuses an empty one, so the schema does, before any store opens.
    experiment: str = Field("pareto_search", min_length=1, max_length=500)
    # How long the search goes on while the tracking server does not answer (its writes buffered, the front in
    # storage) before it stops: a server restart or a network cut takes minutes; longer needs a person.
    outage_timeout_s: float = Field(600.0, gt=0)


class DiagnosticsConfig(_Strict):
    """Measurements that do not change training (see trials/affinity.py)."""

    # TAG's lookahead inter-task affinity of each trial's member 0, every this many steps; 0 = off
    # (the default: a measurement costs T backward and T+1 forward passes). Needed by `groups`.
    affinity_every: int = Field(0, ge=0)
    # "optimizer": the optimizer's real next update (TAG); "sgd": θ − lr·g_i at the current lr.
    affinity_lookahead: Literal["optimizer", "sgd"] = "optimizer"


class SearchConfig(_Strict):
    # A folder name (storage), a Tune experiment and an MLflow run name: 100 characters leave room for the
    # prefixes and suffixes those add within a file system's 255-byte name limit.
    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    problem: ProblemConfig
    objectives: list[ObjectiveConfig] | None = None  # None: the problem's default objectives
    # In the objectives' own directions (0.0 for a maximized accuracy). None: the problem's
    # documented default, fixed when the search starts and stored with every HV.
    reference_point: list[float] | None = None
    solvers: list[SolverEntry] = Field(min_length=1)
    epochs: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    device: str = "auto"  # cuda when the trial was given a GPU, else cpu
    search: SearchAlgorithmConfig = Field(default_factory=SearchAlgorithmConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    # A folder (relative paths are taken from the working directory) or a shared-storage URI (s3://, gs://,
    # hdfs://, file:///), where Tune's checkpoints and the front live. $PARETO_SEARCH_STORAGE, when set,
    # replaces the default: on a cluster every node must see the same storage (ray_cluster.yaml sets it).
    storage: str = Field(default_factory=default_storage)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda|cuda:\d+", device):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return device

    @field_validator("storage")
    @classmethod
    def _storage_location(cls, storage: str) -> str:
        problem = storage_scheme_error(storage)
        if problem:
            raise ValueError(problem)
        return storage

    @field_validator("reference_point")
    @classmethod
    def _finite(cls, ref: list[float] | None) -> list[float] | None:
        if ref is not None and not all(math.isfinite(v) for v in ref):
            raise ValueError("must hold finite numbers")
        return ref

    @model_validator(mode="after")
    def _consistent(self) -> SearchConfig:
        if self.objectives is not None:
            names = [o.name for o in self.objectives]
            if len(set(names)) != len(names):
                raise ValueError(f"`objectives`: each name once, found {names}")
            if len(names) < 2:
                raise ValueError(f"`objectives`: a Pareto search needs at least 2, found {names}")
        if (
            self.reference_point is not None
            and self.objectives is not None
            and len(self.reference_point) != len(self.objectives)
        ):
            raise ValueError(
                f"reference_point: needs {len(self.objectives)} values (one per objective), "
                f"found {len(self.reference_point)}"
            )
        return self

    def trial_spec(self, variant: int, sampled: Mapping[str, Any], seed: int, repeat: int = 0) -> TrialSpec:
        """The spec of one trial: solver entry ``variant`` with its sampled values; ``repeat``: which of the
        entry's trials it is (0-based)."""
        data = {
            "problem": self.problem.name,
            "problem_args": dict(self.problem.args),
            "solver": self.solvers[variant].solver,
            "epochs": self.epochs,
            "seed": seed,
            "device": self.device,
            "affinity_every": self.diagnostics.affinity_every,
            "affinity_lookahead": self.diagnostics.affinity_lookahead,
            "repeat": repeat,
            **copy.deepcopy(dict(sampled)),
        }
        return TrialSpec.from_dict(data)


def _map_leaves(tree: Any, fn: Any) -> Any:
    if isinstance(tree, Mapping) and as_distribution(tree) is None:
        return {k: _map_leaves(v, fn) for k, v in tree.items()}
    return fn(tree)


def _distribution_paths(tree: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Distribution]]:
    if isinstance(tree, Distribution):
        yield prefix, tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _distribution_paths(value, (*prefix, str(key)))


def _with_value(tree: Any, path: tuple[str, ...], value: Any) -> Any:
    tree = copy.deepcopy(tree)
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return tree


def first_values(space: Mapping[str, Any]) -> dict[str, Any]:
    """The space with every distribution at its first value (a list's first option, a range's low end)."""
    values: dict[str, Any] = _map_leaves(space, lambda v: v.boundary_values()[0] if isinstance(v, Distribution) else v)
    return values


def representative_samples(space: Mapping[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """Concrete samples that together exercise every boundary value of every distribution
    (each one varied while the others sit at their first value): validating these validates
    the space without sampling it. Yields (dotted path, value, sample)."""
    paths = list(_distribution_paths(space))
    base = first_values(space)
    if not paths:
        yield "", None, base
    for path, dist in paths:
        for value in dist.boundary_values():
            yield ".".join(path), value, _with_value(base, path, value)


def _check_distribution(dist: Distribution, where: str, algorithm: str) -> None:
    if dist.kind == "probe":
        _check_probe(dist, where)
        return
    expected = DISTRIBUTIONS[dist.kind]
    if expected is None and not dist.args:
        raise ConfigError(f"`{where}`: {dist.kind} needs a non-empty list of values, found {list(dist.args)}")
    if expected is not None and len(dist.args) != expected:
        raise ConfigError(f"`{where}`: {dist.kind} needs {expected} numbers, found {list(dist.args)}")
    if dist.kind in ("uniform", "loguniform", "quniform", "randint"):
        lo, hi = dist.args[0], dist.args[1]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in dist.args):
            raise ConfigError(f"`{where}`: {dist.kind} needs numbers, found {list(dist.args)}")
        if not lo < hi:
            raise ConfigError(f"`{where}`: {dist.kind} needs low < high, found {list(dist.args)}")
        if dist.kind == "loguniform" and lo <= 0:
            raise ConfigError(f"`{where}`: loguniform needs low > 0, found {list(dist.args)}")
    if dist.kind == "grid" and algorithm == "optuna":
        raise ConfigError(
            f"`{where}`: grid is not supported with search.algorithm optuna; allowed there: choice, "
            "uniform, loguniform, quniform, randint"
        )
    if algorithm == "grid" and dist.kind != "grid":  # (a probe returned above: it is resolved before the grid)
        raise ConfigError(f"`{where}`: search.algorithm grid needs every distribution to be a grid, found {dist.kind}")


def _check_probe(dist: Distribution, where: str) -> None:
    allowed = f"[lo, hi] or [lo, hi, candidates] with 0 < lo < hi and 2 <= candidates <= {PROBE_MAX_CANDIDATES}"
    if not where.endswith(".".join(PROBE_PATH)):
        raise ConfigError(
            f"`{where}`: probe finds a learning rate only; allowed here: choice, grid, uniform, "
            "loguniform, quniform, randint"
        )
    args = list(dist.args)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in args)
    if len(args) not in (2, 3) or not numbers or not 0 < args[0] < args[1]:
        raise ConfigError(f"`{where}`: probe needs {allowed}, found {args}")
    if len(args) == 3 and (not isinstance(args[2], int) or not 2 <= args[2] <= PROBE_MAX_CANDIDATES):
        raise ConfigError(f"`{where}`: probe needs {allowed}, found {args}")


def probe_candidates(dist: Distribution) -> tuple[float, ...]:
    """The learning rates a probe tries: log-spaced over [lo, hi], both ends included."""
    lo, hi = float(dist.args[0]), float(dist.args[1])
    count = int(dist.args[2]) if len(dist.args) == 3 else PROBE_CANDIDATES
    steps = (math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (count - 1)) for i in range(count))
    return tuple(float(f"{lr:.6g}") for lr in steps)  # 1e-3, not 0.0010000000000000002, in files and logs


def _validate_with_search_settings(config: SearchConfig, index: int) -> None:
    """The entry's trial with the search-wide settings it reads (``diagnostics``): a combination a trial would refuse
    (the affinity of a conditioned model, or of members on actors) is refused here, before anything starts."""
    try:
        config.trial_spec(index, first_values(config.solvers[index].space()), config.seed)
    except SpecError as exc:
        message = str(exc).replace("`affinity_every`", "`diagnostics.affinity_every`", 1)
        raise ConfigError(f"{message} (in solvers[{index}])") from None


def _validate_entry(index: int, entry: SolverEntry, algorithm: str) -> None:
    # Hyperparameters are checked by the solver's own dataclass: the one place a valid-looking config loads torch.
    from trials.solvers import InvalidHyperparameterError, make_params

    prefix = f"solvers[{index}]"
    space = entry.space()
    for keys, dist in _distribution_paths(space):
        _check_distribution(dist, f"{prefix}.{'.'.join(keys)}", algorithm)
    for path, value, sample in representative_samples(space):
        try:
            TrialSpec.from_dict({"problem": "validation", "solver": entry.solver, **sample})
            make_params(entry.solver, sample["solver_args"])
        except SpecError as exc:  # its message names the field inside the entry: prefix it
            message = re.sub(r"`([^`]+)`", lambda m: f"`{prefix}.{m.group(1)}`", str(exc), count=1)
            raise ConfigError(message) from None
        except InvalidHyperparameterError as exc:
            where = f" (with `{prefix}.{path}` = {value!r})" if path else ""
            raise ConfigError(f"`{prefix}`: {exc}{where}") from None


def _location(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _one_line(exc: ValidationError, model: type[BaseModel]) -> str:
    error = exc.errors()[0]
    where = _location(error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(model, error["loc"][:-1]))
        return f"unknown key `{where}`; allowed: {allowed}"
    if error["type"] == "missing":
        return f"`{where}` is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    found = error.get("input")
    if error["type"] == "value_error" and not error["loc"]:
        return message
    return f"`{where or 'config'}`: {message}, found {found!r}"


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for arg in candidates:
            inner = [arg, *getattr(arg, "__args__", ())]
            found = next((t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)), None)
            if found is not None:
                current = found
                break
    return list(current.model_fields)


def parse_config(data: Any) -> SearchConfig:
    """Validate plain data (a parsed YAML document) into a :class:`SearchConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of keys to values, found {type(data).__name__}")
    try:
        config = SearchConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, SearchConfig)) from None
    except ValueError as exc:  # raised by a registry lookup inside a validator
        raise ConfigError(str(exc).splitlines()[0]) from None
    for index, entry in enumerate(config.solvers):
        _validate_entry(index, entry, config.search.algorithm)
        _validate_with_search_settings(config, index)
    labels = [entry.display_label() for entry in config.solvers]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"`solvers`: labels must be unique, found {duplicates[0]!r} twice; set `label` on each")
    return _with_budget(config)


@dataclasses.dataclass(frozen=True)
class BudgetShare:
    """How ``search.budget_model_epochs`` is spent by its solver entry."""

    budget: int
    probe: int  # model-epochs of the entry's learning-rate probe (0 without one)
    per_epoch: int  # model-epochs of one epoch of a trial: K members, or a PSL model's P drawn preferences

    @property
    def trial_epochs(self) -> int:
        """The most epochs one trial can train: all of the budget left after the probe."""
        return (self.budget - self.probe) // self.per_epoch

    def most_trials(self, cap: int) -> int:
        """How many trials the budget can start when each stops as early as a plateau allows (``cap``: a trial's
        epochs at most)."""
        shortest = min(cap, PLATEAU_EPOCHS + 1)
        return max(1, math.ceil((self.budget - self.probe) / (self.per_epoch * shortest)))


def budget_share(config: SearchConfig) -> BudgetShare | None:
    """What the budget's one entry spends on its probe and on one epoch of a trial (None: no budget)."""
    budget = config.search.budget_model_epochs
    if budget is None:
        return None
    entry = config.solvers[0]
    spec = config.trial_spec(0, first_values(entry.space()), config.seed)
    lr = as_distribution(getattr(entry.optimizer, PROBE_PATH[1]))
    # A probe's candidate is one model at equal weights, or the conditioned model drawing its P preferences
    per_candidate = spec.population.psl.samples if spec.population.psl is not None else 1
    probe = len(probe_candidates(lr)) * PROBE_EPOCHS * per_candidate if lr and lr.kind == "probe" else 0
    return BudgetShare(budget, probe, spec.model_epochs_per_epoch)


def _with_budget(config: SearchConfig) -> SearchConfig:
    """A budget's derived settings, written into the config once (the plan stores it: a resumed or re-read search
    keeps them, whatever the probe then chose): a trial's epochs at most, the trials at most, one at a time."""
    share = budget_share(config)
    if share is None:
        return config
    where = f"search.budget_model_epochs: {share.budget}"
    if len(config.solvers) != 1:
        raise ConfigError(
            f"{where} with {len(config.solvers)} solver entries: a budget is spent by one entry's trials, one after "
            "another; allowed: one entry (give each entry a search of its own)"
        )
    if share.trial_epochs < 1:
        raise ConfigError(
            f"{where} holds no epoch of solvers[0] ({share.probe} model-epochs of learning-rate probe, then "
            f"{share.per_epoch} an epoch); allowed: at least {share.probe + share.per_epoch}"
        )
    epochs = config.epochs if "epochs" in config.model_fields_set else share.trial_epochs
    search = config.search
    derived: dict[str, Any] = {}
    if "num_samples" not in search.model_fields_set:
        derived["num_samples"] = share.most_trials(epochs)
    if search.max_concurrent_trials is None:
        derived["max_concurrent_trials"] = 1  # the next trial starts where the last one stopped: the rule is serial
    return config.model_copy(update={"epochs": epochs, "search": search.model_copy(update=derived)})


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice: YAML keeps the later value, silently dropping the earlier one."""

    def __init__(self, where: str, first_line: int, second_line: int) -> None:
        super().__init__(f"{where} twice (lines {first_line} and {second_line})")
        self.where, self.first_line, self.second_line = where, first_line, second_line


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, at any depth: a second `solvers:` block
    would otherwise replace the first without a word. Merge keys (`<<: *defaults`) may still be overridden."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique(node, (), set())
        return super().construct_document(node)

    def _check_unique(self, node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
        if id(node) in seen:  # an alias (*anchor) points at a node checked already
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_unique(item, (*path, f"[{index}]"), seen)
        elif isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._check_unique(value_node, path, seen)
                    continue
                key: Any = key_node.value
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.construct_object(key_node, deep=True)  # `1` and `0x1` are the same key
                label = str(key) if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.tag}>"
                where = _location_text((*path, label))
                try:
                    first = lines.get(key)
                except TypeError:  # an unhashable key: SafeLoader itself says so
                    first = None
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise DuplicateKeyError(f"key `{where}` is given", first, line)
                with contextlib.suppress(TypeError):
                    lines[key] = line
                self._check_unique(value_node, (*path, label), seen)


def _location_text(path: Sequence[str]) -> str:
    text = ""
    for part in path:
        text += part if part.startswith("[") else (f".{part}" if text else part)
    return text


def load_config(path: str | Path) -> SearchConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise ConfigError(f"config file '{path}': {exc}; YAML would keep only the later one: give it once") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data)


def grid_size(config: SearchConfig) -> int:
    """How many trials a grid search runs per sample: the product of every entry's grid sizes."""
    total = 0
    for entry in config.solvers:
        sizes = [len(d.args) for _, d in _distribution_paths(entry.space()) if d.kind == "grid"]
        total += math.prod(sizes) if sizes else 1
    return total


__all__ = [
    "ConfigError",
    "Distribution",
    "SearchConfig",
    "SolverEntry",
    "as_distribution",
    "grid_size",
    "load_config",
    "parse_config",
    "probe_candidates",
]
