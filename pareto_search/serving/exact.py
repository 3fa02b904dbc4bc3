"""`select --weights W --exact`: a Pareto set learning trial (`method: psl`) has a model for every trade-off,
not only its evaluated points. The rule's nearest point names the trial (and epoch); its conditioned model is
fixed at exactly W, as the preference over the tasks, and evaluated on the validation split before it is shown
(and registered, with --register)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from pareto_search.errors import ConfigError
from pareto_search.front.global_front import point_label
from pareto_search.front.pareto import FrontPoint
from pareto_search.front.selection.rules import Selection
from pareto_search.plan import SearchPlan


def exact_selection(
    plan: SearchPlan, selection: Selection, weights: Sequence[float], *, tracking_uri: str | None = None
) -> Selection:
    """The selection with its chosen point replaced by its trial's conditioned model at `weights`, its values
    measured on the validation split. One line (ConfigError) when the chosen point is not a PSL point.
    `tracking_uri`: the search's store as the command resolved it (locations.py; default: resolved here)."""
    from pareto_search.locations import resolve_locations
    from pareto_search.serving.conditioned import fixed_at, layout_of, load_conditioned, read_state
    from pareto_search.serving.publish import _download_weights, _problem_and_inputs
    from pareto_search.tracking.client import SearchTracker
    from trials.problems import make_problem

    chosen = selection.chosen
    label = point_label(chosen)
    network, inputs = _problem_and_inputs(plan)
    if len(plan.objectives) != len(network.task_names):
        raise ConfigError(
            f"--exact: the weights are the preference over the tasks ({', '.join(network.task_names)}), but the "
            f"search has {len(plan.objectives)} objectives; allowed: one objective per task"
        )
    if tracking_uri is None:
        tracking_uri = resolve_locations(plan).tracking_uri
    tracker = SearchTracker(tracking_uri, plan.config.tracking.experiment)
    with tempfile.TemporaryDirectory(prefix="pareto_search_exact_") as tmp:
        state = read_state(_download_weights(tracker, [chosen], Path(tmp))[chosen.id])
    layout = layout_of(network, state, inputs)
    if layout is None:
        raise ConfigError(
            f"--exact: the point nearest the weights, {label} ({chosen.data.get('solver', '')}), is a model of one "
            "trade-off, not a Pareto set learning model (method: psl); drop --exact for that stored point"
        )
    preference = [float(w) for w in weights]
    model = fixed_at(load_conditioned(network, layout, state), preference)
    problem = make_problem(plan.config.problem.name, plan.config.problem.args)
    metrics = problem.evaluate(model, "val", torch.device("cpu"))  # type: ignore[arg-type]  # predicts like one
    values = tuple(float(metrics[o.name]) for o in plan.objectives)
    exact = FrontPoint(
        f"{chosen.id}@pref=" + ",".join(f"{p:.6g}" for p in preference),
        values,
        {
            **chosen.data,
            "preference": preference,
            "exact_preference": preference,
            "test_values": None,  # measured at the stored point's preference, not at this one
        },
    )
    shown = ", ".join(f"{o.name} {v:.4f}" for o, v in zip(plan.objectives, values, strict=True))
    note = (
        f"evaluated at exactly the preference [{', '.join(f'{p:.4g}' for p in preference)}] of {label}'s "
        f"conditioned model, on the validation split: {shown}"
    )
    return dataclasses.replace(
        selection,
        chosen=exact,
        rule=f"{selection.rule}, exact: that preference of the nearest point's PSL model",
        notes=(*selection.notes, note),
    )
