"""Solver registry: one line per solver. ``build_solver`` validates names and hyperparameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from trials.solvers.base import (
    Hyperparameters,
    InvalidHyperparameterError,
    Needs,
    Solver,
    StepContext,
)
from trials.solvers.linear import LinearScalarization
from trials.solvers.tchebycheff import TchebycheffScalarization

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
}


def solver_class(name: str) -> type[Solver]:
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"solver '{name}' is unknown; allowed: {', '.join(sorted(SOLVERS))}") from None


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
