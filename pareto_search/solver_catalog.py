"""The catalog of registered solvers: name, summary, paper, whose code runs, and every
hyperparameter with its type and default, read from each solver's ``Params`` dataclass so the
listing can never drift from the code; and the method presets (``mt2o``) with their defaults.
Printed by ``pareto-search solvers``."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trials.presets import PRESETS
from trials.solvers import SOLVERS, Solver


@dataclass(frozen=True)
class HyperparameterInfo:
    name: str
    type: str
    default: Any


@dataclass(frozen=True)
class SolverInfo:
    name: str
    summary: str  # first sentence of the class docstring
    paper: str
    implementation: str  # "ours", or the wrapped library with its version
    needs: tuple[str, ...]  # what the loop computes for it each step (cost indicator)
    hyperparameters: tuple[HyperparameterInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "solver",
            "name": self.name,
            "summary": self.summary,
            "paper": self.paper,
            "implementation": self.implementation,
            "needs": list(self.needs),
            "hyperparameters": [
                {"name": h.name, "type": h.type, "default": _jsonable(h.default)} for h in self.hyperparameters
            ],
        }


def _type_name(annotation: Any) -> str:
    """A readable type: ``float``, ``params|rep`` for a Literal, ``tuple[float, ...] | None``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "|".join(str(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and origin is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None  # a required field: Params() would fail, which the contract tests forbid


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _summary(doc: str) -> str:
    """The docstring's first sentence (its first paragraph, unwrapped, up to the first ". ")."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    head, dot, _ = paragraph.partition(". ")
    return head + "." if dot else paragraph


def describe(cls: type[Solver]) -> SolverInfo:
    params = cls.Params
    try:
        hints = typing.get_type_hints(params)
    except (NameError, TypeError):  # an annotation that cannot be resolved: show it as written
        hints = {}
    hyperparameters = tuple(
        HyperparameterInfo(f.name, _type_name(hints[f.name]) if f.name in hints else str(f.type), _default(f))
        for f in dataclasses.fields(params)
    )
    return SolverInfo(
        name=cls.name,
        summary=_summary(cls.__doc__ or ""),
        paper=cls.paper,
        implementation=cls.implementation,
        needs=tuple(f.name for f in dataclasses.fields(cls.needs) if getattr(cls.needs, f.name)),
        hyperparameters=hyperparameters,
    )


def catalog() -> list[SolverInfo]:
    """Every registered solver, sorted by name."""
    return [describe(cls) for _, cls in sorted(SOLVERS.items())]


def _flat(tree: Mapping[str, Any], prefix: str) -> list[HyperparameterInfo]:
    out: list[HyperparameterInfo] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append(HyperparameterInfo(f"{prefix}{key}", type(value).__name__, value))
    return out


@dataclass(frozen=True)
class MethodInfo:
    """A named method that is a preset over a solver (trials/presets.py): ``method: NAME`` in a config."""

    name: str
    summary: str
    paper: str
    solver: str
    defaults: tuple[HyperparameterInfo, ...]  # population.size, population.transfer.rule, ...
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "method",
            "name": self.name,
            "summary": self.summary,
            "paper": self.paper,
            "solver": self.solver,
            "defaults": [{"name": h.name, "type": h.type, "default": _jsonable(h.default)} for h in self.defaults],
            "why": self.why,
        }


def methods() -> list[MethodInfo]:
    """Every method preset, sorted by name."""
    return [
        MethodInfo(p.name, p.summary, p.paper, p.solver, tuple(_flat(p.population, "population.")), p.why)
        for _, p in sorted(PRESETS.items())
    ]


def format_methods(infos: list[MethodInfo]) -> str:
    lines = []
    for info in infos:
        lines.append(f"{info.name} (method: `method: {info.name}` in a solver entry): {info.summary}")
        lines.append(f"    paper: {info.paper}")
        lines.append(f"    solver: {info.solver}")
        lines.extend(f"    {h.name} = {h.default!r}  ({h.type})" for h in info.defaults)
        lines.append(f"    defaults from: {info.why}")
    return "\n".join(lines)


def format_text(infos: list[SolverInfo]) -> str:
    """One block per solver: ``name: summary``, then its implementation, paper and hyperparameters."""
    lines = []
    for info in infos:
        lines.append(f"{info.name}: {info.summary}")
        lines.append(f"    implementation: {info.implementation}")
        lines.append(f"    paper: {info.paper}")
        if info.needs:
            lines.append(f"    needs: {', '.join(info.needs)}")
        if not info.hyperparameters:
            lines.append("    hyperparameters: (none)")
        lines.extend(f"    {h.name} = {h.default!r}  ({h.type})" for h in info.hyperparameters)
    return "\n".join(lines)
