"""The methods that train one model (or one population) at a time, in the process pool: Optuna's loops, the
single model, `method: psl`, our EPO/PMTL stand-ins, and the dispatch to LibMOON's venv."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

from .budget import BudgetCounter
from .libmoon import run_libmoon
from .methods import PROBLEMS, SINGLE_MODEL_LR
from .runs import _objective_names, _problem, _record, _sample_lr

RAY_WORKER_NICENESS = 15  # what Ray gives its workers (and so the service's trials)


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
    from pareto_search.front.pareto import Objective
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
