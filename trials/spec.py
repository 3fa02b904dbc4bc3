"""What one trial runs: a plain, validated, JSON-able description.

The control plane builds a :class:`TrialSpec` from a search config and a sampled
hyperparameter point; ``trials`` runs it. Every field has a default that works for a small
run, with its reason beside it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

OptimizerName = Literal["sgd", "adam", "adamw"]
Schedule = Literal["constant", "cosine"]
Decay = Literal["linear", "cosine", "constant"]
TransferMode = Literal["symmetric", "beneficial"]
TransferRule = Literal["periodic", "mtgd"]
TransferScope = Literal["trunk", "all"]
AffinityLookahead = Literal["optimizer", "sgd"]
Execution = Literal["auto", "sequential", "batched"]
AcrossTrials = Literal["same", "fill"]
Placement = Literal["process", "actors"]


class SpecError(ValueError):
    """An invalid trial description; the message names the field, the value and what is allowed."""


class SpecMismatch(ValueError):
    """A checkpoint written by another training than the one resuming from it (see :func:`spec_difference`)."""


def _check(ok: bool, field_name: str, value: object, allowed: str) -> None:
    if not ok:
        raise SpecError(f"`{field_name}` must be {allowed}, found {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class OptimizerSpec:
    name: OptimizerName = "adam"
    lr: float = 1e-3  # Adam's default; the usual LeNet/Multi-MNIST setting
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0
    # cosine anneals the learning rate to 0 over the trial's epochs: scalarizations with a kink
    # (Tchebycheff) then settle instead of oscillating around their optimum.
    schedule: Schedule = "constant"

    def __post_init__(self) -> None:
        _check(self.name in ("sgd", "adam", "adamw"), "optimizer.name", self.name, "one of sgd, adam, adamw")
        _check(_is_number(self.lr) and self.lr > 0, "optimizer.lr", self.lr, "a float > 0")
        _check(_is_number(self.momentum) and 0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "in [0, 1)")
        _check(
            _is_number(self.weight_decay) and self.weight_decay >= 0,
            "optimizer.weight_decay",
            self.weight_decay,
            "a float >= 0",
        )
        _check(self.schedule in ("constant", "cosine"), "optimizer.schedule", self.schedule, "constant or cosine")


@dataclass(frozen=True)
class TransferSpec:
    """MT2O parameter transfer among a population's members; every choice is configurable and the
    two rules are described, with their sources, in trials/transfer.py.

    ``rule: periodic`` (our reconstruction, the default): every τ steps, before the members' steps,
    θ_k ← (1−ε_t)θ_k + ε_t Σ_j S_kj θ_j with ε_t decaying from ε0.
    ``rule: mtgd`` (the authors' MTGD code, Bai et al. 2020): every step, Jacobi order,
    θ_k ← θ_k − step_k(θ_k) + Σ_j w_kj (θ_j − θ_k) on the pre-step parameters, w_kj = α·η·r_kj.
    """

    # Each rule's strength is its own field; 0 turns transfer off (K independent scalarizations, the
    # control for MT2O's speed claim, bit for bit). None (unset): what suits the solver, its
    # `default_transfer_eps0` (0.3 for scalarizations, 0 for PMTL/EPO, whose members must stay in their
    # own preference regions), resolved in trials/population.py.
    # periodic: ε0 in [0, 1], the fraction mixed at the start.
    eps0: float | None = None
    rule: TransferRule = "periodic"
    # mtgd: α >= 0 in w_kj = α·η·r_kj; unset: 1, the authors' code (0 for a solver whose default is no transfer).
    # Configs written before α had a field of its own gave it as `eps0`; that still loads (normalized here).
    alpha: float | None = None
    decay: Decay = "linear"  # periodic: ε_t → 0 over training, so the method ends as plain gradient descent
    # periodic: τ, transfer every τ steps (costs O(K²·P), negligible at this rate). mtgd mixes every
    # step; with mode beneficial, τ is how often the beneficial check is refreshed.
    period: int = 10
    # periodic: σ, kernel width in preference space, S_kj ∝ exp(−‖λ_k−λ_j‖²/σ²). 0.2 lets the nearest
    # neighbours of K≈5–10 members on the simplex dominate and far ones get almost nothing.
    sigma: float = 0.2
    mode: TransferMode = "symmetric"  # "beneficial": take j's parameters only if they lower f_k
    # What is mixed: "trunk" (the shared layers; the MTGD code mixes only its convolutions) or "all"
    # (heads too). None: the rule's own choice — all for periodic, trunk for mtgd.
    scope: TransferScope | None = None
    # mtgd: η in w = α·η·r is the member's current learning rate (True) or its initial one (False,
    # the code's: η0, never decayed).
    lr_tied: bool = False

    def __post_init__(self) -> None:
        _check(self.rule in ("periodic", "mtgd"), "population.transfer.rule", self.rule, "periodic or mtgd")
        if self.rule == "periodic":
            _check(
                self.eps0 is None or (_is_number(self.eps0) and 0 <= self.eps0 <= 1),
                "population.transfer.eps0",
                self.eps0,
                "in [0, 1]",
            )
            _check(self.alpha is None, "population.transfer.alpha", self.alpha, "unset under rule periodic (its ε0)")
        else:
            if self.eps0 is not None:  # the old spelling of α (configs and checkpoints written before α had a field)
                _check(self.alpha is None, "population.transfer.eps0", self.eps0, "unset under rule mtgd (its alpha)")
                object.__setattr__(self, "alpha", self.eps0)
                object.__setattr__(self, "eps0", None)
            _check(
                self.alpha is None or (_is_number(self.alpha) and self.alpha >= 0),
                "population.transfer.alpha",
                self.alpha,
                "a float >= 0",
            )
        _check(
            self.decay in ("linear", "cosine", "constant"),
            "population.transfer.decay",
            self.decay,
            "one of linear, cosine, constant",
        )
        _check(
            isinstance(self.period, int) and not isinstance(self.period, bool) and self.period >= 1,
            "population.transfer.period",
            self.period,
            "an integer >= 1",
        )
        _check(_is_number(self.sigma) and self.sigma > 0, "population.transfer.sigma", self.sigma, "a float > 0")
        _check(
            self.mode in ("symmetric", "beneficial"), "population.transfer.mode", self.mode, "symmetric or beneficial"
        )
        _check(self.scope in (None, "trunk", "all"), "population.transfer.scope", self.scope, "trunk or all (or unset)")
        _check(isinstance(self.lr_tied, bool), "population.transfer.lr_tied", self.lr_tied, "true or false")

    @property
    def mixed_scope(self) -> str:
        return self.scope or ("trunk" if self.rule == "mtgd" else "all")

    @property
    def strength(self) -> float | None:
        """The rule's own strength: ε0 under periodic, α under mtgd (None: unset)."""
        return self.alpha if self.rule == "mtgd" else self.eps0

    def with_strength(self, value: float) -> TransferSpec:
        """This transfer with the rule's strength set to `value` (0: off)."""
        if self.rule == "mtgd":
            return dataclasses.replace(self, alpha=value)
        return dataclasses.replace(self, eps0=value)


Conditioning = Literal["auto", "lowrank", "hyper", "film"]
# The solvers whose `objective` is the loss a drawn preference minimizes under population.psl.
PSL_SOLVERS = ("linear", "tchebycheff", "epo")


@dataclass(frozen=True)
class PSLSpec:
    """Pareto set learning (trials/psl/): ONE model conditioned on the preference vector is trained on
    preferences drawn every step and gives a continuous front (see trials/psl/__init__.py for the papers)."""

    # How the preference enters the model: "lowrank" (a hypernetwork generating rank-`rank` deltas of every
    # Linear/Conv2d weight; scales with the model), "hyper" (a hypernetwork generating every parameter; small
    # models only), "film" (feature-wise scale and shift of the trunk's output); "auto": hyper up to
    # trials.psl.conditioning.HYPER_MAX_PARAMETERS parameters of the problem's model, lowrank above
    # (benchmarks/psl_evidence.py: hyper had the best HV on Multi-MNIST and was the most exact on ZDT1).
    conditioning: Conditioning = "auto"
    rank: int = 4  # r of the lowrank deltas
    hidden: int = 64  # width of the preference network (hypernetwork / FiLM generator)
    samples: int = 4  # P: preferences drawn per step (each costs one model-epoch per epoch)
    # Dirichlet concentration of the drawn preferences: 1 is uniform on the simplex; 0.5 draws more near its
    # corners, which uniform draws leave under-trained (a convex front's end points 0.04-0.05 off their optima
    # at 1, within 0.01 at 0.5: tests/unit/trials/test_psl.py's quadratic problem).
    concentration: float = 0.5
    # Each drawn preference minimizes the trial's solver's objective (linear, tchebycheff or epo, with its
    # solver_args) minus cosmos_penalty·cos(preference ⊙ losses, 1): COSMOS's cosine penalty pulling the losses
    # onto the preference's ray (Ruchte & Grabocka 2021; trials/psl/scalarization.py); 0 leaves the objective alone.
    cosmos_penalty: float = 0.0
    # N: the preferences the model is evaluated at every epoch, each a point of the trial on the front.
    # None: 11 evenly spaced weights for 2 tasks, the smallest Das–Dennis set of at least 10 for more.
    points: int | None = None

    def __post_init__(self) -> None:
        _check(
            self.conditioning in ("auto", "lowrank", "hyper", "film"),
            "population.psl.conditioning",
            self.conditioning,
            "one of auto, lowrank, hyper, film",
        )
        for name, low in (("rank", 1), ("hidden", 1), ("samples", 1)):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value >= low,
                f"population.psl.{name}",
                value,
                f"an integer >= {low}",
            )
        _check(
            _is_number(self.concentration) and self.concentration > 0,
            "population.psl.concentration",
            self.concentration,
            "a float > 0",
        )
        _check(
            _is_number(self.cosmos_penalty) and self.cosmos_penalty >= 0,
            "population.psl.cosmos_penalty",
            self.cosmos_penalty,
            "a float >= 0",
        )
        _check(
            self.points is None
            or (isinstance(self.points, int) and not isinstance(self.points, bool) and self.points >= 2),
            "population.psl.points",
            self.points,
            "an integer >= 2 (or unset)",
        )


@dataclass(frozen=True)
class PopulationSpec:
    size: int = 1  # K; 1 is a plain single-model run through the same loop
    # Explicit preference vectors (K rows of T non-negative weights); None: generated
    # (quarter circle for T=2, Das–Dennis for T>=3), see trials/preferences.py.
    preferences: tuple[tuple[float, ...], ...] | None = None
    transfer: TransferSpec = field(default_factory=TransferSpec)
    # How the K members' forward and backward passes run (trials/batched.py): "sequential" one member
    # after the other; "batched" all K as one vmapped computation (needs a solver whose update reads only
    # the losses, and a model without buffers); "auto" batches on a GPU when it can and stays sequential
    # on a CPU, where the vmapped LeNets measured slower than the loop (benchmarks/population_device.py).
    execution: Execution = "auto"
    # How far the generated preferences are pulled toward equal weights: row ← (1 − interior)·row + interior/T.
    # 0 keeps the ends/corners, whose members train one task alone (the single-task optima: at a reference point
    # of worst acceptable values they add little HV); 0.3 spends them on trade-offs instead (measured with
    # benchmarks/vs_peers.py: related3 HV 18.5 → 23.5 for K = 6 without transfer).
    # Explicit `preferences` are used as given.
    interior: float = 0.0
    # How the generated preferences change from one trial of a search entry to the next (TrialSpec.repeat):
    # "same" trains every trial on the same K; "fill" gives trial r >= 1 the K directions farthest from every
    # earlier trial's (trials/preferences.py), so repeated trials add trade-offs to the front instead of
    # re-training the ones it has. Trial 0 is the same under both. Explicit `preferences` are used in every trial.
    across_trials: AcrossTrials = "same"
    # Pareto set learning instead of K separate members (one conditioned model; None: the K members).
    psl: PSLSpec | None = None
    # Where the K members live: "process", all in the trial's own process (batched on a GPU); "actors", each on a
    # Ray actor of its own (its own GPU or fraction, its own node), transferring through Ray's object store, for
    # models whose K copies do not fit one device (pareto_search/search/member_actors.py). The same training.
    placement: Placement = "process"

    def __post_init__(self) -> None:
        _check(
            self.psl is None or self.size == 1,
            "population.size",
            self.size,
            "1 with population.psl (one conditioned model; its front's points are population.psl.points)",
        )
        _check(
            self.across_trials in ("same", "fill"),
            "population.across_trials",
            self.across_trials,
            "same or fill",
        )
        _check(
            isinstance(self.size, int) and not isinstance(self.size, bool) and self.size >= 1,
            "population.size",
            self.size,
            "an integer >= 1",
        )
        _check(
            _is_number(self.interior) and 0 <= self.interior < 1,
            "population.interior",
            self.interior,
            "a number in [0, 1)",
        )
        _check(
            self.placement in ("process", "actors"),
            "population.placement",
            self.placement,
            "process or actors",
        )
        _check(
            self.placement == "process" or self.psl is None,
            "population.placement",
            self.placement,
            "process with population.psl (one conditioned model: there are no members to place apart)",
        )
        _check(
            self.execution in ("auto", "sequential", "batched"),
            "population.execution",
            self.execution,
            "auto, sequential or batched",
        )
        if self.preferences is not None:
            prefs = tuple(tuple(float(v) for v in row) for row in self.preferences)
            object.__setattr__(self, "preferences", prefs)
            _check(
                len(prefs) == self.size,
                "population.preferences",
                f"{len(prefs)} rows",
                f"{self.size} rows (one per member)",
            )
            for row in prefs:
                _check(
                    all(math.isfinite(v) and v >= 0 for v in row) and sum(row) > 0,
                    "population.preferences",
                    row,
                    "non-negative weights with a positive sum",
                )


@dataclass(frozen=True)
class TrialSpec:
    problem: str
    problem_args: Mapping[str, Any] = field(default_factory=dict)
    solver: str = "linear"
    solver_args: Mapping[str, Any] = field(default_factory=dict)
    population: PopulationSpec = field(default_factory=PopulationSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    epochs: int = 5
    seed: int = 0
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto" (cuda when available)
    # Measure TAG's lookahead inter-task affinity of member 0 every this many steps (see
    # trials/affinity.py). 0 = off, the default: each measurement costs T backward and T+1 forward
    # passes, more than a training step, and only task-grouping studies need it.
    affinity_every: int = 0
    # "optimizer": the member optimizer's real next update (momentum, Adam moments; TAG's CelebA
    # choice); "sgd": θ − lr·g_i at the optimizer's current lr (the textbook definition).
    affinity_lookahead: AffinityLookahead = "optimizer"
    # Which of its search entry's trials this is (0, 1, ...: the service numbers them in the order Tune makes
    # them; a run outside a search is trial 0). With `population.across_trials: fill` it picks the preferences.
    repeat: int = 0

    def __post_init__(self) -> None:
        _check(isinstance(self.problem, str) and bool(self.problem), "problem", self.problem, "a problem name")
        _check(
            isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 1,
            "epochs",
            self.epochs,
            "an integer >= 1",
        )
        _check(
            isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
            "seed",
            self.seed,
            "an integer >= 0",
        )
        _check(
            self.device in ("cpu", "cuda", "auto") or (self.device.startswith("cuda:") and self.device[5:].isdigit()),
            "device",
            self.device,
            "cpu, cuda, cuda:N or auto",
        )
        _check(
            isinstance(self.affinity_every, int)
            and not isinstance(self.affinity_every, bool)
            and self.affinity_every >= 0,
            "affinity_every",
            self.affinity_every,
            "an integer >= 0 (0 = off)",
        )
        _check(
            self.affinity_every == 0 or self.population.placement == "process",
            "affinity_every",
            self.affinity_every,
            "0 with population.placement actors (the affinity is measured on member 0's model in the trial's process)",
        )
        _check(
            self.affinity_every == 0 or self.population.psl is None,
            "affinity_every",
            self.affinity_every,
            "0 with population.psl (the affinity is measured on a member's own model, which a conditioned model "
            "does not have)",
        )
        _check(
            isinstance(self.repeat, int) and not isinstance(self.repeat, bool) and self.repeat >= 0,
            "repeat",
            self.repeat,
            "an integer >= 0",
        )
        _check(
            self.affinity_lookahead in ("optimizer", "sgd"),
            "affinity_lookahead",
            self.affinity_lookahead,
            "optimizer or sgd",
        )

    @property
    def model_epochs_per_epoch(self) -> int:
        """What one epoch of this trial costs in model-epochs (one model over the training set once): K for K
        members, P for a Pareto set learning model drawing P preferences per example."""
        return self.population.psl.samples if self.population.psl is not None else self.population.size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """What the trial trains: every field but where and how its members execute (``device``,
        ``population.execution``, ``population.placement``). A trial's checkpoints are its own under any of those,
        so one written on a GPU resumes on the CPU and back, batched or sequential, in one process or on actors (the
        same updates to float tolerance)."""
        data = self.to_dict()
        del data["device"]
        del data["population"]["execution"]
        del data["population"]["placement"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        """Build from plain data (a config section); unknown keys are errors."""
        data = dict(data)
        _reject_unknown(data, cls, "")
        population = dict(data.pop("population", {}) or {})
        _reject_unknown(population, PopulationSpec, "population.")
        transfer = dict(population.pop("transfer", {}) or {})
        _reject_unknown(transfer, TransferSpec, "population.transfer.")
        if population.get("psl") is not None:
            psl = population.pop("psl")
            _check(isinstance(psl, Mapping), "population.psl", psl, "a mapping of PSL settings (or unset)")
            _reject_unknown(psl, PSLSpec, "population.psl.")
            population["psl"] = PSLSpec(**psl)
            solver = data.get("solver", "linear")
            _check(solver in PSL_SOLVERS, "solver", solver, f"one of {', '.join(PSL_SOLVERS)} with population.psl")
        optimizer = dict(data.pop("optimizer", {}) or {})
        _reject_unknown(optimizer, OptimizerSpec, "optimizer.")
        return cls(
            population=PopulationSpec(transfer=TransferSpec(**transfer), **population),
            optimizer=OptimizerSpec(**optimizer),
            **data,
        )


def _reject_unknown(data: Mapping[str, Any], cls: type, prefix: str) -> None:
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in allowed:
            raise SpecError(f"unknown key `{prefix}{key}`; allowed: {', '.join(allowed)}")


def _differing(saved: Any, current: Any, prefix: str = "") -> str | None:
    """The dotted name of the first field whose value differs (depth first, in field order), or None."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in current:
            found = _differing(saved.get(key), current[key], f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if saved == current else prefix.rstrip(".")


def spec_difference(saved: Mapping[str, Any], spec: TrialSpec) -> str | None:
    """None when a checkpoint's spec (its ``to_dict()``, written by any version) describes the training of
    `spec`; otherwise one line naming the first field that differs and both values. Fields added since the
    checkpoint was written take their defaults; ``device`` and ``population.execution`` are not compared
    (:meth:`TrialSpec.identity`)."""
    try:
        restored = TrialSpec.from_dict(saved)
    except (SpecError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return f"its spec is not one this version reads: {first[:200]}"
    theirs, ours = restored.identity(), spec.identity()
    name = _differing(theirs, ours)
    if name is None:
        return None
    value: tuple[Any, Any] = (theirs, ours)
    for key in name.split("."):
        value = (value[0].get(key) if isinstance(value[0], dict) else None, value[1][key])
    return f"`{name}` is {value[0]!r} there, {value[1]!r} here"
