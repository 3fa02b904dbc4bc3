"""The served model: an MLflow pyfunc holding one or more front members of a search.

One class serves both registrations:

- a **selected model** (`select ... --register`): one member; a request is a batch of inputs and the
  answer is every task's prediction;
- a **front model** (`select ... --register-front`): every member of the front in one process; a request
  may choose the trade-off through MLflow's inference params, `{"weights": [0.7, 0.3]}` (the same rule
  as `select --weights`) or `{"point": "TRIAL/MEMBER[@eEPOCH]"}`; without params the member chosen at registration
  answers. The answer also says which member answered (`point`).

A Pareto set learning trial's points (`method: psl`) are ONE conditioned model at several preferences: the
model folder holds it once (`conditioned_J.pt`, its layout in members.json) and each point is it fixed at
its preference. When `weights` picks such a point of a front model, the answer is the conditioned model at
exactly those weights (as the preference over the tasks, in the objectives' order), not at the stored point's
preference; `point` then says `TRIAL/K@pref=w1,w2`.

What the model folder holds (MLflow artifacts): `members.json` (objectives, directions, each member's
point, values and weights file, the default member, the `NetworkSpec`) and the weights files. The
members' networks are built once, at load time, and share the process; torch.load is weights_only.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from pareto_search.front.pareto import Front, FrontPoint, Objective
from pareto_search.front.selection import SelectionError, WeightsRule, parse_weights
from pareto_search.serving.conditioned import fixed_at, load_conditioned, preference_label, read_state
from pareto_search.serving.network import NetworkSpec
from trials.psl.conditioning import Conditioned

MEMBERS_ARTIFACT = "members"  # the key of members.json in the model's artifacts
WEIGHTS_ARTIFACT = "weights"  # the key of the weights folder
POINT_OUTPUT = "point"  # the output naming the member that answered (front models)


class BadRequest(MlflowException):
    """A request's fault, answered with our reason as the whole message: MLflow's scoring server rewrites an
    exception's message to "Failed to predict data '<the whole input batch>'. Error: <reason>", which puts the
    reason after a dump of the request's inputs; this one keeps only the reason."""

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        if getattr(self, "_reason", None) is None:
            self._reason = value

    def __str__(self) -> str:
        return self._reason


def _bad_request(message: str, error_class: str | None = None) -> MlflowException:
    # INVALID_PARAMETER_VALUE is what MLflow's scoring server turns into HTTP 400 with this message.
    return BadRequest(message, error_code=INVALID_PARAMETER_VALUE, error_class=error_class)


# A reason quoted from MLflow's schema check is cut here: some of its messages embed the input itself.
_MAX_REASON_CHARS = 300


def _schema_reason_first() -> None:
    """Make an input that does not fit the model's signature (wrong shape, wrong type) a 400 whose message is the
    reason: MLflow checks the signature before `predict` runs, and its message begins with the whole request's
    data twice ("Failed to predict data '<inputs>'. Error: Failed to enforce schema of data '<inputs>' with
    schema ... Error: <reason>"), so the reason came last, after up to thousands of numbers.

    MLflow calls `mlflow.pyfunc._validate_prediction_input` for every prediction; it is wrapped (once per process,
    when a model of ours loads: a server process serves only it) to run the same schema check, `_enforce_schema`,
    itself and raise `BadRequest` with the reason alone; the rest (params) is MLflow's own code. Should a later
    MLflow rename these, nothing is wrapped and MLflow's message stands
    (tests/unit/serving/test_serve_command.py notices)."""
    import mlflow.pyfunc as pyfunc_module

    original = getattr(pyfunc_module, "_validate_prediction_input", None)
    enforce = getattr(pyfunc_module, "_enforce_schema", None)
    if original is None or enforce is None or getattr(original, "_reason_first", False):
        return
    from mlflow.environment_variables import MLFLOW_DISABLE_SCHEMA_DETAILS

    def validate(data: Any, params: Any, input_schema: Any, params_schema: Any, flavor: Any = None) -> Any:
        if input_schema is not None and not MLFLOW_DISABLE_SCHEMA_DETAILS.get():  # that setting hides details
            try:
                data = enforce(data, input_schema, flavor)
            except Exception as exc:
                reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                raise _bad_request(
                    f"inputs: {reason[:_MAX_REASON_CHARS].rstrip('.')}; the model takes {input_schema}",
                    error_class="SCHEMA_ENFORCEMENT_FAILED",
                ) from None
            input_schema = None  # checked: MLflow's own call below only checks the params
        return original(data, params, input_schema, params_schema, flavor)

    validate._reason_first = True  # type: ignore[attr-defined]  # a mark on the function: this process wrapped it
    pyfunc_module._validate_prediction_input = validate


class ParetoModel(PythonModel):
    """Front members of a search behind one `predict`."""

    def load_context(self, context: PythonModelContext) -> None:
        _schema_reason_first()
        manifest = json.loads(Path(context.artifacts[MEMBERS_ARTIFACT]).read_text())
        weights_dir = Path(context.artifacts[WEIGHTS_ARTIFACT])
        self.network = NetworkSpec.from_json(manifest["network"])
        self.objectives = tuple(Objective(o["name"], o["direction"]) for o in manifest["objectives"])
        self.default_point: str = manifest["default"]
        self.is_front: bool = manifest["kind"] == "front"
        self.members: dict[str, torch.nn.Module] = {}
        # A PSL point's conditioned model (shared by its trial's points), when the request's weights may ask for
        # any preference of it: the objectives are then one per task, in the tasks' order.
        self.conditioned_of: dict[str, Conditioned] = {}
        exact = len(self.objectives) == len(self.network.task_names)
        loaded: dict[str, Conditioned] = {}
        points = []
        template = None
        for member in manifest["members"]:
            psl = member.get("psl")
            if psl is None:
                template = self.network.build() if template is None else template
                self.members[member["point"]] = self.network.load(weights_dir / member["weights_file"], template)
            else:
                if psl["model"] not in loaded:
                    state = read_state(weights_dir / psl["model"])
                    loaded[psl["model"]] = load_conditioned(self.network, psl["layout"], state)
                self.members[member["point"]] = fixed_at(loaded[psl["model"]], member["preference"])
                if exact:
                    self.conditioned_of[member["point"]] = loaded[psl["model"]]
            trial, _, index = member["point"].rpartition("/")  # TRIAL/K, or TRIAL/K@eE for a kept earlier epoch
            points.append(
                FrontPoint(
                    member["point"], tuple(member["values"]), {"trial_id": trial, "member": int(index.split("@")[0])}
                )
            )
        self.front = Front(self.objectives, tuple(points))
        self._by_weights = lru_cache(maxsize=1024)(self._choose_by_weights)
        # A preference asked again reuses its generated weights (hyper on LeNet: 128 KB each, so 64 stay)
        self._fixed = lru_cache(maxsize=64)(fixed_at)

    def _choose_by_weights(self, weights: tuple[float, ...]) -> str:
        return WeightsRule(weights).select(self.front, self.front).chosen.id

    def choose(self, params: dict[str, Any] | None) -> tuple[str, torch.nn.Module]:
        """Who answers a request, and its name: `point`, else `weights` (a PSL point's conditioned model at
        exactly those weights), else the default."""
        key, weights = self._choose(params)
        conditioned = self.conditioned_of.get(key)
        if weights is None or conditioned is None:
            return key, self.members[key]
        return key.split("@pref=")[0] + preference_label(weights), self._fixed(conditioned, weights)

    def _choose(self, params: dict[str, Any] | None) -> tuple[str, tuple[float, ...] | None]:
        params = params or {}
        point = params.get("point") or ""
        weights = params.get("weights")
        if point:
            trial, _, member = str(point).rpartition("/")
            key = f"{trial}/{member[1:] if member.startswith('m') else member}"
            if key not in self.members:
                raise _bad_request(f"params.point: no member {point!r}; members: {', '.join(self.members)}")
            return key, None
        if weights is not None and len(weights) > 0:
            try:
                normalized = parse_weights(list(weights), len(self.objectives), [o.name for o in self.objectives])
            except SelectionError as exc:
                raise _bad_request(f"params.weights: {str(exc).removeprefix('--weights: ')}") from None
            chosen = tuple(float(w) for w in normalized)
            return self._by_weights(chosen), chosen
        return self.default_point, None

    # `np.ndarray` is a hint MLflow reads as "no schema from hints" (the signature, inferred from real
    # inputs at registration, is the schema); no hint or another one makes MLflow warn at import.
    def predict(
        self, context: PythonModelContext, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        point, model = self.choose(params)
        inputs = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            outputs = model(inputs)
        result = {task: out.numpy() for task, out in zip(self.network.task_names, outputs, strict=True)}
        if self.is_front:
            result[POINT_OUTPUT] = np.array([point] * len(inputs))
        return result
