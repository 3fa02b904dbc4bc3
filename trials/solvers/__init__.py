"""Solver registry: one line per solver. ``build_solver`` validates names and hyperparameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from trials.names import check_solver_name
from trials.solvers.adatask import AdaTask
from trials.solvers.base import (
    Hyperparameters,
    InvalidHyperparameterError,
    Needs,
    Solver,
    StepContext,
)
from trials.solvers.cagrad import CAGrad
from trials.solvers.cdtt import CDTT
from trials.solvers.dwa import DynamicWeightAverage
from trials.solvers.epo import EPO
from trials.solvers.gradnorm import GradNorm
from trials.solvers.imtl_g import IMTLG
from trials.solvers.itmtl import ITMTL
from trials.solvers.linear import LinearScalarization
from trials.solvers.mgda import MGDA
from trials.solvers.nash_mtl import NashMTL
from trials.solvers.pcgrad import PCGrad
from trials.solvers.pmtl import PMTL
from trials.solvers.tchebycheff import TchebycheffScalarization
from trials.solvers.uncertainty import UncertaintyWeighting
from trials.solvers.upgrad import UPGrad

__all__ = [
    "SOLVERS",
    "Hyperparameters",
    "InvalidHyperparameterError",
    "Needs",
    "Solver",
    "StepContext",
    "build_solver",
    "solver_class",
]

SOLVERS: dict[str, type[Solver]] = {
    LinearScalarization.name: LinearScalarization,
    TchebycheffScalarization.name: TchebycheffScalarization,
    AdaTask.name: AdaTask,
    UncertaintyWeighting.name: UncertaintyWeighting,
    DynamicWeightAverage.name: DynamicWeightAverage,
    GradNorm.name: GradNorm,
    EPO.name: EPO,
    PMTL.name: PMTL,
    UPGrad.name: UPGrad,
    IMTLG.name: IMTLG,
    NashMTL.name: NashMTL,
    MGDA.name: MGDA,
    PCGrad.name: PCGrad,
    CAGrad.name: CAGrad,
    CDTT.name: CDTT,
    ITMTL.name: ITMTL,
}


def solver_class(name: str) -> type[Solver]:
    return SOLVERS[check_solver_name(name)]


def make_params(name: str, params: Mapping[str, Any] | None = None) -> Hyperparameters:
    """Validated hyperparameters of solver ``name``; an unknown key names what is allowed."""
    cls = solver_class(name)
    params = dict(params or {})
    allowed = [f.name for f in dataclasses.fields(cls.Params)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidHyperparameterError(
            f"solver '{name}': unknown hyperparameter `{unknown[0]}`; allowed: {', '.join(allowed) or '(none)'}"
        )
    try:
        return cls.Params(**params)
    except TypeError as exc:  # e.g. a list where a float is expected, caught by the dataclass
        raise InvalidHyperparameterError(f"solver '{name}': invalid hyperparameters {params} ({exc})") from exc


def build_solver(
    name: str,
    num_tasks: int,
    preference: Tensor,
    params: Mapping[str, Any] | None = None,
    *,
    population_preferences: Tensor | None = None,
) -> Solver:
    return solver_class(name)(
        num_tasks, preference, make_params(name, params), population_preferences=population_preferences
    )
