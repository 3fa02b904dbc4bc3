"""The Ray-based methods, run in this process on one local Ray: Ray Tune ASHA as its users write it, and ours
through the real service (its only addition: the budget stopper in its RunConfig)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import REPO
from .budget import PLATEAU_EPOCHS, BudgetCounter, budget_stopper
from .methods import METHODS, PROBLEMS, Method
from .runs import _objective_names, _record

SEED_RANGE = 2**31 - 1


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
    trials_budget = job["budget"] - probe_cost(method)
    if method.split is not None:  # the budget spent on `split` populations: longer-trained models
        epochs = max(1, trials_budget // (method.split * k))
    per_trial = k * (epochs if method.scheduler == "fifo" else 1)  # Pareto-ASHA: a trial may stop after 1 epoch
    if method.plateau is not None:  # any trial may take the whole budget; one stops after PLATEAU_EPOCHS + 1 at least
        epochs = max(1, trials_budget // k)
        per_trial = k * (PLATEAU_EPOCHS + 1)
    search: dict[str, Any] = {
        "algorithm": "random",
        # A split's populations exactly (the rounding down of its epochs leaves no room for one more)
        "num_samples": method.split or max(1, math.ceil(trials_budget / per_trial)),
        "scheduler": {"name": method.scheduler},
        **({"max_concurrent_trials": method.concurrent} if method.concurrent else {}),
    }
    if method.budget:  # the service spends the budget itself: nothing but the budget is given
        search = {"algorithm": "random", "budget_model_epochs": job["budget"], "scheduler": {"name": method.scheduler}}
    return {
        "name": f"vs-{job['problem']}-{method.name}-s{job['seed']}-{uuid.uuid4().hex[:6]}",
        "problem": {"name": job["problem"], "args": PROBLEMS[job["problem"]].args(job["n_train"])},
        **({} if method.budget else {"epochs": epochs}),
        "seed": job["seed"],
        "solvers": [entry],
        "search": search,
        "resources": {"cpus_per_trial": 1},
        "storage": str(storage),
        "tracking": {"uri": tracking_uri, "experiment": "vs-peers-searches"},
    }


def probe_cost(method: Method) -> int:
    """Model-epochs a learning-rate probe trains: one model per candidate for PROBE_EPOCHS epochs."""
    from pareto_search.config import PROBE_CANDIDATES, PROBE_EPOCHS

    return PROBE_CANDIDATES * PROBE_EPOCHS if method.lr_probe else 0


def run_service(job: dict[str, Any], storage: Path, tracking_uri: str, log: Path) -> dict[str, Any]:
    """Ours through the real service; the only addition is the budget stopper in its RunConfig."""
    from unittest import mock

    from ray import tune
    from ray.tune.stopper import CombinedStopper

    from pareto_search.config import parse_config
    from pareto_search.plan import make_plan
    from pareto_search.search.runner import run_search

    method = METHODS[job["method"]]
    plan = make_plan(parse_config(service_config(job, method, storage, tracking_uri)))
    counter = BudgetCounter(job["budget"])
    counter.charge(probe_cost(method))  # the probe runs first, inside run_search, and adds no point
    stopper = budget_stopper(counter, method.plateau)

    # A subclass, not a function: Tune checks `isinstance(..., RunConfig)` while the patch is active.
    class RunConfigWithBudget(tune.RunConfig):  # type: ignore[misc,valid-type]
        def __post_init__(self) -> None:
            # The service's own stopper (a search with a budget of its own) stays. The counting stopper goes first:
            # CombinedStopper asks its stoppers in turn and stops asking at the first that stops the trial, and
            # every result must be counted.
            self.stop = stopper if self.stop is None else CombinedStopper(stopper, self.stop)
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
