"""One selection request, from the user's words to a `Selection`: what `pareto-search select` and the Python API
(`Search.select`) both do, so that a rule means the same and is refused with the same line in either.

Two steps, in the order the user's mistakes are reported: `selection_rule` checks the request itself before
any file is read (a missing or second rule, `optimize` without constraints), `select_on_front` applies the rule
to a search's front (weights are read against the front's objectives there). Both raise `SelectionError` (one
line); the callers turn it into their `ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pareto_search.front.selection.rules import (
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

if TYPE_CHECKING:
    from pareto_search.front.global_front import GlobalFront

RULES = ("weights", "knee", "constraint", "point")  # exactly one is given (the CLI's flags, the API's arguments)


def selection_rule(
    *,
    weights: str | Sequence[float] | None = None,
    knee: bool = False,
    constraints: Sequence[str] = (),
    optimize: str | None = None,
    point: str | None = None,
    exact: bool = False,
) -> Rule:
    """The rule asked for. Weights are checked later, against the front's objectives (`select_on_front`): the
    rule returned for them holds no weights yet."""
    if isinstance(constraints, str):  # one expression given where a list is expected: not its characters
        constraints = (constraints,)
    given = [
        rule
        for rule, present in zip(RULES, (weights is not None, knee, bool(constraints), point is not None), strict=True)
        if present
    ]
    if len(given) != 1:  # argparse's mutually exclusive group says this for the CLI; the API needs it said
        found = ", ".join(given) if given else "none"
        raise SelectionError(f"a selection takes exactly one rule of {', '.join(RULES)}; found {found}")
    if optimize and not constraints:
        raise SelectionError("--optimize goes with --constraint")
    if exact and weights is None:
        raise SelectionError("--exact goes with --weights (the preference to evaluate a PSL trial's model at)")
    if knee:
        return KneeRule()
    if constraints:
        return ConstraintRule(tuple(parse_constraint(c) for c in constraints), optimize)
    if point is not None:
        return PointRule(*parse_point(point))
    return WeightsRule(())  # weights are parsed against the front's objectives in select_on_front


def select_on_front(
    front: GlobalFront, rule: Rule, search: str, weights: str | Sequence[float] | None = None
) -> tuple[Rule, Selection]:
    """Apply `rule` (from `selection_rule`) to the front of search `search`: a named point may be any evaluated
    point, the other rules choose among the front's points. Returns the rule as applied (a `WeightsRule` with
    its weights, read against the front's objectives) and the selection."""
    candidates = front.front()
    if len(candidates) == 0:
        raise SelectionError(f"search '{search}' has no front yet: no evaluated point has finite objective values")
    if isinstance(rule, WeightsRule) and not rule.weights:
        if weights is None:
            raise SelectionError("--weights: a weights rule needs the weights, one per objective")
        rule = WeightsRule(tuple(parse_weights(weights, len(candidates.names), candidates.names)))
    return rule, rule.select(front.all_points(), None if isinstance(rule, PointRule) else candidates)
