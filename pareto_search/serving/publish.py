"""From a chosen front point to a registered MLflow model: what `select --register / --register-front` do.

Order matters for "nothing half-written": everything that can fail on the user's input (the problem,
the stored weights, the inputs to serve) is checked before the first write to MLflow.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pareto_search.errors import ConfigError
from pareto_search.front.global_front import GlobalFront, kept_epoch
from pareto_search.front.pareto import FrontPoint
from pareto_search.front.selection import Selection, point_label
from pareto_search.locations import resolve_locations
from pareto_search.plan import SearchPlan
from pareto_search.serving.conditioned import layout_of, read_state
from pareto_search.serving.network import NetworkSpec
from pareto_search.serving.package import EXAMPLE_ROWS, MemberWeights, write_model
from pareto_search.serving.registry import (
    ModelRegistry,
    RegisteredVersion,
    RegistryUnavailable,
    file_digest,
    identity,
    outage_cause,
)
from pareto_search.storage import Location
from pareto_search.tracking.client import SearchTracker
from pareto_search.tracking.connection import is_outage
from pareto_search.tracking.store import ui_link
from trials.data.sources import DataUnavailableError
from trials.problems import make_problem

TAG_PREFIX = "pareto_search."


@dataclass(frozen=True)
class Publication:
    version: RegisteredVersion
    seconds: float
    tracking_uri: str
    ui_link: str  # the search's experiment in the MLflow UI


def _problem_and_inputs(plan: SearchPlan) -> tuple[NetworkSpec, torch.Tensor]:
    config = plan.config.problem
    try:
        problem = make_problem(config.name, config.args)
    except (ValueError, DataUnavailableError) as exc:
        raise ConfigError(f"`problem`: {str(exc).splitlines()[0]}") from None
    inputs = problem.example_inputs(EXAMPLE_ROWS)
    if inputs.numel() == 0:
        raise ConfigError(
            f"problem '{config.name}' takes no input (its model is the decision vector itself): "
            "there is nothing to serve; select works, --register needs a problem with inputs"
        )
    return NetworkSpec.of(problem, config.name, config.args), inputs


def _download_weights(tracker: SearchTracker, points: Sequence[FrontPoint], folder: Path) -> dict[str, Path]:
    """Each point's stored weights, in `folder`: `runs:/<run>/weights/member_k.pt` (a member's latest epoch,
    from its trial run) or the file in the search's storage (an earlier epoch kept on the front)."""
    files: dict[str, Path] = {}
    fetched: dict[str, Path] = {}  # uri -> its file: a PSL trial's points share one conditioned model's file
    for point in points:
        uri = str(point.data.get("model_uri") or "")
        if uri in fetched:
            files[point.id] = fetched[uri]
            continue
        if not uri:
            why = (
                "its trial never ended; resume the search first"
                if kept_epoch(point.id) is None
                else "that epoch was not checkpointed (search.checkpoint_every > 1 stores weights every N epochs)"
            )
            raise ConfigError(f"point {point_label(point)} has no stored weights: {why}")
        try:
            if uri.startswith("runs:/"):
                run_id, _, path = uri.removeprefix("runs:/").partition("/")
                if not run_id or not path:
                    raise ValueError(f"not a run artifact URI: {uri!r}")
                files[point.id] = tracker.download_artifact(run_id, path, folder / point.id.replace("/", "_"))
            else:  # an epoch kept on the front: its file in the search's storage (fronts.py)
                target = folder / point.id.replace("/", "_") / Location(uri).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(Location(uri).read_bytes())
                files[point.id] = target
            fetched[uri] = files[point.id]
        except Exception as exc:  # MLflow and pyarrow raise several types for a missing run, artifact or file
            if is_outage(exc):  # the server, not the point: the caller says so (and that nothing was written)
                raise
            raise ConfigError(f"point {point_label(point)}: cannot read its weights {uri}: {exc}") from None
    return files


def _source_run(point: FrontPoint) -> str | None:
    """The trial run a member's model comes from: recorded when its trial ended, else its weights' run."""
    if point.data.get("run_id"):
        return str(point.data["run_id"])
    uri = str(point.data.get("model_uri") or "")
    return uri.removeprefix("runs:/").split("/")[0] if uri.startswith("runs:/") else None


def _member(point: FrontPoint, weights: Path, network: NetworkSpec, inputs: torch.Tensor) -> MemberWeights:
    # A PSL point's file is its trial's conditioned model and a preference: served as that model fixed at the
    # point's preference (an exact selection's, `select --weights ... --exact`, else the one it was evaluated at).
    layout = layout_of(network, read_state(weights), inputs)
    return MemberWeights(
        point=point_label(point),
        values=tuple(point.values),
        weights_file=weights,
        solver=str(point.data.get("solver", "")),
        preference=point.data.get("preference"),
        psl_layout=layout,
    )


def _mark_selection(tracker: SearchTracker, parent_run_id: str, front: GlobalFront, selection: Selection) -> None:
    """The parent run's front plot, redrawn with the selected point starred, and the selection itself."""
    from pareto_search.front import plots

    with tempfile.TemporaryDirectory() as folder:
        for path in plots.global_front_files(front, folder, selected=(selection.chosen.values, selection.point)):
            tracker.log_artifact_file(parent_run_id, path)
    tracker.log_json(parent_run_id, selection.to_json(), "selection.json")
    tracker.set_tags(
        parent_run_id, {f"{TAG_PREFIX}selected": selection.point, f"{TAG_PREFIX}selection_rule": selection.rule}
    )


def register(
    plan: SearchPlan,
    parent_run_id: str | None,
    front: GlobalFront,
    selection: Selection,
    *,
    model_name: str,
    alias: str | None,
    whole_front: bool,
    tracking_uri: str | None = None,
) -> Publication:
    """Register the selected member (`whole_front=False`) or every front member with the selection as the
    default (`whole_front=True`) under `model_name`, the alias pointing at it.

    Raises RegistryUnavailable, saying what was written, when the tracking server stops answering (after
    MLflow's own bounded retries); the same call again completes it (ModelRegistry.register). `tracking_uri`:
    the search's store as the command resolved it (locations.py; default: resolved here)."""
    if tracking_uri is None:
        tracking_uri = resolve_locations(plan).tracking_uri
    try:
        return _register(
            plan,
            parent_run_id,
            front,
            selection,
            model_name=model_name,
            alias=alias,
            whole_front=whole_front,
            tracking_uri=tracking_uri,
        )
    except RegistryUnavailable:
        raise
    except Exception as exc:
        if not is_outage(exc):
            raise
        raise RegistryUnavailable(f"nothing was registered ({outage_cause(exc)})") from None


def _register(
    plan: SearchPlan,
    parent_run_id: str | None,
    front: GlobalFront,
    selection: Selection,
    *,
    model_name: str,
    alias: str | None,
    whole_front: bool,
    tracking_uri: str,
) -> Publication:
    start = time.perf_counter()
    if parent_run_id is None:
        raise ConfigError(f"search '{plan.name}' has no MLflow parent run recorded: cannot register its models")
    network, inputs = _problem_and_inputs(plan)
    tracker = SearchTracker(tracking_uri, plan.config.tracking.experiment)
    points = list(front.front().points) if whole_front else [selection.chosen]
    if selection.chosen.id not in {p.id for p in points}:  # a named point off the front joins the front model
        points.append(selection.chosen)
    with tempfile.TemporaryDirectory(prefix="pareto_search_register_") as tmp:
        weights = _download_weights(tracker, points, Path(tmp) / "weights")
        members = [_member(p, weights[p.id], network, inputs) for p in points]
        digest = identity(
            "front" if whole_front else "member",
            plan.name,
            # a PSL point's preference too: an exact selection's point shares its trial point's file
            *(
                f"{m.point}:{file_digest(m.weights_file)}" + (f":{m.preference}" if m.psl_layout else "")
                for m in members
            ),
            *([f"default:{selection.point}"] if whole_front else []),
        )
        registry = ModelRegistry(tracking_uri)
        chosen = selection.chosen
        tags = {
            f"{TAG_PREFIX}search": plan.name,
            f"{TAG_PREFIX}kind": "front" if whole_front else "member",
            f"{TAG_PREFIX}trial_id": chosen.data.get("trial_id", ""),
            f"{TAG_PREFIX}member": int(chosen.data.get("member", 0)),
            f"{TAG_PREFIX}point": selection.point,
            f"{TAG_PREFIX}epoch": chosen.data.get("epoch") or "",
            f"{TAG_PREFIX}solver": chosen.data.get("solver", ""),
            f"{TAG_PREFIX}selection_rule": selection.rule,
            **{f"{TAG_PREFIX}objective.{n}": v for n, v in zip(selection.objectives, chosen.values, strict=True)},
        }
        if whole_front:
            tags[f"{TAG_PREFIX}members"] = len(members)
        # A member's version links to its trial's run (where its weights and curves are); a front model
        # (and an earlier epoch whose trial is still running) to the search's parent run.
        source_run = (parent_run_id if whole_front else _source_run(chosen)) or parent_run_id
        existing = registry.find(model_name, digest)
        if existing is not None:
            version = registry.reuse(model_name, existing, alias)
        else:
            model_dir = write_model(
                Path(tmp) / "model",
                kind="front" if whole_front else "member",
                network=network,
                objectives=front.objectives,
                members=members,
                default_point=selection.point,
                example_inputs=inputs,
                metadata_={"pareto_search": {"search": plan.name, "selection_rule": selection.rule}},
            )
            version = registry.register(
                model_dir,
                name=model_name,
                alias=alias,
                digest=digest,
                experiment_id=tracker.experiment_id,
                source_run_id=source_run,
                # MLflow refuses / : . % and quotes in a logged model's name (a preference's decimals: 0.7 -> 0_7)
                logged_model_name="front"
                if whole_front
                else f"member-{selection.point.replace('/', '-').replace('.', '_').replace(':', '_')}",
                tags=tags,
            )
    try:
        _mark_selection(tracker, parent_run_id, front, selection)
    except Exception as exc:
        if not is_outage(exc):
            raise
        done = f"version {version.version} of '{model_name}' is registered" + (f", alias @{alias}" if alias else "")
        raise RegistryUnavailable(
            f"{done}, but the selection was not marked on the search's run ({outage_cause(exc)})"
        ) from None
    return Publication(
        version, time.perf_counter() - start, tracker.tracking_uri, ui_link(tracker.tracking_uri, tracker.experiment_id)
    )
