"""A finished search on disk and in MLflow, made without Ray: what `select` and serving read.

Each point gets its own trial run with real weights of the plug-in problem's network (different
initializations, so members answer differently), stored exactly where a search stores them
(`weights/member_k.pt` on the trial's run, `model_uri` on the front point).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pareto_search.config import parse_config
from pareto_search.front.global_front import GlobalFront
from pareto_search.plan import SearchPlan, make_plan
from pareto_search.serving.network import NetworkSpec
from pareto_search.tracking.client import SearchTracker
from trials.problems import make_problem

PLUGIN = "examples.plugin_problem:make"
PLUGIN_ARGS = {"n_train": 256, "n_val": 64, "n_test": 64, "dim": 8, "hidden": 16}


@dataclass(frozen=True)
class StoredSearch:
    plan: SearchPlan
    storage: Path
    tracking_uri: str
    parent_run_id: str


def stored_search(
    root: Path,
    values: list[tuple[float, float]],
    *,
    name: str = "served",
    problem: str = PLUGIN,
    problem_args: dict[str, Any] | None = None,
    reference_point: tuple[float, float] = (2.0, 2.0),
    members_per_trial: int = 1,
) -> StoredSearch:
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    config = parse_config(
        {
            "name": name,
            "problem": {"name": problem, "args": PLUGIN_ARGS if problem_args is None else problem_args},
            "reference_point": list(reference_point),
            "solvers": [{"solver": "linear"}],
            "storage": str(root / "searches"),
            "tracking": {"uri": tracking_uri, "experiment": "serving-tests"},
        }
    )
    plan = make_plan(config)
    tracker = SearchTracker(tracking_uri, "serving-tests", artifact_location=str(root / "artifacts"))
    parent = tracker.start_search(name, config.model_dump(mode="json"))
    plan.save(parent)
    front = GlobalFront(name, plan.objectives, plan.reference_point, plan.front_path)
    problem_obj = make_problem(problem, config.problem.args)
    for start in range(0, len(values), members_per_trial):
        trial = f"trial_{start // members_per_trial:05d}"
        run_id = tracker.start_trial(parent, trial, {"seed": start})
        members = []
        for k, row in enumerate(values[start : start + members_per_trial]):
            torch.manual_seed(1000 + start + k)
            weights = problem_obj.make_model().state_dict()
            path = root / "weights" / trial / f"member_{k}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(weights, path)
            tracker.log_artifact_file(run_id, path, "weights")
            members.append(
                {
                    "member": k,
                    "values": row,
                    "solver": "linear",
                    "preference": [0.5, 0.5],
                    "model_uri": f"runs:/{run_id}/weights/member_{k}.pt",
                }
            )
        front.update(trial, members)
        tracker.end_run(run_id, "FINISHED")
    tracker.end_run(parent, "FINISHED")
    return StoredSearch(plan, root / "searches", tracking_uri, parent)


def expected_predictions(search: StoredSearch, point: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """What a plug-in member's own network predicts, built here from its stored weights file."""
    args = search.plan.config.problem.args
    problem = make_problem(PLUGIN, args)
    trial, member = point.split("/")
    weights = search.storage.parent / "weights" / trial / f"member_{member}.pt"
    model = NetworkSpec.of(problem, PLUGIN, args).load(weights)
    with torch.no_grad():
        outputs = model(torch.as_tensor(inputs))
    return {t: o.numpy() for t, o in zip(problem.task_names, outputs, strict=True)}
