"""A finished Pareto set learning trial (method: psl) on disk and in MLflow, made without Ray: its points
stored as a search stores them (one file for the trial, ``weights/conditioned.pt``: the state dict of
trials.psl.conditioning.AtPreference, which every point names; each point's preference is in its data), or, with
``shared=False``, as searches stored them before (a file per point, each the model at that point's preference),
for select and serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pareto_search.config import parse_config
from pareto_search.front.global_front import GlobalFront
from pareto_search.plan import make_plan
from pareto_search.testing.stored_search import StoredSearch
from pareto_search.tracking.client import SearchTracker
from trials.problems import make_problem
from trials.psl.conditioning import AtPreference, Conditioned, make_conditioned
from trials.psl.sampling import evaluation_preferences


def stored_psl_search(
    root: Path,
    *,
    name: str,
    problem: str,
    problem_args: dict[str, Any],
    reference_point: tuple[float, float],
    points: int = 5,
    conditioning: str = "hyper",
    hidden: int = 16,
    spread: float = 0.5,
    shared: bool = True,
) -> tuple[StoredSearch, Conditioned]:
    """One PSL trial, trial_00000, with `points` points (preferences (1, 0) ... (0, 1)) on a line of the
    objectives (all non-dominated; a minimized objective is lower where its task weighs more). The conditioned
    model's last layer is drawn with std `spread`: a trained model's dependence on the preference, which a
    fresh one (about 0) lacks."""
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    experiment = f"{name}-tests"
    config = parse_config(
        {
            "name": name,
            "problem": {"name": problem, "args": problem_args},
            "reference_point": list(reference_point),
            "solvers": [{"method": "psl", "solver": "linear"}],
            "storage": str(root / "searches"),
            "tracking": {"uri": tracking_uri, "experiment": experiment},
        }
    )
    plan = make_plan(config)
    tracker = SearchTracker(tracking_uri, experiment, artifact_location=str(root / "artifacts"))
    parent = tracker.start_search(name, config.model_dump(mode="json"))
    plan.save(parent)
    made = make_problem(problem, problem_args)
    torch.manual_seed(0)
    conditioned = make_conditioned(conditioning, made.make_model(), 2, 4, hidden, made.example_inputs(2))
    with torch.no_grad():
        generator = conditioned.generator
        assert isinstance(generator, torch.nn.Sequential), generator  # every built-in conditioning has one
        last = generator[-1]
        assert isinstance(last, torch.nn.Linear), last  # the generator ends in its output layer
        last.weight.normal_(std=spread)
    conditioned.eval()
    run_id = tracker.start_trial(parent, "trial_00000", {"seed": 0})
    maximized = [o.direction == "max" for o in plan.objectives]
    members = []
    preferences = evaluation_preferences(2, points).tolist()
    for k, preference in enumerate(preferences):
        name = "conditioned.pt" if shared else f"member_{k}.pt"  # search/trainable.py: CONDITIONED_FILE
        path = root / "weights" / name
        if not path.is_file():  # shared: one file, the model at the first preference (as a checkpoint stores it)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(AtPreference(conditioned, preference).state_dict(), path)
            tracker.log_artifact_file(run_id, path, "weights")
        values = tuple(0.1 + p if up else 1.1 - p for p, up in zip(preference, maximized, strict=True))
        members.append(
            {
                "member": k,
                "values": values,
                "solver": "psl",
                "preference": preference,
                "model_uri": f"runs:/{run_id}/weights/{name}",
            }
        )
    GlobalFront(name, plan.objectives, plan.reference_point, plan.front_path).update("trial_00000", members)
    tracker.end_run(run_id, "FINISHED")
    tracker.end_run(parent, "FINISHED")
    return StoredSearch(plan, root / "searches", tracking_uri, parent), conditioned
