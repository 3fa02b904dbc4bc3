"""Picking one trade-off model from a front: selection rules (pymoo decision making)."""

from pareto_search.front.global_front import point_label
from pareto_search.front.selection.rules import (
    Constraint,
    ConstraintRule,
    KneeRule,
    PointRule,
    Rule,
    Selection,
    SelectionError,
    WeightsRule,
    parse_constraint,
    parse_point,
    parse_weights,
)

__all__ = [
    "Constraint",
    "ConstraintRule",
    "KneeRule",
    "PointRule",
    "Rule",
    "Selection",
    "SelectionError",
    "WeightsRule",
    "parse_constraint",
    "parse_point",
    "parse_weights",
    "point_label",
]
