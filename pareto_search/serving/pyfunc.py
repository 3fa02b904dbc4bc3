"""The served model: an MLflow pyfunc holding one or more front members of a search.

One class serves both registrations:

- a **selected model** (`select ... --register`): one member; a request is a batch of inputs and the
  answer is every task's prediction;
- a **front model** (`select ... --register-front`): every member of the front in one process; a request
  may choose the trade-off through MLflow's inference params, `{"weights": [0.7, 0.3]}` (the same rule
  as `select --weights`) or `{"point": "TRIAL/MEMBER[@eEPOCH]"}`; without params the member chosen at registration
  answers. The answer also says which member answered (`point`).

What the model folder holds (MLflow artifacts): `members.json` (objectives, directions, each member's
point, values and weights file, the default member, the `NetworkSpec`) and the weights files. The
members' networks are built once, at load time, and share the process; torch.load is weights_only.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pareto_search.pareto import Front, FrontPoint, Objective
from pareto_search.selection import SelectionError, WeightsRule, parse_weights
from pareto_search.serving.network import NetworkSpec

MEMBERS_ARTIFACT = "members"  # the key of members.json in the model's artifacts
WEIGHTS_ARTIFACT = "weights"  # the key of the weights folder
POINT_OUTPUT = "point"  # the output naming the member that answered (front models)


def _bad_request(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE is what MLflow's scoring server turns into HTTP 400 with this message.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class ParetoModel(mlflow.pyfunc.PythonModel):
    """Front members of a search behind one `predict`."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        manifest = json.loads(Path(context.artifacts[MEMBERS_ARTIFACT]).read_text())
        weights_dir = Path(context.artifacts[WEIGHTS_ARTIFACT])
        self.network = NetworkSpec.from_json(manifest["network"])
        self.objectives = tuple(Objective(o["name"], o["direction"]) for o in manifest["objectives"])
        self.default_point: str = manifest["default"]
        self.is_front: bool = manifest["kind"] == "front"
        self.members: dict[str, torch.nn.Module] = {}
        points = []
        template = self.network.build()
        for member in manifest["members"]:
            self.members[member["point"]] = self.network.load(weights_dir / member["weights_file"], template)
            trial, _, index = member["point"].rpartition("/")  # TRIAL/K, or TRIAL/K@eE for a kept earlier epoch
            points.append(
                FrontPoint(
                    member["point"], tuple(member["values"]), {"trial_id": trial, "member": int(index.split("@")[0])}
                )
            )
        self.front = Front(self.objectives, tuple(points))
        self._by_weights = lru_cache(maxsize=1024)(self._choose_by_weights)

    def _choose_by_weights(self, weights: tuple[float, ...]) -> str:
        return WeightsRule(weights).select(self.front, self.front).chosen.id

    def choose(self, params: dict[str, Any] | None) -> str:
        """The member that answers a request: `point`, else `weights`, else the default."""
        params = params or {}
        point = params.get("point") or ""
        weights = params.get("weights")
        if point:
            trial, _, member = str(point).rpartition("/")
            key = f"{trial}/{member[1:] if member.startswith('m') else member}"
            if key not in self.members:
                raise _bad_request(f"params.point: no member {point!r}; members: {', '.join(self.members)}")
            return key
        if weights is not None and len(weights) > 0:
            try:
                normalized = parse_weights(list(weights), len(self.objectives), [o.name for o in self.objectives])
            except SelectionError as exc:
                raise _bad_request(f"params.weights: {str(exc).removeprefix('--weights: ')}") from None
            return self._by_weights(tuple(float(w) for w in normalized))
        return self.default_point

    # `np.ndarray` is a hint MLflow reads as "no schema from hints" (the signature, inferred from real
    # inputs at registration, is the schema); no hint or another one makes MLflow warn at import.
    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        point = self.choose(params)
        inputs = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            outputs = self.members[point](inputs)
        result = {task: out.numpy() for task, out in zip(self.network.task_names, outputs, strict=True)}
        if self.is_front:
            result[POINT_OUTPUT] = np.array([point] * len(inputs))
        return result
