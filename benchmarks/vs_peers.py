"""pareto_search against what its users would write instead: the same problem, the same budget in model-epochs,
the same learning-rate range, side by side in one run, over several seeds (issue 13's headline number).

    .venv/bin/python benchmarks/vs_peers.py --quick                  # zdt1, 3 seeds, 1.5 min: ends with the ratio line
    .venv/bin/python benchmarks/vs_peers.py --problems multi_mnist --slots 2   # ours and Tune: 2 trials side by side
    .venv/bin/python benchmarks/vs_peers.py --problems multi_mnist --seeds 0,1,2
    .venv/bin/python benchmarks/vs_peers.py --problems multi_mnist,multi_fashion_mnist,related3 --budget 50

**Budget.** One member of a population training one epoch is one model-epoch. Every method gets ``--budget``
model-epochs (default 10 models x ``--epochs`` 5 = 50) and is charged for what it actually trained: a trial that
a scheduler stops after 1 epoch costs K x 1. A method's curve is the HV of the cumulative front of every model it
has trained so far (each model with its latest evaluation, as the service's global front keeps it: one point per
trial and member) against the model-epochs spent so far, in the order the results arrived; HV is the service's
(``pareto_search.pareto.Front.hypervolume``, pymoo) of the validation objectives at the problem's reference point.

**Methods** (``--list``). Peers, written the way their users write them (Adam everywhere, the learning rate
log-uniform in the same range ``--lr-range``):

- ``optuna-tpe``, ``optuna-nsga2``: ``optuna.create_study(directions=[...])`` with ``TPESampler(seed=s)`` or
  ``NSGAIISampler(seed=s)`` (both at their defaults), over the preference weight(s) and the learning rate; one
  linearly scalarized model per trial (``trials.loop.Trainer``, K = 1) trained for the full epochs; budget /
  epochs trials. NB: with the default ``n_startup_trials=10`` (TPE) and ``population_size=50`` (NSGA-II), 10 trials
  are random samples for both samplers; that is what a user gets at this budget.
- ``tune-asha``: the real Ray Tune setup (``ray.tune.Tuner``, a function trainable reporting every epoch,
  ``ray.tune.schedulers.ASHAScheduler(max_t=epochs)`` at its defaults: grace period 1, reduction factor 4) on a
  scalar objective, the weighted sum of the (minimization-form) validation objectives with the trial's sampled
  weights; one model per trial; trials are started until the budget is spent.
- ``libmoon-epo``, ``libmoon-pmtl``: LibMOON's finite-set Pareto solvers on our network and data. The only PyPI
  release that ships its gradient solvers is libmoon 0.1.11 (0.2.1, the newest, has no ``libmoon.solver.gradient``
  package although its modules import it); it runs here in a throwaway venv (``--libmoon-python``, see
  ``setup_libmoon_venv``) that reuses this venv's torch through a ``.pth`` file, with its pins (torch 2.2.1,
  numpy 1.26.4) not installed. The training loop is LibMOON's own MultiMNIST loop (``problem/mtl/mnist.py``):
  K models, one per preference of ``uniform_pref`` (clip 0.1; 2 partitions of Das-Dennis for 3 tasks), each step
  the per-task gradients of the whole model (``get_grads_from_model``), the solver's weights (``CoreEPO``; PMTL's
  ``get_d_paretomtl_init`` for the first fifth of the steps, then ``get_d_paretomtl``, as its ``PMTLSolver``) and
  an Adam step on the weighted loss; runs of K models with a learning rate drawn from the range until the
  budget is spent. LibMOON's PMTL is written for two objectives only: on a 3-task problem our ``pmtl`` stands in
  and the record says so. Without the LibMOON venv our ``epo`` / ``pmtl`` solvers (K = 5) stand in, said so.
- ``libmoon-psl`` (on request): LibMOON 0.1.11's own Pareto set learning for MTL, as its
  ``solver/psl/run_mtl_psl.py`` runs it: its ``HyperNet([9, 5])`` generates the weights of its ``LeNetTarget([9, 5])``
  (LibMOON's classes, imported), one preference a step from Dirichlet(1, 1), loss = preference · its
  ``CrossEntropyLoss`` pair, Adam at its default lr 1e-3, on our batches. One preference a step is one model-epoch
  an epoch, so ``budget`` epochs; each epoch the hypernetwork is evaluated at 11 evenly spaced preferences (11
  points). Its target network takes 1 x 36 x 36 images only (conv 9, pool, conv 5, pool: the 5 x 5 latent its
  hypernetwork is built for): the Multi-* problems; elsewhere the row is refused in one line, and without the
  LibMOON venv too (no stand-in).
- ours, through the real service (``pareto_search.search.runner.run_search``: its Tune set-up, trainable,
  scheduler and global front), the configuration a user writes without tuning: ``method: mt2o`` (the rows
  name their K: the preset's K = 3 with ``across_trials: fill`` since 2026-12-06; K = 5 before, and K = 6, a
  Das-Dennis count, on 3 tasks: those runs predate the service's energy directions for other K) and the same with
  ``transfer: {eps0: 0}`` (independent scalarizations), the learning rate
  ``{loguniform: [lo, hi]}``, ``search.algorithm: random``, each with ``scheduler: fifo`` (the default) and
  ``pareto_asha`` (grace 1, eta 3: the defaults). ``num_samples`` is ceil(budget / (K x epochs)) for FIFO and
  ceil(budget / K) for Pareto-ASHA; a Tune stopper (added to the service's RunConfig by this benchmark only)
  ends the search once the budget is spent, so that both schedulers are measured on the same budget.

**Slots.** Ray starts once per benchmark process with ``--slots`` CPUs, 1 per trial: the Ray-based methods (ours,
``tune-asha``) run that many trials side by side. Optuna's ``study.optimize``, LibMOON's loop and our stand-ins train
one model at a time whatever ``--slots`` says. The default, 1, is every method on one slot, what one GPU gives
(``gpus_per_trial: 1``: Ray places one trial per GPU): equal resources, and a run whose results arrive in the same
order every time (``--quick`` prints the same ratio run after run). With ``--slots 2`` ours and Tune run two trials
side by side while Optuna still runs one. Trials side by side report in another order than one at a time, and the
curves follow that order, so the slots are part of a Ray-based run's cache key; the others' runs serve every
``--slots``.

The Trainer- and LibMOON-based peers run in a
process pool of ``--workers`` (one torch thread each), before the Ray-based methods of the same problem, or beside
them with ``--overlap`` (``--quick`` does: Ray's start-up and its idle waits are then used), at Ray's worker niceness
so that neither starves the other. Wall times are secondary: with ``--overlap`` every method shares the cores.

**Report.** Per problem: the final HV at the budget (mean ± std over seeds); the model-epochs each method needs to
reach 95 % and 98 % of the best final mean HV of any method (on the mean curve, and per seed: mean ± std with the
seeds that never reach it); wall seconds (secondary: the machine is shared). The headline: the best peer is the peer
with the highest final mean HV; the budget ratio of one of ours is (model-epochs its mean curve needs to reach that
peer's final mean HV) / (model-epochs the peer's mean curve needed to reach it); < 1 means we are cheaper, "never"
that ours does not reach it within the budget. A difference "exceeds the seed spread" when the means differ by more
than the sum of the two standard deviations (mt2o_evidence.beyond_spread). The last line printed is
``budget ratio R to reach the best peer's final HV (<peer>, <problem>)`` for ``--headline`` (default
``mt2o-k3-fill-fifo``: ``method: mt2o`` as it ships, with the service's default scheduler and the range given as
a probe) on the last problem.

Runs are cached in <out>/runs.jsonl by (problem, n_train, method, seed, budget, epochs, lr range, slots): a rerun
computes only what is missing (``--quick`` never reads the cache: it checks the current code). Writes
<out>/summary-<problems>-b<budget>-e<epochs>-s<slots>.md, <out>/<problem>_<n_train>_b<budget>_s<slots>_hv.png (HV vs
model-epochs, mean ± std) and logs them to MLflow (experiment ``vs-peers``; the service's searches go to
``vs-peers-searches``; a sqlite store in <out> unless --tracking-uri).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import contextlib
import json
import logging
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import peer_stats  # noqa: E402
from mt2o_evidence import beyond_spread, mean_std  # noqa: E402  (the same statistics as the MT2O evidence)

DEFAULT_LIBMOON_PYTHON = "/tmp/libmoon-venv/bin/python"
TARGETS = (0.95, 0.98)
SEED_RANGE = 2**31 - 1
SINGLE_MODEL_LR = 1e-3  # Adam's default: what the practitioner's first model trains at
RAY_WORKER_NICENESS = 15  # what Ray gives its workers (and so the service's trials)
RATIO_LINE = "budget ratio {ratio} to reach the best peer's final HV ({peer}, {problem})"
# The held-out range: wide enough that its best value is not at an edge (the in-sample [1e-3, 1e-2] had the probe pick
# its top edge in every run, where a log-uniform draw rarely lands).
HELDOUT_LR = (1e-4, 3e-2)


@dataclass(frozen=True)
class ProblemSetup:
    name: str
    lr: tuple[float, float]  # the learning-rate range every method draws from
    sized: bool  # whether --n-train applies

    def args(self, n_train: int) -> dict[str, Any]:
        if self.name.startswith("multi_"):  # as configs/quickstart.yaml
            return {"n_train": n_train, "n_val": 1_000, "n_test": 1_000, "batch_size": 256}
        if self.name == "related3":
            return {"n_train": n_train}  # batch 64: 93 steps an epoch at 6k
        return {}  # synthetic: 50 steps an epoch, no data


PROBLEMS: dict[str, ProblemSetup] = {
    "multi_mnist": ProblemSetup("multi_mnist", (1e-3, 1e-2), True),  # the issue's range
    "multi_fashion_mnist": ProblemSetup("multi_fashion_mnist", (1e-3, 1e-2), True),
    "multi_fashion": ProblemSetup("multi_fashion", (1e-3, 1e-2), True),
    "related3": ProblemSetup("related3", (1e-3, 1e-2), True),
    # Synthetic problems: Adam needs 0.01-0.05 to reach the front in a few epochs of 50 steps (synthetic.py).
    "zdt1": ProblemSetup("zdt1", (5e-3, 5e-2), False),
    "toy2d": ProblemSetup("toy2d", (5e-3, 5e-2), False),
    # Held-out only (never used to choose a default): the built-in tabular problems at their own sizes.
    "river_flow": ProblemSetup("river_flow", HELDOUT_LR, False),
    "movielens": ProblemSetup("movielens", HELDOUT_LR, False),
}


@dataclass(frozen=True)
class Protocol:
    """Which problems and seeds a run may use. ``in-sample``: the problems and seeds every default was chosen on.
    ``heldout``: problems and seeds no default was ever chosen on, checked once with the defaults frozen."""

    name: str
    problems: tuple[str, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    lr: tuple[float, float] | None  # None: each problem's own range


HELDOUT_METHODS = (
    "optuna-tpe",
    "optuna-nsga2",
    "optuna-tpe-expert",
    "optuna-nsga2-expert",
    "optuna-probe-tpe",
    "single-model",
    "tune-asha",
    "libmoon-epo",
    "libmoon-pmtl",
    "mt2o-default",
)
PROTOCOLS = {
    # Multi-Fashion informed only the transfer rule (mt2o_evidence.py), none of the levers measured against peers;
    # seeds 10-14 were never run by this benchmark before the defaults were frozen.
    "heldout": Protocol(
        "heldout", ("multi_fashion", "river_flow", "movielens"), tuple(range(10, 15)), HELDOUT_METHODS, HELDOUT_LR
    ),
    "in-sample": Protocol("in-sample", ("multi_mnist", "multi_fashion_mnist", "related3"), (0, 1, 2), (), None),
}
IN_SAMPLE_PROBLEMS = ("multi_mnist", "multi_fashion_mnist", "related3", "zdt1", "zdt2", "toy2d")


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # "peer" or "ours"
    runner: str  # optuna, tune-asha, libmoon, trainer, service
    what: str
    sampler: str = ""  # optuna: tpe / nsga2
    solver: str = ""  # libmoon / trainer: epo / pmtl
    eps0: float | None = None  # service: None = the mt2o preset's transfer
    scheduler: str = ""  # service: fifo / pareto_asha
    lr_probe: bool = False  # service: `lr: {probe: [lo, hi]}` (found once, charged to the budget) instead of drawn
    interior: float = 0.0  # service: `population.interior` (preferences pulled toward equal weights)
    mode: str = "symmetric"  # service, with transfer: `population.transfer.mode`
    concurrent: int | None = None  # service: `search.max_concurrent_trials` (None: as many as there are slots)
    size: int | None = None  # service: `population.size` (None: population_size(), the preset's K)
    across: str = "same"  # service: `population.across_trials` (fill: later trials take the gaps' preferences)
    expert: bool = False  # optuna: the sampler sized to the budget (TPE start-up a third, multivariate; NSGA-II pop)
    preset: bool = False  # service: `method: mt2o` as it ships (no population key), the default a user gets


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("optuna-tpe", "peer", "optuna", "Optuna TPE over (weights, lr), K=1 per trial", sampler="tpe"),
        Method("optuna-nsga2", "peer", "optuna", "Optuna NSGA-II over (weights, lr), K=1 per trial", sampler="nsga2"),
        Method(
            "optuna-tpe-expert",
            "peer",
            "optuna",
            "Optuna TPE sized to the budget: a third of the trials random, multivariate=True",
            sampler="tpe",
            expert=True,
        ),
        Method(
            "optuna-nsga2-expert",
            "peer",
            "optuna",
            "Optuna NSGA-II with a population that fits the budget (half the trials: two generations)",
            sampler="nsga2",
            expert=True,
        ),
        Method(
            "optuna-probe-tpe",
            "peer",
            "optuna",
            "Optuna TPE (expert) over the weights only, lr fixed by the same probe as ours (charged)",
            sampler="tpe",
            expert=True,
            lr_probe=True,
        ),
        Method(
            "single-model",
            "peer",
            "single",
            "the practitioner's first move: one model at equal weights, Adam at its default lr 1e-3, trained for the "
            "whole budget",
        ),
        Method("tune-asha", "peer", "tune-asha", "Ray Tune ASHA on a weighted sum with sampled weights, K=1"),
        Method(
            "psl",
            "ours",
            "psl",
            "`method: psl` as it ships: one preference-conditioned network, P preferences drawn per step (P "
            "model-epochs an epoch), Adam lr 1e-3, budget / P epochs; each epoch its N evaluation preferences",
        ),
        Method("libmoon-epo", "peer", "libmoon", "LibMOON 0.1.11 CoreEPO, K models per run", solver="epo"),
        Method("libmoon-pmtl", "peer", "libmoon", "LibMOON 0.1.11 PMTL, K models per run", solver="pmtl"),
        Method(
            "libmoon-psl",
            "peer",
            "libmoon",
            "LibMOON 0.1.11 PSL (run_mtl_psl.py): its HyperNet -> LeNetTarget, one Dirichlet(1, 1) preference a step, "
            "Adam lr 1e-3, budget epochs; each epoch 11 points (Multi-* only)",
            solver="psl",
        ),
        Method("epo", "peer", "trainer", "our EPO solver, K per run (LibMOON stand-in)", solver="epo"),
        Method("pmtl", "peer", "trainer", "our PMTL solver, K per run (LibMOON stand-in)", solver="pmtl"),
        Method(
            "independent-fifo", "ours", "service", "service: K scalarizations, eps0 0, FIFO", eps0=0.0, scheduler="fifo"
        ),
        Method(
            "independent-pareto-asha",
            "ours",
            "service",
            "service: eps0 0, Pareto-ASHA",
            eps0=0.0,
            scheduler="pareto_asha",
        ),
        Method("mt2o-fifo", "ours", "service", "service: method mt2o (eps0 0.3), FIFO", scheduler="fifo"),
        Method("mt2o-pareto-asha", "ours", "service", "service: method mt2o, Pareto-ASHA", scheduler="pareto_asha"),
        Method(
            "mt2o-probe-fifo",
            "ours",
            "service",
            "service: method mt2o, lr probed once, FIFO",
            scheduler="fifo",
            lr_probe=True,
        ),
        Method(
            "independent-probe-fifo",
            "ours",
            "service",
            "service: eps0 0, lr probed once, FIFO",
            eps0=0.0,
            scheduler="fifo",
            lr_probe=True,
        ),
        Method(
            "mt2o-probe-interior-fifo",
            "ours",
            "service",
            "service: method mt2o, lr probed, interior 0.3, FIFO",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
        ),
        Method(
            "mt2o-beneficial-probe-interior-fifo",
            "ours",
            "service",
            "service: method mt2o as it shipped until K = 3 / fill (K = 5, beneficial transfer, interior 0.3), "
            "lr probed, FIFO",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
        ),
        Method(
            "independent-probe-interior-fifo",
            "ours",
            "service",
            "service: eps0 0, lr probed, interior 0.3, FIFO",
            eps0=0.0,
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
        ),
        Method(
            "mt2o-beneficial-probe-interior-seq",
            "ours",
            "service",
            "service: the headline's configuration, one trial at a time (as Optuna runs its trials)",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
            concurrent=1,
        ),
        Method(
            "mt2o-k3-beneficial-probe-interior-fifo",
            "ours",
            "service",
            "service: the headline's configuration with K = 3, every trial the same preferences (K's share alone)",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
            size=3,
        ),
        Method(
            "mt2o-k3-beneficial-probe-interior-seq",
            "ours",
            "service",
            "service: the headline's configuration with K = 3, one trial at a time (a small population first)",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
            concurrent=1,
            size=3,
        ),
        Method(
            "mt2o-fill-fifo",
            "ours",
            "service",
            "service: the headline's configuration, later trials fill the gaps between earlier trials' preferences",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
            across="fill",
        ),
        Method(
            "mt2o-fill-seq",
            "ours",
            "service",
            "service: mt2o-fill-fifo, one trial at a time",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
            across="fill",
            concurrent=1,
        ),
        Method(
            "mt2o-k3-fill-fifo",
            "ours",
            "service",
            "service: mt2o-fill-fifo with K = 3 (a small population first, the gaps next)",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
            across="fill",
            size=3,
        ),
        Method(
            "mt2o-k3-fill-seq",
            "ours",
            "service",
            "service: mt2o-k3-fill-fifo, one trial at a time",
            scheduler="fifo",
            lr_probe=True,
            interior=0.3,
            mode="beneficial",
            across="fill",
            size=3,
            concurrent=1,
        ),
        Method(
            "mt2o-default",
            "ours",
            "service",
            "service: `method: mt2o` as it ships (the preset's K, transfer, interior, fill), lr probed, FIFO",
            scheduler="fifo",
            lr_probe=True,
            preset=True,
        ),
    )
}
# Our EPO/PMTL only stand in for LibMOON; the rows added with the held-out protocol run there (and on request).
HELDOUT_ONLY = ("optuna-tpe-expert", "optuna-nsga2-expert", "optuna-probe-tpe", "single-model", "mt2o-default", "psl")
DEFAULT_METHODS = [m for m in METHODS if m not in ("epo", "pmtl", "libmoon-psl", *HELDOUT_ONLY)]
# LibMOON's PSL ships one target network, a LeNet for 1 x 36 x 36 images: the problems whose inputs it takes.
LIBMOON_PSL_PROBLEMS = ("multi_mnist", "multi_fashion", "multi_fashion_mnist")
LIBMOON_PSL_INPUT = (1, 36, 36)
LIBMOON_PSL_POINTS = 11  # evaluation preferences an epoch, evenly spaced on the 2-task simplex


def population_size(num_tasks: int) -> int:
    """K of a population row that does not name one: 5, or 6 on 3 tasks (the preset's K, and the Das-Dennis count
    the service then accepted, when those rows were measured; the preset's K = 3 rows say `k3`)."""
    return 5 if num_tasks == 2 else 6


def preset_size() -> int:
    """K of `method: mt2o` as it ships."""
    from trials.presets import MT2O

    return int(MT2O.population["size"])


# -- budget accounting ----------------------------------------------------------------------------------------


class BudgetCounter:
    """Model-epochs spent and the points seen, in the order results arrive. One result is one epoch of a trial:
    it costs as many model-epochs as it has members, so a trial stopped early is charged only for its epochs."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.spent = 0
        self.started = time.perf_counter()
        self.events: list[dict[str, Any]] = []

    def charge(self, model_epochs: int) -> None:
        """Training that adds no point to the front (a learning-rate probe's models)."""
        if model_epochs <= 0:
            return
        self.spent += model_epochs
        self.events.append({"cum": self.spent, "t": time.perf_counter() - self.started, "points": []})

    def add(
        self,
        run: str,
        values: Sequence[Sequence[float]],
        test: Sequence[Sequence[float]] | None = None,
        cost: int | None = None,
    ) -> None:
        """One epoch of ``run``'s members: their validation points (and, when given, the same models on test:
        recorded for the report only, never used to choose anything). It costs one model-epoch per member, or
        ``cost`` (a PSL network's epoch trains P preferences per example and shows N points)."""
        self.spent += len(values) if cost is None else cost
        points = [[f"{run}/m{k}", [float(v) for v in row]] for k, row in enumerate(values)]
        event: dict[str, Any] = {"cum": self.spent, "t": time.perf_counter() - self.started, "points": points}
        if test is not None:
            event["test"] = [[f"{run}/m{k}", [float(v) for v in row]] for k, row in enumerate(test)]
        self.events.append(event)

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget


def budget_stopper(counter: BudgetCounter) -> Any:
    """A Ray Tune Stopper that feeds ``counter`` with every result (``values``: one row per member) and ends the
    whole experiment once the budget is spent; it never stops a single trial (the scheduler does that)."""
    from ray.tune.stopper import Stopper

    class _BudgetStopper(Stopper):
        def __init__(self) -> None:
            self.seen: dict[str, int] = {}  # trial -> its last counted training_iteration

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            # Tune hands a trial's last result over again when its function returns (FIFO trials): counted once,
            # else a finished trial would be charged an epoch it never trained (and the budget cut another short).
            iteration = int(result.get("training_iteration", 0))
            if "values" in result and iteration > self.seen.get(trial_id, 0):
                self.seen[trial_id] = iteration
                counter.add(trial_id, result["values"], result.get("test_values"))
            return False

        def stop_all(self) -> bool:
            return counter.exhausted

    return _BudgetStopper()


def replay_hv(events: Sequence[dict[str, Any]], directions: Sequence[str], reference: Sequence[float]) -> list[float]:
    """HV of the cumulative front after each event: every model with each epoch it was evaluated at (as the
    service's front keeps a model's non-dominated epochs with their weights: a later, worse epoch takes nothing
    away), so the curve never goes down."""
    from pareto_search.pareto import Front, FrontPoint, NonFiniteValuesWarning, Objective

    objectives = tuple(Objective(f"o{i}", d) for i, d in enumerate(directions))
    seen: list[FrontPoint] = []
    out = []
    for i, event in enumerate(events):
        seen.extend(FrontPoint(f"{key}@{i}", tuple(values)) for key, values in event["points"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteValuesWarning)  # a diverged model adds no volume
            front = Front(objectives, tuple(seen)).non_dominated()  # only the front: the replay stays small
            seen = list(front.points)
            out.append(front.hypervolume(tuple(reference)).value if seen else 0.0)
    return out


def grid_curve(cum: Sequence[int], hv: Sequence[float], budget: int) -> list[float]:
    """HV after x model-epochs for x = 0..budget: the HV of what had finished by then (a step function)."""
    curve, j, current = [], 0, 0.0
    for x in range(budget + 1):
        while j < len(cum) and cum[j] <= x:
            current = hv[j]
            j += 1
        curve.append(current)
    return curve


def budget_to_reach(xs: Sequence[float], values: Sequence[float], target: float) -> float:
    """The first x where ``values`` reaches ``target``, interpolated linearly between the bracketing points
    (as mt2o_evidence.crossing, on any x); inf if never."""
    for i, value in enumerate(values):
        if math.isfinite(value) and value >= target:
            if i > 0 and values[i] > values[i - 1]:
                return xs[i - 1] + (target - values[i - 1]) / (values[i] - values[i - 1]) * (xs[i] - xs[i - 1])
            return float(xs[i])
    return math.inf


def ratio_text(ratio: float) -> str:
    return "never" if not math.isfinite(ratio) else f"{ratio:.2f}"


def ratio_line(ratio: float, peer: str, problem: str) -> str:
    return RATIO_LINE.format(ratio=ratio_text(ratio), peer=peer, problem=problem)


# -- jobs -----------------------------------------------------------------------------------------------------


RAY_RUNNERS = ("service", "tune-asha")  # the runners whose trials share --slots; the others run one model at a time
POOL_RUNNERS = ("optuna", "trainer", "libmoon", "single", "psl")  # one model (or one population) at a time, in the pool


def job_slots(job: dict[str, Any]) -> int:
    """Slots a run had: --slots for the Ray-based runners, 1 for the pool's (one model at a time, whatever --slots)."""
    return int(job["slots"]) if job["runner"] in RAY_RUNNERS else 1


def _key(job: dict[str, Any]) -> tuple:
    lr = tuple(float(v) for v in job["lr"])
    # Slots are part of a run's identity: trials side by side report in another order than one at a time, and the
    # budget curve follows that order (a 1-slot run is what one GPU gives every method).
    return (job["problem"], int(job["n_train"]), job["method"], int(job["seed"]), int(job["budget"]),
            int(job["epochs"]), lr, job_slots(job))  # fmt: skip


def load_cache(path: Path) -> dict[tuple, dict[str, Any]]:
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {_key(r): r for r in records if r.get("error") is None}


def _problem(job: dict[str, Any]) -> Any:
    from trials.problems import make_problem

    return make_problem(job["problem"], PROBLEMS[job["problem"]].args(job["n_train"]))


def _objective_names(problem: Any) -> tuple[str, ...]:
    return tuple(problem.default_objectives)


def _sample_lr(job: dict[str, Any], run: int) -> float:
    import numpy as np

    lo, hi = job["lr"]
    rng = np.random.default_rng([int(job["seed"]), run, 7])
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _record(job: dict[str, Any], counter: BudgetCounter, slots: int, note: str = "") -> dict[str, Any]:
    return {**job, "events": counter.events, "slots": slots, "note": note, "error": None}


def run_optuna(job: dict[str, Any]) -> dict[str, Any]:
    """Plain Optuna, as its users write it: a study over (weights, lr), one model per trial, full epochs."""
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problem = _problem(job)
    names = _objective_names(problem)
    directions = ["maximize" if problem.metric(n).direction == "max" else "minimize" for n in names]
    counter = BudgetCounter(job["budget"])
    fixed_lr = probe_lr(job, problem, counter) if job.get("lr_probe") else None  # charged to the budget first
    n_trials = max(1, (job["budget"] - counter.spent) // job["epochs"])
    sampler = optuna_sampler(job["sampler"], bool(job.get("expert")), job["seed"], n_trials)
    study = optuna.create_study(directions=directions, sampler=sampler)
    lo, hi = job["lr"]

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        if problem.num_tasks == 2:
            w = trial.suggest_float("w", 0.0, 1.0)
            weights = (w, 1.0 - w)
        else:  # one weight per task, normalized by the objective (the usual way to write a simplex)
            raw = [trial.suggest_float(f"w{t}", 0.0, 1.0) for t in range(problem.num_tasks)]
            weights = tuple(r / sum(raw) for r in raw) if sum(raw) > 0 else (1.0 / len(raw),) * len(raw)
        lr = fixed_lr if fixed_lr is not None else trial.suggest_float("lr", lo, hi, log=True)
        trainer = one_model(job, problem, weights, lr, job["epochs"], job["seed"] * 1000 + trial.number)
        values: list[float] = []
        while not trainer.done:
            report = trainer.train_epoch()
            values = [report.members[0].metrics[n] for n in names]
            counter.add(f"t{trial.number}", [values], _test_rows(trainer, names))
        return tuple(values)

    study.optimize(objective, n_trials=n_trials)
    note = f"lr probed: {fixed_lr:.3g}" if fixed_lr is not None else ""
    return _record(job, counter, 1, note)


def one_model(job: dict[str, Any], problem: Any, weights: Sequence[float], lr: float, epochs: int, seed: int) -> Any:
    """One linearly scalarized model at ``weights`` (Adam at ``lr``), as the Optuna trials, the probe's candidates
    and the single-model row train it."""
    from trials.loop import Trainer
    from trials.spec import OptimizerSpec, PopulationSpec, TrialSpec

    spec = TrialSpec(
        problem=job["problem"],
        problem_args=PROBLEMS[job["problem"]].args(job["n_train"]),
        solver="linear",
        population=PopulationSpec(size=1, preferences=(tuple(weights),)),
        optimizer=OptimizerSpec(name="adam", lr=lr),
        epochs=epochs,
        seed=seed,
    )
    return Trainer(spec, problem=problem, num_threads=1)


def optuna_sampler(kind: str, expert: bool, seed: int, n_trials: int) -> Any:
    """The sampler as its users write it (library defaults), or as an expert sizes it to ``n_trials``: TPE with a
    third of the trials random (its default start-up is 10: at 10 trials it never leaves random search) and
    ``multivariate=True`` (Optuna's docs recommend it; it models the weight and lr jointly); NSGA-II with a
    population of half the trials (two generations; its default 50 is one random generation at this budget)."""
    import optuna

    if kind == "tpe":
        if not expert:
            return optuna.samplers.TPESampler(seed=seed)
        startup = max(2, math.ceil(n_trials / 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    if kind == "nsga2":
        if not expert:
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, n_trials // 2))
    raise ValueError(f"sampler {kind!r}: allowed tpe, nsga2")


def _test_rows(trainer: Any, names: Sequence[str]) -> list[list[float]]:
    """Every member on the test split, for the report only (the benchmark never selects on it)."""
    return [[float(metrics[n]) for n in names] for metrics in trainer.evaluate("test")]


def probe_lr(job: dict[str, Any], problem: Any, counter: BudgetCounter) -> float:
    """The service's learning-rate probe, for a peer: the same candidates (log-spaced over the range), the same
    epochs, one model at equal weights from the job's seed, the same choice rule (lr_probe.choose); its
    model-epochs are charged to ``counter`` like ours."""
    from types import SimpleNamespace

    from pareto_search.config import PROBE_CANDIDATES, Distribution, probe_candidates
    from pareto_search.pareto import Objective
    from pareto_search.search.lr_probe import PROBE_EPOCHS, choose

    names = _objective_names(problem)
    equal = (1.0 / problem.num_tasks,) * problem.num_tasks
    points: list[tuple[float, ...] | None] = []
    lrs = probe_candidates(Distribution(kind="probe", args=(job["lr"][0], job["lr"][1], PROBE_CANDIDATES)))
    for lr in lrs:
        trainer = one_model(job, problem, equal, lr, job["epochs"], job["seed"])
        report = None
        for _ in range(PROBE_EPOCHS):
            report = trainer.train_epoch()
        assert report is not None
        points.append(tuple(float(report.members[0].metrics[n]) for n in names))
    counter.charge(len(lrs) * PROBE_EPOCHS)
    plan = SimpleNamespace(
        objectives=tuple(Objective(n, problem.metric(n).direction) for n in names),
        reference_point=tuple(problem.default_reference_point),
    )
    _, best = choose(plan, points)  # type: ignore[arg-type]  (it reads only these two fields of a plan)
    return float(lrs[best])


def run_single_model(job: dict[str, Any]) -> dict[str, Any]:
    """One model at equal task weights trained for the whole budget (budget epochs), at Adam's default learning
    rate: what a practitioner tries before any search."""
    import torch

    torch.set_num_threads(1)
    problem = _problem(job)
    names = _objective_names(problem)
    counter = BudgetCounter(job["budget"])
    equal = (1.0 / problem.num_tasks,) * problem.num_tasks
    trainer = one_model(job, problem, equal, SINGLE_MODEL_LR, job["budget"], job["seed"] * 1000)
    while not trainer.done:
        report = trainer.train_epoch()
        counter.add("single", [[report.members[0].metrics[n] for n in names]], _test_rows(trainer, names))
    return _record(job, counter, 1, f"Adam lr {SINGLE_MODEL_LR:g}, {job['budget']} epochs")


def run_psl(job: dict[str, Any]) -> dict[str, Any]:
    """`method: psl` at its preset: one conditioned network trained budget // P epochs, each epoch charged the P
    preferences it trains per example and showing its N evaluation points. Adam at 1e-3, like the single model:
    PSL has no population of learning rates to search over, and its preset names none."""
    import torch

    from trials.loop import Trainer
    from trials.presets import PSL
    from trials.spec import TrialSpec

    torch.set_num_threads(1)
    problem = _problem(job)
    names = _objective_names(problem)
    counter = BudgetCounter(job["budget"])
    samples = int(PSL.population["psl"]["samples"])
    spec = TrialSpec.from_dict(
        {
            "problem": job["problem"],
            "problem_args": PROBLEMS[job["problem"]].args(job["n_train"]),
            "solver": PSL.solver,
            "population": PSL.population,
            "optimizer": {"name": "adam", "lr": SINGLE_MODEL_LR},
            "epochs": max(1, job["budget"] // samples),
            "seed": job["seed"] * 1000,
        }
    )
    trainer = Trainer(spec, problem=problem, num_threads=1)
    per_epoch = int(trainer.population.model_epochs_per_epoch)
    while not trainer.done and not counter.exhausted:
        report = trainer.train_epoch()
        values = [[m.metrics[n] for n in names] for m in report.members]
        counter.add("psl", values, _test_rows(trainer, names), cost=per_epoch)
    note = f"P = {per_epoch}, {len(trainer.population)} points an epoch, {trainer.epoch} epochs, Adam lr 1e-3"
    return _record(job, counter, 1, note)


def run_trainer_population(job: dict[str, Any]) -> dict[str, Any]:
    """Our EPO / PMTL solvers as LibMOON's stand-ins: runs of K members, a learning rate drawn per run."""
    import torch

    from trials.loop import Trainer
    from trials.spec import OptimizerSpec, PopulationSpec, TrialSpec

    torch.set_num_threads(1)
    problem = _problem(job)
    names = _objective_names(problem)
    counter = BudgetCounter(job["budget"])
    run = 0
    while not counter.exhausted:
        spec = TrialSpec(
            problem=job["problem"],
            problem_args=PROBLEMS[job["problem"]].args(job["n_train"]),
            solver=job["solver"],
            population=PopulationSpec(size=job["k"]),
            optimizer=OptimizerSpec(name="adam", lr=_sample_lr(job, run)),
            epochs=job["epochs"],
            seed=job["seed"] * 1000 + run,
        )
        trainer = Trainer(spec, problem=problem, num_threads=1)
        while not trainer.done and not counter.exhausted:
            report = trainer.train_epoch()
            counter.add(f"r{run}", [[m.metrics[n] for n in names] for m in report.members], _test_rows(trainer, names))
        run += 1
    return _record(job, counter, 1, job.get("note", ""))


def libmoon_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the LibMOON venv: LibMOON's preference-based MTL loop (problem/mtl/mnist.py) on our problem."""
    import torch
    from libmoon.solver.gradient.core_solver import CoreEPO
    from libmoon.solver.gradient.pmtl import get_d_paretomtl, get_d_paretomtl_init
    from libmoon.solver.gradient.utils.util import get_grads_from_model
    from libmoon.util_global.weight_factor.funs import uniform_pref

    from trials.loop import epoch_generator

    torch.set_num_threads(1)
    problem = _problem(job)
    names = _objective_names(problem)
    if problem.num_tasks == 2:
        prefs = uniform_pref(n_partition=job["k"], n_obj=2, clip_eps=0.1)  # LibMOON's MultiMNIST default clip
    else:
        prefs = uniform_pref(n_partition=2, n_obj=problem.num_tasks, clip_eps=0.1)  # 6 prefs for 3 tasks
    counter = BudgetCounter(job["budget"])
    run = 0
    while not counter.exhausted:
        torch.manual_seed(job["seed"] * 1000 + run)
        models = [problem.make_model() for _ in prefs]
        lr = _sample_lr(job, run)
        optimizers = [torch.optim.Adam(m.parameters(), lr=lr) for m in models]
        cores = [CoreEPO(pref=p) for p in prefs] if job["solver"] == "epo" else []
        warmup = job["epochs"] * problem.steps_per_epoch() // 5  # PMTLSolver: max_iter // 5
        step = 0
        for epoch in range(job["epochs"]):
            if counter.exhausted:
                break
            for batch in problem.train_batches(epoch_generator(job["seed"], epoch)):
                for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
                    losses = problem.task_losses(model(batch.inputs), batch)
                    terms = list(losses)
                    G = get_grads_from_model(terms, model)
                    losses_np = losses.detach().cpu().numpy().copy()
                    if job["solver"] == "epo":
                        alpha = cores[i].get_alpha(G=G, losses=losses_np)
                    elif step < warmup:
                        alpha = get_d_paretomtl_init(G.detach().numpy(), losses_np, prefs, i)
                    else:
                        alpha = get_d_paretomtl(G.detach().numpy(), losses_np, prefs, i)
                    optimizer.zero_grad()
                    sum(float(a) * t for a, t in zip(alpha, terms, strict=True)).backward()
                    optimizer.step()
                step += 1
            rows = [[problem.evaluate(m, "val", torch.device("cpu"))[n] for n in names] for m in models]
            test = [[problem.evaluate(m, "test", torch.device("cpu"))[n] for n in names] for m in models]
            counter.add(f"r{run}", rows, test)
        run += 1
    return _record(job, counter, 1, "LibMOON 0.1.11 (PyPI) in its own venv")


def libmoon_psl_refusal(problem_name: str) -> str:
    """Why ``libmoon-psl`` cannot run on ``problem_name``, in one line ('' where it can)."""
    if problem_name in LIBMOON_PSL_PROBLEMS:
        return ""
    return (
        f"libmoon-psl refused on {problem_name}: LibMOON's PSL ships a LeNet hypernetwork only (its LeNetTarget takes "
        f"1x36x36 images: {', '.join(LIBMOON_PSL_PROBLEMS)})"
    )


def libmoon_psl_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the LibMOON venv: LibMOON's PSL for MTL as solver/psl/run_mtl_psl.py trains it (its HyperNet and
    LeNetTarget with kernels [9, 5], one Dirichlet(1, 1) preference a step, loss = preference · its CrossEntropyLoss
    pair, Adam at lr 1e-3) on our problem's batches; each epoch the hypernetwork at 11 evenly spaced preferences."""
    import numpy as np
    import torch
    from libmoon.problem.mtl.objectives import from_name
    from libmoon.solver.psl.model.mtl import HyperNet, LeNetTarget

    from trials.loop import epoch_generator

    refusal = libmoon_psl_refusal(job["problem"])
    if refusal:
        raise ValueError(refusal)
    torch.set_num_threads(1)
    problem = _problem(job)
    names = _objective_names(problem)
    shape = tuple(problem.example_inputs(1).shape[1:])
    if shape != LIBMOON_PSL_INPUT:
        raise ValueError(f"LibMOON's LeNetTarget takes {LIBMOON_PSL_INPUT} inputs, {job['problem']} gives {shape}")

    class Generated(torch.nn.Module):
        """LibMOON's target network with the weights its hypernetwork generated for one preference: a module our
        problem's evaluate can call."""

        def __init__(self, net: Any, weights: dict[str, Any]) -> None:
            super().__init__()
            self.net, self.weights = net, weights

        def forward(self, x: Any) -> Any:
            return self.net(x, self.weights)

    torch.manual_seed(job["seed"] * 1000)
    np.random.seed(job["seed"] * 1000)  # run_mtl_psl.py draws its preferences from numpy's global generator
    hnet, net = HyperNet([9, 5]), LeNetTarget([9, 5])  # run_mtl_psl.py's 'lenet' (its --ray-hidden 100 default)
    loss_func_arr = from_name(names=["CrossEntropyLoss", "CrossEntropyLoss"], task_names=["l", "r"])
    optimizer = torch.optim.Adam(hnet.parameters(), lr=SINGLE_MODEL_LR)  # its --lr default
    gaps = LIBMOON_PSL_POINTS - 1
    evaluation = [torch.tensor([i / gaps, 1 - i / gaps]) for i in range(gaps + 1)]
    counter = BudgetCounter(job["budget"])
    epoch = 0
    while not counter.exhausted:
        hnet.train()
        for batch in problem.train_batches(epoch_generator(job["seed"], epoch)):
            ray = torch.from_numpy(np.random.dirichlet((1, 1), 1).astype(np.float32).flatten())
            weights = hnet(ray)
            logits_l, logits_r = net(batch.inputs, weights)
            batch_ = {"data": batch.inputs, "labels_l": batch.targets[0], "labels_r": batch.targets[1]}
            batch_.update(logits_l=logits_l, logits_r=logits_r)
            loss_arr = torch.stack([loss(**batch_) for loss in loss_func_arr])
            optimizer.zero_grad()
            (ray @ loss_arr).backward()
            optimizer.step()
        hnet.eval()
        with torch.no_grad():
            models = [Generated(net, hnet(pref)) for pref in evaluation]
        rows = [[problem.evaluate(m, "val", torch.device("cpu"))[n] for n in names] for m in models]
        test = [[problem.evaluate(m, "test", torch.device("cpu"))[n] for n in names] for m in models]
        counter.add("psl", rows, test, cost=1)  # one preference a step: one model-epoch an epoch
        epoch += 1
    note = (
        f"LibMOON 0.1.11 (PyPI) PSL in its own venv: HyperNet/LeNetTarget [9, 5], Dirichlet(1, 1), Adam lr 1e-3, "
        f"{epoch} epochs, {LIBMOON_PSL_POINTS} points an epoch"
    )
    return _record(job, counter, 1, note)


def run_libmoon(job: dict[str, Any]) -> dict[str, Any]:
    """One LibMOON job in the LibMOON venv's interpreter (a subprocess: its packages stay out of .venv)."""
    command = [job["libmoon_python"], str(Path(__file__).resolve()), "--libmoon-job", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=job.get("timeout_s", 3600), check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**job, "events": [], "slots": 1, "note": "", "error": f"LibMOON worker failed: {tail[:300]}"}
    return json.loads(lines[-1])


def run_pool_job(job: dict[str, Any]) -> dict[str, Any]:
    # Ray runs its trial workers at niceness 15: at 0 the peers would starve the Ray-based methods under --overlap
    # (measured: a K=5 Multi-MNIST epoch took 200 s instead of 7). The LibMOON subprocess inherits it.
    os.setpriority(os.PRIO_PROCESS, 0, RAY_WORKER_NICENESS)
    started = time.perf_counter()
    try:
        runners = {"optuna": run_optuna, "trainer": run_trainer_population, "libmoon": run_libmoon}
        runner = {**runners, "single": run_single_model, "psl": run_psl}[job["runner"]]
        record = runner(job)
    except Exception as exc:  # a failing run is recorded, the others go on
        record = {**job, "events": [], "slots": 1, "note": "", "error": f"{type(exc).__name__}: {exc}"[:400]}
    record["wall_s"] = time.perf_counter() - started
    return record


# -- the Ray-based methods (in this process) -------------------------------------------------------------------


def tune_asha_trainable(config: dict[str, Any]) -> None:
    """The usual Tune function trainable: one model at the sampled weights and lr, one report per epoch."""
    import torch
    from ray import tune

    from trials.loop import Trainer
    from trials.problems import make_problem
    from trials.spec import OptimizerSpec, PopulationSpec, TrialSpec

    torch.set_num_threads(1)
    setup = config["setup"]
    problem = make_problem(setup["problem"], setup["problem_args"])
    raw = [config[f"w{t}"] for t in range(problem.num_tasks)]
    if problem.num_tasks == 2:
        raw = [config["w0"], 1.0 - config["w0"]]
    weights = tuple(r / sum(raw) for r in raw) if sum(raw) > 0 else (1.0 / len(raw),) * len(raw)
    spec = TrialSpec(
        problem=setup["problem"],
        problem_args=setup["problem_args"],
        solver="linear",
        population=PopulationSpec(size=1, preferences=(weights,)),
        optimizer=OptimizerSpec(name="adam", lr=config["lr"]),
        epochs=setup["epochs"],
        seed=config["seed"],
    )
    trainer = Trainer(spec, problem=problem, num_threads=1)
    signs = [1.0 if d == "min" else -1.0 for d in setup["directions"]]
    while not trainer.done:
        metrics = trainer.train_epoch().members[0].metrics
        values = [metrics[n] for n in setup["objectives"]]
        score = sum(w * s * v for w, s, v in zip(weights, signs, values, strict=True))
        test = [[float(m[n]) for n in setup["objectives"]] for m in trainer.evaluate("test")]  # the report's only
        tune.report({"score": score, "values": [values], "test_values": test})


@contextlib.contextmanager
def quiet_tune() -> Iterator[None]:
    """Tune warns once for every trial the budget stopper never started (it has no results to read): noise."""
    logger = logging.getLogger("ray.tune")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_tune_asha(job: dict[str, Any], storage: Path, problem: Any) -> dict[str, Any]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    names = _objective_names(problem)
    lo, hi = job["lr"]
    space: dict[str, Any] = {f"w{t}": tune.uniform(0.0, 1.0) for t in range(problem.num_tasks)}
    space.update({"lr": tune.loguniform(lo, hi), "seed": tune.randint(0, SEED_RANGE)})
    space["setup"] = {
        "problem": job["problem"],
        "problem_args": PROBLEMS[job["problem"]].args(job["n_train"]),
        "epochs": job["epochs"],
        "objectives": list(names),
        "directions": [problem.metric(n).direction for n in names],
    }
    counter = BudgetCounter(job["budget"])
    tuner = tune.Tuner(
        tune.with_resources(tune_asha_trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="score",
            mode="min",
            scheduler=ASHAScheduler(max_t=job["epochs"]),  # Tune's defaults otherwise: grace 1, eta 4
            num_samples=job["budget"],  # at most one model-epoch each: the stopper ends it at the budget
            search_alg=BasicVariantGenerator(random_state=job["seed"]),
            # Tune's documented default for function trainables; with_resources hides that it is one, and a fresh
            # worker per trial costs ~1.3 s of imports (measured: 10 trivial trials 5.9 s reused, 18.5 s not).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-asha-{uuid.uuid4().hex[:8]}",
            storage_path=str(storage),
            stop=budget_stopper(counter),
            verbose=0,
        ),
    )
    tuner.fit()
    return _record(job, counter, job["slots"])


def service_config(job: dict[str, Any], method: Method, storage: Path, tracking_uri: str) -> dict[str, Any]:
    """What a user writes: the mt2o preset, the lr range, a scheduler by name; nothing tuned."""
    k = job["k"]
    if method.preset:  # the default as it ships: nothing but the method and the lr range (as a probe)
        return _service_search(job, method, storage, tracking_uri, default_entry(job["lr"]))
    population: dict[str, Any] = {"size": k}  # explicit: the preset's K changed (5 -> 3), a row's meaning must not
    if method.eps0 is not None:
        population["transfer"] = {"eps0": method.eps0}
    if method.eps0 is None or method.eps0 > 0:  # explicit, as `interior` below: the preset's mode changed since
        population.setdefault("transfer", {})["mode"] = method.mode
    # Always explicit: the rows measured before the preset's `interior: 0.3` keep meaning the ends and corners.
    population["interior"] = method.interior
    population["across_trials"] = method.across  # explicit too: a preset default may change, a row's name must not
    lr = {"probe": list(job["lr"])} if method.lr_probe else {"loguniform": list(job["lr"])}
    entry: dict[str, Any] = {
        "label": method.name.split("-")[0],
        "method": "mt2o",
        "optimizer": {"name": "adam", "lr": lr},
    }
    if population:
        entry["population"] = population
    return _service_search(job, method, storage, tracking_uri, entry)


def default_entry(lr: Sequence[float]) -> dict[str, Any]:
    """The solver entry a user writes for the default: ``method: mt2o`` and the learning-rate range as a probe."""
    return {"label": "mt2o", "method": "mt2o", "optimizer": {"name": "adam", "lr": {"probe": [float(v) for v in lr]}}}


def _service_search(
    job: dict[str, Any], method: Method, storage: Path, tracking_uri: str, entry: dict[str, Any]
) -> dict[str, Any]:
    k, epochs = job["k"], job["epochs"]
    per_trial = k * (epochs if method.scheduler == "fifo" else 1)  # Pareto-ASHA: a trial may stop after 1 epoch
    trials_budget = job["budget"] - probe_cost(method)
    return {
        "name": f"vs-{job['problem']}-{method.name}-s{job['seed']}-{uuid.uuid4().hex[:6]}",
        "problem": {"name": job["problem"], "args": PROBLEMS[job["problem"]].args(job["n_train"])},
        "epochs": epochs,
        "seed": job["seed"],
        "solvers": [entry],
        "search": {
            "algorithm": "random",
            "num_samples": max(1, math.ceil(trials_budget / per_trial)),
            "scheduler": {"name": method.scheduler},
            **({"max_concurrent_trials": method.concurrent} if method.concurrent else {}),
        },
        "resources": {"cpus_per_trial": 1},
        "storage": str(storage),
        "tracking": {"uri": tracking_uri, "experiment": "vs-peers-searches"},
    }


def probe_cost(method: Method) -> int:
    """Model-epochs a learning-rate probe trains: one model per candidate for PROBE_EPOCHS epochs."""
    from pareto_search.config import PROBE_CANDIDATES
    from pareto_search.search.lr_probe import PROBE_EPOCHS

    return PROBE_CANDIDATES * PROBE_EPOCHS if method.lr_probe else 0


def run_service(job: dict[str, Any], storage: Path, tracking_uri: str, log: Path) -> dict[str, Any]:
    """Ours through the real service; the only addition is the budget stopper in its RunConfig."""
    from unittest import mock

    from ray import tune

    from pareto_search.config import parse_config
    from pareto_search.plan import make_plan
    from pareto_search.search.runner import run_search

    method = METHODS[job["method"]]
    plan = make_plan(parse_config(service_config(job, method, storage, tracking_uri)))
    counter = BudgetCounter(job["budget"])
    counter.charge(probe_cost(method))  # the probe runs first, inside run_search, and adds no point
    stopper = budget_stopper(counter)

    # A subclass, not a function: Tune checks `isinstance(..., RunConfig)` while the patch is active.
    class RunConfigWithBudget(tune.RunConfig):  # type: ignore[misc,valid-type]
        def __post_init__(self) -> None:
            self.stop = stopper
            super().__post_init__()

    with (
        log.open("a") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        mock.patch.object(tune, "RunConfig", RunConfigWithBudget),
    ):
        outcome = run_search(plan)
    record = _record(job, counter, job["slots"])
    # The service's own global HV (every trial-member's latest point), to check this benchmark's replay against.
    record["service_hv"] = outcome.front.hypervolume().value
    record["service_trials"] = outcome.trials
    if method.lr_probe:  # what the probe chose (the plan keeps it)
        from pareto_search.plan import load_plan

        record["lr_probe"] = list(load_plan(plan.storage_dir.parent, plan.name)[0].probes)
    return record


# -- statistics -----------------------------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    family: str
    seeds: int
    curve_mean: list[float]
    curve_std: list[float]
    final: tuple[float, float]
    wall: tuple[float, float]
    slots: int
    notes: list[str]
    per_seed: dict[int, list[float]]


def summarize(records: dict[str, list[dict[str, Any]]], budget: int) -> list[Row]:
    rows = []
    for name, rs in records.items():
        if not rs:
            continue
        curves = {r["seed"]: grid_curve(r["cum"], r["hv"], budget) for r in rs}
        values = list(curves.values())
        rows.append(
            Row(
                name,
                METHODS[name].family,
                len(rs),
                [statistics.fmean(c[x] for c in values) for x in range(budget + 1)],
                [statistics.stdev(c[x] for c in values) if len(values) > 1 else 0.0 for x in range(budget + 1)],
                mean_std([c[-1] for c in values]),
                mean_std([r["wall_s"] for r in rs]),
                max(r["slots"] for r in rs),
                sorted({r["note"] for r in rs if r.get("note")}),
                curves,
            )
        )
    return rows


def to_target(row: Row, target: float) -> tuple[float, tuple[float, float], int]:
    """(budget on the mean curve, per-seed mean ± std over the seeds that reach it, seeds that never do)."""
    xs = list(range(len(row.curve_mean)))
    per_seed = [budget_to_reach(xs, c, target) for c in row.per_seed.values()]
    reached = [v for v in per_seed if math.isfinite(v)]
    stats = mean_std(reached) if reached else (math.inf, math.nan)
    return budget_to_reach(xs, row.curve_mean, target), stats, len(per_seed) - len(reached)


@dataclass
class Headline:
    peer: str
    target: float
    peer_budget: float
    ratios: dict[str, tuple[float, float]]  # ours method -> (its budget, ratio)


def headline(rows: list[Row]) -> Headline | None:
    peers = [r for r in rows if r.family == "peer"]
    ours = [r for r in rows if r.family == "ours"]
    if not peers or not ours:
        return None
    best = max(peers, key=lambda r: r.final[0])
    xs = list(range(len(best.curve_mean)))
    target = best.final[0]
    peer_budget = budget_to_reach(xs, best.curve_mean, target)
    ratios = {}
    for r in ours:
        mine = budget_to_reach(xs, r.curve_mean, target)
        ratios[r.method] = (mine, mine / peer_budget if peer_budget > 0 else math.inf)
    return Headline(best.method, target, peer_budget, ratios)


def _pm(value: tuple[float, float], spec: str) -> str:
    return "never" if math.isinf(value[0]) else f"{value[0]:{spec}} ± {value[1]:{spec}}"


def _budget(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.1f}"


def table_lines(problem: str, args: dict[str, Any], budget: int, epochs: int, slots: int, rows: list[Row]) -> list[str]:
    best_final = max(r.final[0] for r in rows)
    size = f", n_train {args['n_train']}" if "n_train" in args else ""
    lines = [
        f"### {problem}{size}: budget {budget} model-epochs, {epochs} epochs per model, {slots} Ray slot(s)",
        "",
        f"best final mean HV of any method: {best_final:.4f}; targets {TARGETS[0]:g} × = {TARGETS[0] * best_final:.4f}"
        f" and {TARGETS[1]:g} × = {TARGETS[1] * best_final:.4f}. Model-epochs to a target: on the mean curve, "
        "then per seed mean ± std (n: seeds that never reach it within the budget).",
        "",
        "| method | family | seeds | final HV at budget | to 95 %: mean curve | per seed | to 98 %: mean curve | "
        "per seed | wall s (slots) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r.final[0]):
        cells = []
        for fraction in TARGETS:
            on_mean, stats, never = to_target(r, fraction * best_final)
            seed_text = _pm(stats, ".1f") + (f" (never on {never})" if never else "")
            cells += [_budget(on_mean), seed_text]
        lines.append(
            f"| {r.method} | {r.family} | {r.seeds} | {_pm(r.final, '.4f')} | {' | '.join(cells)} | "
            f"{r.wall[0]:.0f} ({r.slots}) |"
        )
    notes = [f"- {r.method}: {n}" for r in rows for n in r.notes]
    if notes:
        lines += ["", *notes]
    head = headline(rows)
    if head is not None:
        by = {r.method: r for r in rows}
        peer = by[head.peer]
        lines += [
            "",
            f"Best peer: **{head.peer}**, final HV {_pm(peer.final, '.4f')}, its mean curve reaches that at "
            f"{_budget(head.peer_budget)} model-epochs.",
            "",
            "| ours | model-epochs to the best peer's final HV | budget ratio | final HV vs the peer's |",
            "|---|---|---|---|",
        ]
        for name, (mine, ratio) in sorted(head.ratios.items(), key=lambda kv: kv[1][1]):
            noise = "beyond" if beyond_spread(by[name].final, peer.final) else "within"
            sign = "higher" if by[name].final[0] > peer.final[0] else "lower"
            lines.append(
                f"| {name} | {_budget(mine)} | **{ratio_text(ratio)}** | {sign}: {_pm(by[name].final, '.4f')} "
                f"({noise} the seed spread) |"
            )
    return [*lines, ""]


def reviewer_lines(
    problem: Any, records: dict[str, list[dict[str, Any]]], rows: list[Row], headline_name: str
) -> list[str]:
    """Per method: HV at a reference near the fronts, HV of the validation front's models on test, and against the
    best peer the per-seed budget ratios and the paired bootstrap interval of the final-HV difference; then how far
    apart the front's ends lie. The goal line for the headline method closes it."""
    names = _objective_names(problem)
    directions = [problem.metric(n).direction for n in names]
    reference = list(problem.default_reference_point)
    fronts = {m: {r["seed"]: peer_stats.front_of(r["events"], directions) for r in rs} for m, rs in records.items()}
    near = peer_stats.near_reference(
        [f for by_seed in fronts.values() for f in by_seed.values()], directions, bound=reference
    )
    head = headline(rows)
    by = {r.method: r for r in rows}
    peer = by[head.peer] if head is not None else None
    peer_final = {s: c[-1] for s, c in peer.per_seed.items()} if peer is not None else {}
    lines = [
        f"Reference near the fronts (each objective's worst final front point of any run, among the points inside the "
        "fixed reference): "
        f"({', '.join(f'{v:.4g}' for v in near)}); the fixed reference: ({', '.join(f'{v:.4g}' for v in reference)}). "
        "Test HV: the models on each run's final validation front, on the test split (never used to select). "
        f"Against the best peer ({head.peer if head else '–'}): per-seed model-epochs ratio to its final HV on that "
        "seed, median (range); the final-HV difference, mean [paired bootstrap 95 % interval] over the seeds.",
        "",
        "| method | val HV (fixed ref) | val HV (near ref) | test HV | per-seed ratio | HV − best peer [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -r.final[0]):
        near_hv = mean_std([peer_stats.hv_at(f, directions, near) for f in fronts[row.method].values()])
        tests = [peer_stats.hv_on_test(r["events"], directions, reference) for r in records[row.method]]
        test_text = _pm(mean_std(tests), ".4f") if all(math.isfinite(t) for t in tests) else "not recorded"
        ratio_cell = diff_cell = "–"
        if peer is not None and row.method != peer.method:
            ratio_cell = peer_stats.seed_ratios(row.per_seed, peer.per_seed, budget_to_reach).text()
            mean, lo, hi = peer_stats.paired_bootstrap({s: c[-1] for s, c in row.per_seed.items()}, peer_final)
            diff_cell = f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        lines.append(
            f"| {row.method} | {_pm(row.final, '.4f')} | {_pm(near_hv, '.4f')} | {test_text} | {ratio_cell} | "
            f"{diff_cell} |"
        )
    ends = peer_stats.front_ends([f for by_seed in fronts.values() for f in by_seed.values()], directions)
    lines += ["", "The front's ends (best point for each objective among all runs' final fronts):"]
    for name, end in zip(names, ends, strict=True):
        lines.append(f"- best {name}: ({', '.join(f'{n} {v:.4g}' for n, v in zip(names, end, strict=True))})")
    if peer is not None and headline_name in by:
        mine = by[headline_name]
        ratios = peer_stats.seed_ratios(mine.per_seed, peer.per_seed, budget_to_reach)
        mean, lo, hi = peer_stats.paired_bootstrap({s: c[-1] for s, c in mine.per_seed.items()}, peer_final)
        met = ratios.median <= 0.5 and lo > 0
        lines += [
            "",
            f"Goal ({headline_name} reaches {peer.method}'s final HV in <= 0.5x its model-epochs by the per-seed "
            f"median, the interval of the HV difference above 0): per-seed ratio {ratios.text()}, difference "
            f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]: **{'met' if met else 'not met'}**.",
        ]
    return [*lines, ""]


# -- plots and MLflow -----------------------------------------------------------------------------------------


def plot(problem: str, args: dict[str, Any], budget: int, slots: int, rows: list[Row], out: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5.5))
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    best_final = max(r.final[0] for r in rows)
    for i, r in enumerate(sorted(rows, key=lambda r: (r.family, r.method))):
        x = list(range(budget + 1))
        style = "-" if r.family == "ours" else "--"
        ax.plot(x, r.curve_mean, style, color=colors(i % 10), linewidth=1.5, label=f"{r.method} ({r.seeds} seeds)")
        low = [m - s for m, s in zip(r.curve_mean, r.curve_std, strict=True)]
        high = [m + s for m, s in zip(r.curve_mean, r.curve_std, strict=True)]
        ax.fill_between(x, low, high, color=colors(i % 10), alpha=0.12)
    for fraction in TARGETS:
        ax.axhline(fraction * best_final, color="black", linewidth=0.7, linestyle=":")
    ax.set_ylim(min(r.final[0] for r in rows) * 0.8, best_final * 1.02)  # the part where targets are crossed
    ax.set_xlabel("cumulative model-epochs (one member, one epoch)")
    ax.set_ylabel("HV of the cumulative front (mean ± std over seeds)")
    size = f", n_train {args['n_train']}" if "n_train" in args else ""
    ax.set_title(
        f"{problem}{size}, {slots} slot{'s' if slots > 1 else ''}: ours (solid) vs peers (dashed); "
        "dotted: 95 % / 98 % of the best final HV",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(left=0.08, right=0.76)
    path = out / f"{problem}_{args.get('n_train', 'syn')}_b{budget}_s{slots}_hv.png"
    fig.savefig(path, dpi=110)
    return path


def log_to_mlflow(uri: str, command: str, metrics: dict[str, float], files: list[Path]) -> None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("vs-peers")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("vs-peers")
    run = client.create_run(experiment_id, run_name="vs-peers " + time.strftime("%Y-%m-%d %H:%M"))
    client.log_param(run.info.run_id, "command", command[:500])
    for name, value in metrics.items():
        if math.isfinite(value):
            client.log_metric(run.info.run_id, name, value)
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)


# -- main -----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--problems", default=None, help=f"comma-separated: {', '.join(PROBLEMS)} (default multi_mnist)"
    )
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated; --list shows them")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2)")
    parser.add_argument("--budget", type=int, default=None, help="model-epochs per method (default 10 x --epochs)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per model")
    parser.add_argument("--n-train", type=int, default=6000, help="training size of the Multi-* and related3")
    parser.add_argument("--lr-range", default=None, help="lo,hi (default: per problem, see PROBLEMS)")
    parser.add_argument(
        "--slots",
        type=int,
        default=1,  # every method on one slot, as on one GPU: equal resources (Optuna's loop runs one model at a time)
        help="Ray CPUs, 1 per trial: how many of the Ray-based methods' trials run side by side",
    )
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 2), help="pool for the peers")
    parser.add_argument("--libmoon-python", default=DEFAULT_LIBMOON_PYTHON)
    parser.add_argument(
        "--headline",
        default="mt2o-k3-fill-fifo",
        help="which of ours the last line reports (default: `method: mt2o` as the preset ships, lr given as a probe)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vs_peers")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: sqlite in --out)")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--no-cache", action="store_true", help="compute everything again (the cache is rewritten)")
    parser.add_argument("--quick", action="store_true", help="zdt1, 3 seeds, all methods: the ratio line in < 3 min")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="run the pool's peers beside the Ray-based methods (faster; wall times then share the cores)",
    )
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default=None,
        help="heldout: the problems, seeds 10-14, methods and lr range no default was chosen on, the default's "
        "digest frozen (results in <out>/heldout); in-sample: where the defaults were chosen",
    )
    args = parser.parse_args(argv)
    args.strict_digest = False
    if args.protocol is not None:
        protocol = PROTOCOLS[args.protocol]
        args.problems = args.problems or ",".join(protocol.problems)
        args.seeds = args.seeds or ",".join(str(s) for s in protocol.seeds)
        if protocol.methods and args.methods == ",".join(DEFAULT_METHODS):
            args.methods = ",".join(protocol.methods)
        if protocol.lr is not None and args.lr_range is None:
            args.lr_range = ",".join(str(v) for v in protocol.lr)
        if args.protocol == "heldout":
            args.out, args.strict_digest = args.out / "heldout", True
            args.headline = "mt2o-default" if args.headline == parser.get_default("headline") else args.headline
            in_sample_seeds = [s for s in args.seeds.split(",") if s.strip() and int(s) < min(protocol.seeds)]
            in_sample = [p for p in args.problems.split(",") if p.strip() in IN_SAMPLE_PROBLEMS]
            if in_sample_seeds or in_sample:
                parser.error(
                    f"--protocol heldout: {', '.join(in_sample + [f'seed {s}' for s in in_sample_seeds])} "
                    f"chose defaults (in sample); allowed: seeds >= {min(protocol.seeds)} and problems outside "
                    f"{', '.join(IN_SAMPLE_PROBLEMS)}"
                )
    args.problems, args.seeds = args.problems or "multi_mnist", args.seeds or "0,1,2"
    if args.quick:
        args.problems, args.seeds, args.no_cache, args.overlap = "zdt1", "0,1,2", True, True
        # Each Ray-based run costs ~8 s of search set-up here whatever it trains: the quick check keeps the headline
        # (the preset as it ships, lr probed), the preset before its levers (mt2o-fifo: corners, lr drawn) and the
        # peers; LibMOON's PMTL (the weaker of its two on zdt1) stays out.
        args.methods = "optuna-tpe,optuna-nsga2,tune-asha,libmoon-epo,mt2o-fifo,mt2o-k3-fill-fifo"
        args.out = args.out / "quick"
    if args.budget is None:
        args.budget = 10 * args.epochs  # the issue's example: 10 models of 5 epochs
    return args


def setup_libmoon_venv(python: str) -> str:
    """Why LibMOON is or is not available, in one line ('' when it is). The venv is made by hand, once:

    python3 -m venv /tmp/libmoon-venv
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/libmoon-venv/lib/python3.11/site-packages/main.pth
    /tmp/libmoon-venv/bin/pip install --no-deps libmoon==0.1.11 && /tmp/libmoon-venv/bin/pip install cvxopt
    """
    if not Path(python).exists():
        return f"no LibMOON venv at {python} (see setup_libmoon_venv in benchmarks/vs_peers.py)"
    probe = "import libmoon.solver.gradient.core_solver, libmoon.solver.gradient.pmtl"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return "importing LibMOON took over 120 s"
    if done.returncode != 0:
        return f"LibMOON does not import: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    return ""


def start_ray(slots: int, attempts: int = 3) -> None:
    """One local Ray for every Ray-based run of this process. On a loaded machine its GCS can miss Ray's start-up
    deadline (seen here while a test suite ran beside it): try again, a bounded number of times."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                num_cpus=slots,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks")])}},
            )
            return
        except Exception as exc:
            ray.shutdown()
            if attempt == attempts:
                raise
            print(f"Ray did not start ({str(exc).splitlines()[0][:120]}); attempt {attempt + 1} of {attempts}")


def plan_jobs(
    args: argparse.Namespace,
    problem_name: str,
    num_tasks: int,
    libmoon_missing: str,
    refused: list[str] | None = None,
) -> list[dict]:
    """The runs to make; a run that cannot be made (LibMOON's PSL off its image problems or without its venv) is
    left out and its one-line reason appended to ``refused``."""
    setup = PROBLEMS[problem_name]
    lr = tuple(float(v) for v in args.lr_range.split(",")) if args.lr_range else setup.lr
    jobs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
            method = METHODS[name]
            job = {
                "problem": problem_name,
                "n_train": args.n_train if setup.sized else 0,
                "method": name,
                "seed": seed,
                "budget": args.budget,
                "epochs": args.epochs,
                "lr": list(lr),
                "k": preset_size() if method.preset else (method.size or population_size(num_tasks)),
                "expert": method.expert,
                "lr_probe": method.lr_probe,
                "runner": method.runner,
                "sampler": method.sampler,
                "solver": method.solver,
                "slots": args.slots,
                "libmoon_python": args.libmoon_python,
                "digest": args.digest,  # the default's frozen digest and the commit, kept with the record
                "commit": args.commit,
                "protocol": args.protocol or "",
            }
            if method.runner == "libmoon" and method.solver == "psl":  # no stand-in: ours is another method (psl)
                why = libmoon_psl_refusal(problem_name)
                why = why or (f"libmoon-psl refused: {libmoon_missing}" if libmoon_missing else "")
                if why:
                    if refused is not None and why not in refused:
                        refused.append(why)
                    continue
            # Where LibMOON cannot run this, our solver of the same name stands in (and the record says why).
            if method.runner == "libmoon" and (libmoon_missing or (method.solver == "pmtl" and num_tasks != 2)):
                why = libmoon_missing or "LibMOON's PMTL code handles 2 objectives only"
                job.update(runner="trainer", note=f"our {method.solver} stands in for LibMOON: {why}")
            jobs.append(job)
    return jobs


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--libmoon-job":  # inside the LibMOON venv
        job = json.loads(sys.argv[2])
        worker = libmoon_psl_worker if job.get("solver") == "psl" else libmoon_worker
        print(json.dumps(worker(job)), flush=True)
        return 0
    args = parse_args(argv)
    if args.list:
        for m in METHODS.values():
            print(f"{m.name:<25} {m.family:<5} {m.what}")
        return 0
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = [p for p in problems if p not in PROBLEMS] + [
        m for m in args.methods.split(",") if m.strip() and m.strip() not in METHODS
    ]
    if unknown:
        print(f"unknown problem or method {unknown}; --list shows the methods; problems: {', '.join(PROBLEMS)}")
        return 2
    if args.headline not in METHODS or METHODS[args.headline].family != "ours":
        print(f"--headline must be one of ours: {', '.join(m for m in METHODS if METHODS[m].family == 'ours')}")
        return 2
    started = time.perf_counter()
    args.digest = peer_stats.defaults_digest(default_entry([0.0, 0.0]))  # the shape of the entry, not its range
    args.commit = peer_stats.commit_of(REPO)
    print(f"default's digest {args.digest} at commit {args.commit}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "runs.jsonl"
    if args.no_cache and cache_path.exists():
        cache_path.unlink()
    cache = load_cache(cache_path)
    tracking_uri = args.tracking_uri or f"sqlite:///{args.out.resolve() / 'mlflow.db'}"
    libmoon_missing = setup_libmoon_venv(args.libmoon_python)
    print(f"LibMOON: {libmoon_missing or 'available at ' + args.libmoon_python}", flush=True)

    from trials.problems import make_problem

    built = {p: make_problem(p, PROBLEMS[p].args(args.n_train)) for p in problems}
    refused: list[str] = []
    all_jobs = {p: plan_jobs(args, p, built[p].num_tasks, libmoon_missing, refused) for p in problems}
    for line in refused:
        print(line, flush=True)
    todo = sum(_key(j) not in cache for jobs in all_jobs.values() for j in jobs)
    total = sum(len(j) for j in all_jobs.values())
    print(f"{total} runs, {total - todo} cached, {todo} to do", flush=True)

    ray_started = False
    with tempfile.TemporaryDirectory(prefix="vs-peers-") as folder, cache_path.open("a") as sink:
        storage = Path(folder)

        def keep(record: dict[str, Any], problem: Any) -> None:
            names = _objective_names(problem)
            if record["error"] is None:
                record["cum"] = [e["cum"] for e in record["events"]]
                directions = [problem.metric(n).direction for n in names]
                record["hv"] = replay_hv(record["events"], directions, problem.default_reference_point)
                cache[_key(record)] = record
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            status = record["error"] or f"HV {record['hv'][-1] if record['hv'] else 0:.4f} at {record['cum'][-1]} m-e"
            check = f", service HV {record['service_hv']:.4f}" if "service_hv" in record else ""
            print(
                f"[{time.perf_counter() - started:6.0f} s] {record['problem']} {record['method']} seed "
                f"{record['seed']}: {status}{check} ({record['wall_s']:.0f} s)",
                flush=True,
            )

        for problem_name in problems:
            problem = built[problem_name]
            jobs = [j for j in all_jobs[problem_name] if _key(j) not in cache]
            pool_jobs = [j for j in jobs if j["runner"] in POOL_RUNNERS]
            if not ray_started and any(j["runner"] in ("service", "tune-asha") for j in jobs):
                start_ray(args.slots)  # first: its start-up (~10-20 s) overlaps the pool's
                ray_started = True
            pool = futures.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
            pending = [pool.submit(run_pool_job, job) for job in pool_jobs]
            if not args.overlap:  # the peers first, alone on the cores; then the Ray-based methods
                for done in futures.as_completed(pending):
                    keep(done.result(), problem)
                pending = []
            for job in (j for j in jobs if j["runner"] in ("service", "tune-asha")):
                for done in [f for f in pending if f.done()]:  # --overlap: keep finished peers now, not at the end
                    keep(done.result(), problem)
                    pending.remove(done)
                begin = time.perf_counter()
                try:
                    with quiet_tune():
                        if job["runner"] == "service":
                            record = run_service(job, storage, tracking_uri, args.out / "searches.log")
                        else:
                            record = run_tune_asha(job, storage, problem)
                except Exception as exc:
                    record = {**job, "events": [], "slots": args.slots, "error": f"{type(exc).__name__}: {exc}"[:400]}
                record["wall_s"] = time.perf_counter() - begin
                keep(record, problem)
            for done in futures.as_completed(pending):  # --overlap: the peers ran beside the Ray-based methods
                keep(done.result(), problem)
            pool.shutdown()
        if ray_started:
            import ray

            ray.shutdown()

    lines = [f"## pareto_search vs peers ({time.strftime('%Y-%m-%d')})", "", f"command: `{' '.join(sys.argv)}`", ""]
    if libmoon_missing:
        lines += [f"LibMOON did not run: {libmoon_missing}; our EPO/PMTL stood in.", ""]
    lines += [f"{line}." for line in refused] + ([""] if refused else [])
    files: list[Path] = []
    metrics: dict[str, float] = {}
    last: tuple[float, str, str] | None = None
    for problem_name in problems:
        problem = built[problem_name]
        records: dict[str, list[dict[str, Any]]] = {}
        directions = [problem.metric(n).direction for n in _objective_names(problem)]
        for job in all_jobs[problem_name]:
            if _key(job) in cache:
                record = cache[_key(job)]
                # Replayed from the events every time: the curve follows the current front semantics (every model's
                # non-dominated epochs), whatever the record was written with.
                record["hv"] = replay_hv(record["events"], directions, problem.default_reference_point)
                records.setdefault(job["method"], []).append(record)
        if not records:
            continue
        ours_records = [r for rs in records.values() for r in rs if METHODS[r["method"]].family == "ours"]
        refusal = peer_stats.check_digests(ours_records, args.digest, args.strict_digest)
        if refusal:
            print(f"vs_peers: {problem_name}: {refusal}", file=sys.stderr)
            return 2
        rows = summarize(records, args.budget)
        problem_args = PROBLEMS[problem_name].args(args.n_train)
        lines += table_lines(problem_name, problem_args, args.budget, args.epochs, args.slots, rows)
        lines += reviewer_lines(problem, records, rows, args.headline)
        files.append(plot(problem_name, problem_args, args.budget, args.slots, rows, args.out))
        head = headline(rows)
        if head is not None:
            for name, (_, ratio) in head.ratios.items():
                metrics[f"{problem_name}.{name}.budget_ratio"] = ratio
            if args.headline in head.ratios:
                last = (head.ratios[args.headline][1], head.peer, problem_name)
    # Named by its problems too: one budget serves several problems, and each run must not overwrite another's.
    summary = args.out / f"summary-{'+'.join(problems)}-b{args.budget}-e{args.epochs}-s{args.slots}.md"
    summary.write_text("\n".join(lines))
    files.append(summary)
    print("\n".join(lines))
    if not args.no_mlflow:
        log_to_mlflow(tracking_uri, " ".join(sys.argv), metrics, files)
    print(f"written: {', '.join(str(f) for f in files)}; {time.perf_counter() - started:.0f} s")
    if last is not None:
        print(ratio_line(*last), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
