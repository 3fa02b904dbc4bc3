"""Selection rules: pick one trade-off model from a front.

A rule orders the candidate points best first; the first is the selection and the next two are its
runners-up. Rules work on a `pareto.Front` (values in each objective's own direction, directions
beside them) and never on a file or a run, so the same rule serves `pareto-search select` and a
served front model choosing a member per request.

| rule | chooses | method |
|---|---|---|
| `WeightsRule` | the point whose pseudo-weights are closest to the given weights | pymoo `PseudoWeights` |
| `KneeRule` | the high trade-off point (knee) | pymoo `HighTradeoffPoints` |
| `ConstraintRule` | the best point on one objective among those meeting every constraint | filter + sort |
| `PointRule` | a point named by `TRIAL/MEMBER` (its latest epoch) or `TRIAL/MEMBER@eEPOCH` | lookup |
"""

from __future__ import annotations

import math
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pareto_search.front.global_front import EPOCH_MARK, kept_epoch, point_label
from pareto_search.front.pareto import Front, FrontPoint
from pareto_search.front.selection import mcdm

RUNNERS_UP = 2


class SelectionError(ValueError):
    """A rule that cannot be applied to this front; the message is one line for the user."""


@dataclass(frozen=True)
class Selection:
    """The chosen point, the rule that chose it (in words) and the runners-up, best first."""

    chosen: FrontPoint
    rule: str
    runners_up: tuple[FrontPoint, ...]
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def point(self) -> str:
        return point_label(self.chosen)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "objectives": list(self.objectives),
            "directions": list(self.directions),
            "chosen": _point_json(self.chosen),
            "runners_up": [_point_json(p) for p in self.runners_up],
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        def row(tag: str, point: FrontPoint) -> str:
            values = ", ".join(f"{n} {v:.4f}" for n, v in zip(self.objectives, point.values, strict=True))
            return f"{tag:<12}{point_label(point):<28}{point.data.get('solver', ''):<16}{values}"

        lines = [f"rule: {self.rule}", row("selected", self.chosen)]
        lines += [row(f"runner-up {i}", p) for i, p in enumerate(self.runners_up, start=1)]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _point_json(point: FrontPoint) -> dict[str, Any]:
    return {
        "point": point_label(point),
        "trial_id": point.data.get("trial_id"),
        "member": int(point.data.get("member", 0)),
        "epoch": point.data.get("epoch"),
        "solver": point.data.get("solver", ""),
        "values": list(point.values),
        "test_values": point.data.get("test_values"),
        "preference": point.data.get("preference"),
        "model_uri": point.data.get("model_uri", ""),
    }


class Rule(ABC):
    """Orders a front's points, best first."""

    @abstractmethod
    def describe(self) -> str:
        """The rule in words, as printed and stored with a registered model."""

    @abstractmethod
    def order(self, front: Front) -> tuple[list[int], list[str]]:
        """Indices of `front.points`, best first, and notes for the user (e.g. "no pronounced knee")."""

    def select(self, front: Front, candidates: Front | None = None) -> Selection:
        """Apply the rule to `front` (its non-dominated points are the candidates unless given)."""
        pool = front.non_dominated() if candidates is None else candidates
        if len(pool) == 0:
            raise SelectionError("the front is empty: no evaluated point has finite objective values")
        order, notes = self.order(pool)
        return Selection(
            chosen=pool.points[order[0]],
            rule=self.describe(),
            runners_up=tuple(pool.points[i] for i in order[1 : 1 + RUNNERS_UP]),
            objectives=pool.names,
            directions=pool.directions,
            notes=tuple(notes),
        )


def _check_objective(front: Front, name: str, where: str) -> int:
    if name not in front.names:
        raise SelectionError(f"{where}: unknown objective {name!r}; valid: {', '.join(front.names)}")
    return front.names.index(name)


# -- weights -----------------------------------------------------------------------------------------


def parse_weights(text: str | Sequence[float], n_objectives: int, names: Sequence[str]) -> np.ndarray:
    """'0.7,0.3' (or a list) -> weights summing to 1, one per objective, each >= 0."""
    where = "--weights"
    try:
        raw = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise SelectionError(f"{where}: expected {n_objectives} comma-separated numbers, found {text!r}") from None
    if len(raw) != n_objectives:
        raise SelectionError(
            f"{where}: expected {n_objectives} weights (one per objective: {', '.join(names)}), found {len(raw)}: {raw}"
        )
    if any(not math.isfinite(v) or v < 0 for v in raw) or sum(raw) <= 0:
        raise SelectionError(f"{where}: weights must be finite, >= 0 and not all 0, found {raw}")
    weights: np.ndarray = np.asarray(raw, dtype=float)
    normalized: np.ndarray = weights / weights.sum()
    return normalized


@dataclass(frozen=True)
class WeightsRule(Rule):
    """The point whose pseudo-weights (normalized distances from the front's nadir) are closest to the
    given importance weights; weights are normalized to sum to 1."""

    weights: tuple[float, ...]

    def describe(self) -> str:
        return f"weights [{', '.join(f'{w:.4g}' for w in self.weights)}] (pymoo PseudoWeights)"

    def order(self, front: Front) -> tuple[list[int], list[str]]:
        weights = np.asarray(self.weights, dtype=float)
        if len(weights) != len(front.names):
            raise SelectionError(
                f"weights: expected {len(front.names)} (one per objective: {', '.join(front.names)}), "
                f"found {len(weights)}"
            )
        order, _ = mcdm.pseudo_weight_order(front.values_min_form(), weights / weights.sum())
        return order, []


# -- knee --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KneeRule(Rule):
    """The high trade-off point: leaving it costs the most on some objective per unit gained."""

    def describe(self) -> str:
        return "knee (pymoo HighTradeoffPoints)"

    def order(self, front: Front) -> tuple[list[int], list[str]]:
        order, pronounced = mcdm.high_tradeoff_order(front.values_min_form())
        notes = (
            []
            if pronounced or len(front) == 1
            else ["the front has no pronounced knee (no trade-off outlier): took the point with the highest trade-off"]
        )
        return order, notes


# -- constraints -------------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+|[-+]?inf)\s*$")


@dataclass(frozen=True)
class Constraint:
    objective: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.objective}{self.op}{self.bound:g}"

    def holds(self, value: float) -> bool:
        return _OPERATORS[self.op](value, self.bound)


def parse_constraint(text: str) -> Constraint:
    match = _CONSTRAINT.match(text)
    bound = None
    if match:
        try:
            bound = float(match.group(3))
        except ValueError:
            bound = None
    if match is None or bound is None:
        raise SelectionError(
            f"--constraint: cannot read {text!r}; write OBJECTIVE OP VALUE with OP one of "
            f"{', '.join(_OPERATORS)}, e.g. 'left_acc>=0.9'"
        )
    return Constraint(match.group(1), match.group(2), bound)


@dataclass(frozen=True)
class ConstraintRule(Rule):
    """Among the points meeting every constraint, the best on `optimize` (in its own direction).

    `optimize` may be left out when exactly one objective is unconstrained: that one is optimized.
    """

    constraints: tuple[Constraint, ...]
    optimize: str | None = None

    def _target(self, front: Front) -> int:
        for c in self.constraints:
            _check_objective(front, c.objective, f"--constraint '{c}'")
        if self.optimize is not None:
            return _check_objective(front, self.optimize, "--optimize")
        free = [n for n in front.names if n not in {c.objective for c in self.constraints}]
        if len(free) != 1:
            raise SelectionError(
                f"--constraint needs --optimize OBJECTIVE (one of {', '.join(front.names)}): "
                "which objective should be best among the points that meet the constraints?"
            )
        return front.names.index(free[0])

    def describe(self) -> str:
        target = f"best {self.optimize}" if self.optimize else "best on the unconstrained objective"
        return f"{target} subject to {' and '.join(str(c) for c in self.constraints)}"

    def order(self, front: Front) -> tuple[list[int], list[str]]:
        target = self._target(front)
        columns = {c.objective: front.names.index(c.objective) for c in self.constraints}
        feasible = [
            i
            for i, p in enumerate(front.points)
            if all(c.holds(p.values[columns[c.objective]]) for c in self.constraints)
        ]
        if not feasible:
            best = []
            for c in self.constraints:
                column = [p.values[columns[c.objective]] for p in front.points]
                value = max(column) if c.op in (">=", ">") else min(column)
                best.append(f"{c.objective} {value:.6g}")
            raise SelectionError(
                f"no point on the front meets {' and '.join(str(c) for c in self.constraints)}; "
                f"best achievable on the front: {', '.join(best)}"
            )
        sign = 1.0 if front.directions[target] == "min" else -1.0
        feasible.sort(key=lambda i: sign * front.points[i].values[target])
        return feasible, []

    def select(self, front: Front, candidates: Front | None = None) -> Selection:
        selection = super().select(front, candidates)
        if self.optimize is None:  # say which objective was optimized
            target = self._target(front.non_dominated() if candidates is None else candidates)
            rule = f"best {selection.objectives[target]} subject to {' and '.join(str(c) for c in self.constraints)}"
            selection = replace(selection, rule=rule)
        return selection


# -- a named point -----------------------------------------------------------------------------------


def parse_point(text: str) -> tuple[str, int, int | None]:
    """'TRIAL/MEMBER', 'TRIAL/mMEMBER' or either with '@eEPOCH' -> (trial id, member, epoch or None)."""
    trial, _, member = text.rpartition("/")
    member = member[1:] if member.startswith("m") else member
    member, mark, epoch = member.partition(EPOCH_MARK)
    if not trial or not member.isdigit() or (mark and not epoch.isdigit()):
        raise SelectionError(
            f"--point: expected TRIAL/MEMBER or TRIAL/MEMBER{EPOCH_MARK}EPOCH (e.g. 7f3a_00001/2, 7f3a_00001/2@e4), "
            f"found {text!r}"
        )
    return trial, int(member), int(epoch) if mark else None


@dataclass(frozen=True)
class PointRule(Rule):
    """The point the user names; it may be any evaluated point, on the front or not. Without an epoch: the
    member's latest point; with one: that epoch, kept on the front (or the latest point when it is that epoch)."""

    trial_id: str
    member: int
    epoch: int | None = None

    def describe(self) -> str:
        return f"point {self.trial_id}/{self.member}" + ("" if self.epoch is None else f"{EPOCH_MARK}{self.epoch}")

    def _matches(self, point: FrontPoint) -> bool:
        if point.data.get("trial_id") != self.trial_id or int(point.data.get("member", -1)) != self.member:
            return False
        kept = kept_epoch(point.id)
        if self.epoch is None:
            return kept is None
        return kept == self.epoch or (kept is None and point.data.get("epoch") == self.epoch)

    def order(self, front: Front) -> tuple[list[int], list[str]]:
        for i, p in enumerate(front.points):
            if self._matches(p):
                return [i], []
        known = sorted(point_label(p) for p in front.points)
        shown = ", ".join(known[:10]) + (f", ... ({len(known)} in all)" if len(known) > 10 else "")
        raise SelectionError(f"--point: no evaluated point {self.describe().removeprefix('point ')}; points: {shown}")

    def select(self, front: Front, candidates: Front | None = None) -> Selection:
        selection = super().select(front, front if candidates is None else candidates)
        on_front = {p.id for p in front.non_dominated().points}
        if selection.chosen.id not in on_front:
            note = "this point is not on the front: another evaluated point is at least as good on every objective"
            selection = replace(selection, notes=(*selection.notes, note))
        return selection
