"""Selection rules on fronts with a known answer (no MLflow, no Ray)."""

from __future__ import annotations

import math

import pytest

from pareto_search.front.pareto import Front, FrontPoint, Objective
from pareto_search.front.selection import (
    ConstraintRule,
    KneeRule,
    PointRule,
    SelectionError,
    WeightsRule,
    parse_constraint,
    parse_point,
    parse_weights,
)

LOSSES = (Objective("f1", "min"), Objective("f2", "min"))
ACCURACIES = (Objective("left_acc", "max"), Objective("right_acc", "max"))


def _front(objectives, rows) -> Front:
    return Front(
        objectives,
        tuple(FrontPoint(f"t{i}/m0", tuple(r), {"trial_id": f"t{i}", "member": 0}) for i, r in enumerate(rows)),
    )


def _chosen(selection) -> str:
    return selection.chosen.data["trial_id"]


# A convex front with one sharp knee at t3 = (0.1, 0.1): leaving it toward either end costs far more on one
# objective than it gains on the other. Points on both sides are spread along the axes.
KNEE_ROWS = [(0.0, 1.0), (0.02, 0.6), (0.05, 0.3), (0.1, 0.1), (0.3, 0.05), (0.6, 0.02), (1.0, 0.0)]


def test_knee_is_the_constructed_high_tradeoff_point() -> None:
    selection = KneeRule().select(_front(LOSSES, KNEE_ROWS))
    assert _chosen(selection) == "t3"
    assert selection.notes == ()
    # runners-up are the next-highest trade-offs: the knee's two neighbours
    assert {p.data["trial_id"] for p in selection.runners_up} == {"t2", "t4"}
    assert selection.rule == "knee (pymoo HighTradeoffPoints)"


def test_knee_is_found_in_own_directions_for_maximized_objectives() -> None:
    rows = [(1 - a, 1 - b) for a, b in KNEE_ROWS]  # accuracies: the same front mirrored
    assert _chosen(KneeRule().select(_front(ACCURACIES, rows))) == "t3"


def test_a_straight_front_has_no_pronounced_knee_and_says_so() -> None:
    rows = [(i / 10, 1 - i / 10) for i in range(11)]
    selection = KneeRule().select(_front(LOSSES, rows))
    assert any("no pronounced knee" in n for n in selection.notes)


def test_knee_ignores_dominated_points() -> None:
    rows = [*KNEE_ROWS, (0.11, 0.11), (0.5, 0.5)]  # dominated by the knee
    selection = KneeRule().select(_front(LOSSES, rows))
    assert _chosen(selection) == "t3"
    assert all(p.data["trial_id"] not in ("t7", "t8") for p in selection.runners_up)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [((1.0, 0.0), "t0"), ((0.0, 1.0), "t6"), ((0.5, 0.5), "t3")],
)
def test_weights_pick_each_end_and_the_middle(weights, expected) -> None:
    # t0 is best on f1 (0.0) and t6 on f2: full weight on an objective picks the point best on it
    assert _chosen(WeightsRule(weights).select(_front(LOSSES, KNEE_ROWS))) == expected


def test_weights_on_accuracies_favour_the_weighted_task() -> None:
    rows = [(0.95, 0.60), (0.90, 0.85), (0.70, 0.93)]
    front = _front(ACCURACIES, rows)
    assert _chosen(WeightsRule((0.9, 0.1)).select(front)) == "t0"
    assert _chosen(WeightsRule((0.1, 0.9)).select(front)) == "t2"
    ranked = WeightsRule((0.9, 0.1)).select(front)
    assert [p.data["trial_id"] for p in ranked.runners_up] == ["t1", "t2"]


def test_weights_parse_normalizes_and_refuses_bad_input() -> None:
    assert list(parse_weights("3,1", 2, ["a", "b"])) == [0.75, 0.25]
    with pytest.raises(SelectionError, match=r"expected 2 weights \(one per objective: a, b\), found 3"):
        parse_weights("1,1,1", 2, ["a", "b"])
    with pytest.raises(SelectionError, match="must be finite, >= 0 and not all 0"):
        parse_weights("-1,2", 2, ["a", "b"])
    with pytest.raises(SelectionError, match="comma-separated numbers"):
        parse_weights("a,b", 2, ["a", "b"])


def test_constraint_cuts_the_front_then_optimizes() -> None:
    rows = [(0.95, 0.60), (0.92, 0.80), (0.90, 0.85), (0.70, 0.93)]
    front = _front(ACCURACIES, rows)
    rule = ConstraintRule((parse_constraint("left_acc>=0.9"),), "right_acc")
    selection = rule.select(front)
    assert _chosen(selection) == "t2"  # best right_acc among left_acc >= 0.9
    assert [p.data["trial_id"] for p in selection.runners_up] == ["t1", "t0"]
    assert selection.rule == "best right_acc subject to left_acc>=0.9"
    # without --optimize, the one unconstrained objective is optimized
    assert _chosen(ConstraintRule((parse_constraint("left_acc >= 0.9"),)).select(front)) == "t2"


def test_impossible_constraint_gives_the_best_achievable_values() -> None:
    front = _front(ACCURACIES, [(0.95, 0.60), (0.70, 0.93)])
    rule = ConstraintRule((parse_constraint("left_acc>=0.99"), parse_constraint("right_acc>0.95")), "right_acc")
    with pytest.raises(SelectionError) as info:
        rule.select(front)
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "no point on the front meets left_acc>=0.99 and right_acc>0.95; "
        "best achievable on the front: left_acc 0.95, right_acc 0.93"
    )


def test_unknown_objective_lists_the_valid_ones() -> None:
    front = _front(ACCURACIES, [(0.95, 0.60)])
    with pytest.raises(SelectionError, match=r"unknown objective 'left_accuracy'; valid: left_acc, right_acc"):
        ConstraintRule((parse_constraint("left_accuracy>=0.9"),), "right_acc").select(front)
    with pytest.raises(SelectionError, match=r"--optimize: unknown objective 'acc'; valid: left_acc, right_acc"):
        ConstraintRule((parse_constraint("left_acc>=0.9"),), "acc").select(front)


def test_constraint_syntax_errors_say_what_is_allowed() -> None:
    with pytest.raises(SelectionError, match=r"cannot read 'left_acc=>0.9'; write OBJECTIVE OP VALUE with OP one of"):
        parse_constraint("left_acc=>0.9")
    assert parse_constraint("loss<1e-2").bound == pytest.approx(0.01)


def test_two_constraints_and_no_free_objective_needs_optimize() -> None:
    front = _front(ACCURACIES, [(0.95, 0.60)])
    rule = ConstraintRule((parse_constraint("left_acc>=0.5"), parse_constraint("right_acc>=0.5")))
    with pytest.raises(SelectionError, match="--constraint needs --optimize OBJECTIVE"):
        rule.select(front)


def test_point_rule_finds_any_evaluated_point_and_flags_dominated_ones() -> None:
    front = _front(LOSSES, [*KNEE_ROWS, (0.5, 0.5)])
    assert parse_point("t3/0") == ("t3", 0, None) and parse_point("t3/m0") == ("t3", 0, None)
    assert parse_point("t3/0@e4") == ("t3", 0, 4) and parse_point("t3/m0@e4") == ("t3", 0, 4)
    selection = PointRule("t7", 0).select(front)
    assert _chosen(selection) == "t7"
    assert any("not on the front" in n for n in selection.notes)
    assert PointRule("t3", 0).select(front).notes == ()
    with pytest.raises(SelectionError, match=r"no evaluated point t9/0; points: t0/0, t1/0"):
        PointRule("t9", 0).select(front)
    for bad in ("t3", "t3/0@e", "t3/0@ex"):
        with pytest.raises(SelectionError, match="expected TRIAL/MEMBER"):
            parse_point(bad)


def test_single_point_front_selects_it_by_every_rule() -> None:
    front = _front(LOSSES, [(0.3, 0.4)])
    for rule in (KneeRule(), WeightsRule((0.7, 0.3))):
        selection = rule.select(front)
        assert _chosen(selection) == "t0" and selection.runners_up == ()


def test_non_finite_points_are_never_selected() -> None:
    front = _front(LOSSES, [(math.nan, 0.0), (0.2, 0.3), (0.3, 0.2)])
    with pytest.warns(UserWarning):
        selection = WeightsRule((0.0, 1.0)).select(front)
    assert _chosen(selection) == "t2"


def test_selection_json_carries_points_and_runners_up() -> None:
    data = KneeRule().select(_front(LOSSES, KNEE_ROWS)).to_json()
    assert data["chosen"]["point"] == "t3/0" and data["chosen"]["values"] == [0.1, 0.1]
    assert len(data["runners_up"]) == 2 and data["objectives"] == ["f1", "f2"]
