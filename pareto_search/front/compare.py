"""Compare the global fronts of several searches on a common reference point.

Reports each front's HV (same reference point for all: fronts stay comparable only then),
its point count, and Zitzler's coverage C(A, B) for every ordered pair; logs an overlay plot
and the numbers to an MLflow run tagged ``pareto_search.kind=compare``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pareto_search.errors import ConfigError
from pareto_search.front.global_front import GlobalFront, kept_epoch
from pareto_search.front.pareto import coverage


def _common_reference(fronts: Mapping[str, GlobalFront], given: Sequence[float] | None) -> tuple[float, ...]:
    first_name, first = next(iter(fronts.items()))
    for name, front in fronts.items():
        if front.objectives != first.objectives:
            raise ConfigError(
                f"search '{name}' has objectives {[o.name + ' ' + o.direction for o in front.objectives]}, "
                f"search '{first_name}' {[o.name + ' ' + o.direction for o in first.objectives]}: "
                "only fronts of the same objectives can be compared"
            )
    if given is not None:
        if len(given) != len(first.objectives):
            raise ConfigError(
                f"`--reference-point` needs {len(first.objectives)} values (one per objective), found {list(given)}"
            )
        return tuple(given)
    references = {front.reference_point for front in fronts.values()}
    if len(references) > 1:
        raise ConfigError(
            f"the searches use different reference points {sorted(references)}; pass --reference-point to compare"
        )
    return references.pop()


def compare_data(fronts: Mapping[str, GlobalFront], reference_point: Sequence[float] | None) -> dict[str, Any]:
    if len(fronts) < 1:
        raise ConfigError("`compare` needs at least one search name")
    ref = _common_reference(fronts, reference_point)
    nondominated = {name: front.front() for name, front in fronts.items()}
    rows = {
        name: {
            "hypervolume": front.hypervolume(ref).value,
            "front_points": len(front),
            "evaluated_points": sum(kept_epoch(pid) is None for pid in fronts[name].points),  # models, not epochs
        }
        for name, front in nondominated.items()
    }
    pairs = {
        f"C({a},{b})": coverage(nondominated[a], nondominated[b]) for a in nondominated for b in nondominated if a != b
    }
    return {"reference_point": list(ref), "searches": rows, "coverage": pairs}


def format_report(data: Mapping[str, Any]) -> str:
    width = max(len(name) for name in data["searches"])
    lines = [
        f"reference point {data['reference_point']}",
        f"{'search'.ljust(width)}  hypervolume  front points  evaluated",
    ]
    for name, row in data["searches"].items():
        lines.append(
            f"{name.ljust(width)}  {row['hypervolume']:11.6f}  {row['front_points']:12d}  {row['evaluated_points']:9d}"
        )
    for pair, value in data["coverage"].items():
        lines.append(f"{pair} = {value:.3f}  (share of the second front weakly dominated by the first)")
    return "\n".join(lines)


def log_comparison(
    fronts: Mapping[str, GlobalFront], data: Mapping[str, Any], tracking_uri: str | None, experiment: str
) -> str:
    from pareto_search.front import plots
    from pareto_search.tracking.client import SearchTracker

    tracker = SearchTracker(tracking_uri, experiment)
    run_id = tracker.start_comparison(list(fronts))
    tracker.log_json(run_id, dict(data), "comparison.json")
    with tempfile.TemporaryDirectory() as folder:
        first = next(iter(fronts.values()))
        objectives = [(o.name, o.direction) for o in first.objectives]
        overlay = {name: (objectives, [list(p.values) for p in f.front().points]) for name, f in fronts.items()}
        path = plots.overlay_png(overlay, Path(folder) / "overlay.png", reference_point=data["reference_point"])
        tracker.log_artifact_file(run_id, path)
    tracker.log_metrics(run_id, {f"hv/{n}": r["hypervolume"] for n, r in data["searches"].items()}, step=0)
    tracker.end_run(run_id, "FINISHED")
    return run_id


def compare_fronts(
    fronts: Mapping[str, GlobalFront],
    reference_point: Sequence[float] | None,
    *,
    log_to_mlflow: bool,
    tracking_uri: str | None = None,
    experiment: str = "pareto_search",
) -> str:
    data = compare_data(fronts, reference_point)
    report = format_report(data)
    if log_to_mlflow:
        run_id = log_comparison(fronts, data, tracking_uri, experiment)
        report += f"\noverlay plot and numbers logged to MLflow run {run_id}"
    return report
