"""One run of one method (a job: problem, method, seed, budget, ...): its cache key, the plan of the runs to
make, and what every runner shares (the job's problem, its learning-rate draws, its record)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .budget import BudgetCounter
from .methods import METHODS, PROBLEMS, libmoon_psl_refusal, population_size, preset_size

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
                # the default's frozen digest (with a budget: its own) and the commit, kept with the record
                "digest": args.budget_digest if method.budget else args.digest,
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
