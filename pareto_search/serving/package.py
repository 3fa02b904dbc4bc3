"""Writing a served model: an MLflow pyfunc folder with signature, input example and carried code.

The folder is made locally (`mlflow.pyfunc.save_model`, "models from code": `model_code.py` names the
class) and then logged and registered by `registry.py`. Nothing here talks to a tracking server.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import ParamSchema, ParamSpec

from pareto_search.front.pareto import Objective
from pareto_search.serving.conditioned import fixed_at, load_conditioned, read_state
from pareto_search.serving.network import NetworkSpec, code_path_of
from pareto_search.serving.pyfunc import MEMBERS_ARTIFACT, POINT_OUTPUT, WEIGHTS_ARTIFACT
from trials.psl.conditioning import conditioned_state

MODEL_CODE = Path(__file__).with_name("model_code.py")
# Rows of validation inputs shown as the model's input example: enough to show the batch dimension,
# few enough that the example (stored as JSON in the model) stays small for 36x36 images.
EXAMPLE_ROWS = 2
# Written into the model so that `mlflow models serve --env-manager virtualenv|conda` knows what to
# install; listing them skips MLflow's requirement inference, which imports the model in a subprocess
# (~5 s). pareto_search itself is not on PyPI: serve with `--env-manager local` where it is installed.
_REQUIREMENTS = ("torch", "numpy", "pymoo", "moocore", "mlflow")


@dataclass(frozen=True)
class MemberWeights:
    """One member going into a served model."""

    point: str  # TRIAL/MEMBER
    values: tuple[float, ...]  # objectives, own directions
    weights_file: Path  # its state_dict (torch.save), as stored by the search
    solver: str = ""
    preference: Sequence[float] | None = None
    # A Pareto set learning point: the layout of its trial's conditioned model (serving/conditioned.py); the
    # served model holds that model once and fixes it at `preference`.
    psl_layout: dict[str, Any] | None = None


def _requirements() -> list[str]:
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name).split('+')[0]}")  # no local label (+cpu): PyPI has none
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _module(network: NetworkSpec, member: MemberWeights) -> torch.nn.Module:
    if member.psl_layout is None:
        return network.load(member.weights_file)
    assert member.preference is not None
    return fixed_at(load_conditioned(network, member.psl_layout, read_state(member.weights_file)), member.preference)


def _conditioned_digest(state: dict[str, torch.Tensor]) -> str:
    """What identifies a conditioned model: every point of one trial and epoch has the same one."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _signature(network: NetworkSpec, member: MemberWeights, inputs: np.ndarray, front: bool) -> ModelSignature:
    model = _module(network, member)
    with torch.no_grad():
        outputs = model(torch.as_tensor(inputs))
    example_output: dict[str, Any] = {t: o.numpy() for t, o in zip(network.task_names, outputs, strict=True)}
    if front:
        example_output[POINT_OUTPUT] = np.array([member.point] * len(inputs))
    signature = infer_signature(inputs, example_output)
    if front:  # a request picks the trade-off: weights as for `select --weights`, or a point
        signature.params = ParamSchema([ParamSpec("weights", "double", [], (-1,)), ParamSpec("point", "string", "")])
    return signature


def write_model(
    path: Path,
    *,
    kind: str,
    network: NetworkSpec,
    objectives: Sequence[Objective],
    members: Sequence[MemberWeights],
    default_point: str,
    example_inputs: torch.Tensor,
    metadata_: dict[str, Any] | None = None,
) -> Path:
    """Write the pyfunc folder at `path` (which must not exist). `kind` is "member" or "front"."""
    if kind not in ("member", "front"):
        raise ValueError(f"Parameter `kind` should be 'member' or 'front'. Found {kind!r}.")
    by_point = {m.point: m for m in members}
    if default_point not in by_point:
        raise ValueError(f"default point {default_point!r} is not among the members {sorted(by_point)}")
    inputs = example_inputs.detach().cpu().to(torch.float32).numpy()[:EXAMPLE_ROWS]
    with tempfile.TemporaryDirectory(prefix="pareto_search_model_") as tmp:
        weights_dir = Path(tmp) / "weights"
        weights_dir.mkdir()
        entries = []
        conditioned_files: dict[str, str] = {}  # digest -> file: one per PSL trial and epoch, not one per point
        for index, member in enumerate(members):
            entry: dict[str, Any] = {
                "point": member.point,
                "values": list(member.values),
                "solver": member.solver,
                "preference": None if member.preference is None else list(member.preference),
            }
            if member.psl_layout is None:
                name = f"member_{index}.pt"
                shutil.copyfile(member.weights_file, weights_dir / name)
                entry["weights_file"] = name
            else:
                own = conditioned_state(read_state(member.weights_file))
                digest = _conditioned_digest(own)
                if digest not in conditioned_files:
                    conditioned_files[digest] = f"conditioned_{len(conditioned_files)}.pt"
                    torch.save(own, weights_dir / conditioned_files[digest])
                entry["psl"] = {"model": conditioned_files[digest], "layout": member.psl_layout}
            entries.append(entry)
        manifest = {
            "kind": kind,
            "objectives": [{"name": o.name, "direction": o.direction} for o in objectives],
            "default": default_point,
            "network": network.to_json(),
            "members": entries,
        }
        manifest_file = Path(tmp) / "members.json"
        manifest_file.write_text(json.dumps(manifest, indent=2))
        code = code_path_of(network.problem)
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(MODEL_CODE),
            artifacts={MEMBERS_ARTIFACT: str(manifest_file), WEIGHTS_ARTIFACT: str(weights_dir)},
            signature=_signature(network, by_point[default_point], inputs, kind == "front"),
            input_example=inputs,
            code_paths=None if code is None else [str(code)],
            pip_requirements=_requirements(),
            metadata=metadata_,
        )
    return path
