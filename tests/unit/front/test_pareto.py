"""Tests of the pymoo adapter (pareto_search.front.pareto): every expected value is computed by hand."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from pymoo.indicators.hv import HV

from pareto_search.front.pareto import (
    UNRANKED,
    Front,
    FrontPoint,
    NonFiniteValuesWarning,
    Objective,
    coverage,
    hypervolume,
    non_dominated_mask,
    to_min_form,
)

MIN2 = (Objective("f1", "min"), Objective("f2", "min"))
STAIRCASE = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]


def make_front(values: list[tuple[float, ...]], objectives: tuple[Objective, ...] = MIN2, prefix: str = "p") -> Front:
    """A front whose point ids are p0, p1, ... in order."""
    return Front(objectives, tuple(FrontPoint(f"{prefix}{i}", v) for i, v in enumerate(values)))


# ---------------------------------------------------------------------------------------------------------
# Hypervolume
# ---------------------------------------------------------------------------------------------------------


class TestHypervolume:
    def test_2d_staircase(self) -> None:
        # Columns [1,2), [2,3), [3,4) under ref 4 have heights 1, 2, 3: HV = 6.
        hv = make_front(STAIRCASE).hypervolume((4.0, 4.0))
        assert hv.value == pytest.approx(6.0)
        assert hv.exact is True
        assert hv.method == "pymoo.HV (exact)"
        assert hv.reference_point == (4.0, 4.0)

    def test_one_point(self) -> None:
        # One box (3-1) x (4-1).
        assert make_front([(1.0, 1.0)]).hypervolume((3.0, 4.0)).value == pytest.approx(6.0)

    def test_3d_single_box(self) -> None:
        objs = (*MIN2, Objective("f3", "min"))
        # (2-1) x (4-2) x (6-3) = 6.
        assert make_front([(1.0, 2.0, 3.0)], objs).hypervolume((2.0, 4.0, 6.0)).value == pytest.approx(6.0)

    def test_duplicates_do_not_change_hv(self) -> None:
        assert make_front([*STAIRCASE, (2.0, 2.0), (2.0, 2.0)]).hypervolume((4.0, 4.0)).value == pytest.approx(6.0)

    def test_empty_front_is_zero(self) -> None:
        hv = Front(MIN2).hypervolume((4.0, 4.0))
        assert hv.value == 0.0
        assert hv.exact is True

    def test_nan_point_excluded_with_warning(self) -> None:
        front = make_front([*STAIRCASE, (math.nan, 0.0), (-math.inf, 0.0)])
        with pytest.warns(NonFiniteValuesWarning, match=r"p3, p4"):
            hv = front.hypervolume((4.0, 4.0))
        # Without the filter moocore would report inf for the -inf point.
        assert hv.value == pytest.approx(6.0)

    def test_points_beyond_reference_contribute_zero(self) -> None:
        # (5, 0) is beyond the reference in f1, (4, 0.5) lies on its boundary: neither encloses volume,
        # although both are non-dominated (best f2).
        front = make_front([*STAIRCASE, (5.0, 0.0), (4.0, 0.5)])
        assert front.hypervolume((4.0, 4.0)).value == pytest.approx(6.0)
        assert {"p3", "p4"} <= set(front.non_dominated().ids)
        np.testing.assert_allclose(front.contributions((4.0, 4.0))[3:], [0.0, 0.0])
        assert make_front([(5.0, 0.0)]).hypervolume((4.0, 4.0)).value == 0.0

    def test_mixed_directions(self) -> None:
        objs = (Objective("loss", "min"), Objective("accuracy", "max"))
        front = make_front([(1.0, 0.9), (2.0, 0.95)], objs)
        # Min form (1, -0.9), (2, -0.95), ref (3, -0.0): columns [1,2) height 0.9, [2,3) height 0.95.
        hv = front.hypervolume((3.0, 0.0))
        assert hv.value == pytest.approx(0.9 + 0.95)
        assert hv.reference_point == (3.0, 0.0)
        np.testing.assert_allclose(front.values_min_form(), [[1.0, -0.9], [2.0, -0.95]])
        # Same number from the array function on the negated values.
        direct = hypervolume([[1.0, -0.9], [2.0, -0.95]], [3.0, 0.0], directions=("min", "max"))
        assert direct.value == pytest.approx(hv.value)
        assert direct.reference_point == (3.0, 0.0)

    def test_array_function_warns_with_row_indices(self) -> None:
        with pytest.warns(NonFiniteValuesWarning, match="row 1"):
            hv = hypervolume([[1.0, 1.0], [math.nan, 0.0]], [2.0, 2.0])
        assert hv.value == pytest.approx(1.0)

    def test_six_objectives_use_deterministic_approximation(self) -> None:
        rng = np.random.default_rng(0)
        pts = rng.random((30, 6))
        pts /= np.linalg.norm(pts, axis=1, keepdims=True)  # points on the unit-sphere octant
        objs = tuple(Objective(f"f{i}", "min") for i in range(6))
        front = make_front([tuple(p) for p in pts], objs)
        ref = np.full(6, 1.1)
        start = time.perf_counter()
        hv = front.hypervolume(tuple(ref))
        again = front.hypervolume(tuple(ref))
        exact = float(HV(ref_point=ref)(pts))
        assert time.perf_counter() - start < 1.0
        assert hv.exact is False
        assert "approximate" in hv.method
        assert hv.value == again.value  # deterministic
        assert hv.value == pytest.approx(exact, rel=0.01)


# ---------------------------------------------------------------------------------------------------------
# Dominance, ranks, contributions, coverage, IGD
# ---------------------------------------------------------------------------------------------------------


class TestDominance:
    # p0 (1,4), p1 (2,2), p2 (4,1) non-dominated; p3 (3,3) dominated by p1; p4 (4,4) by p3;
    # p5 (2,2) identical to p1: a different model with the same scores.
    CASE = [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0), (3.0, 3.0), (4.0, 4.0), (2.0, 2.0)]

    def test_non_dominated_keeps_duplicates(self) -> None:
        assert make_front(self.CASE).non_dominated().ids == ("p0", "p1", "p2", "p5")

    def test_ranks(self) -> None:
        np.testing.assert_array_equal(make_front(self.CASE).ranks(), [0, 0, 0, 1, 2, 0])

    def test_mask_function(self) -> None:
        np.testing.assert_array_equal(non_dominated_mask(np.array(self.CASE)), [1, 1, 1, 0, 0, 1])

    def test_nan_point_never_on_front(self) -> None:
        # pymoo alone would rank a NaN point on front 0 and push the others down.
        front = make_front([*STAIRCASE, (math.nan, 0.0)])
        with pytest.warns(NonFiniteValuesWarning, match="p3"):
            assert front.non_dominated().ids == ("p0", "p1", "p2")
        with pytest.warns(NonFiniteValuesWarning):
            np.testing.assert_array_equal(front.ranks(), [0, 0, 0, UNRANKED])

    def test_maximized_objective_dominance(self) -> None:
        objs = (Objective("loss", "min"), Objective("accuracy", "max"))
        # (1, 0.9) dominates (1, 0.8): same loss, higher accuracy.
        assert make_front([(1.0, 0.8), (1.0, 0.9)], objs).non_dominated().ids == ("p1",)


class TestContributions:
    def test_staircase(self) -> None:
        front = make_front([*STAIRCASE, (3.0, 3.0)])  # p3 dominated by p1
        contrib = front.contributions((4.0, 4.0))
        # Exclusive boxes: [1,2)x[3,4), [2,3)x[2,3), [3,4)x[1,2), one each; dominated p3 adds nothing.
        np.testing.assert_allclose(contrib, [1.0, 1.0, 1.0, 0.0])
        # Sum property: exclusive parts + the part shared by >= 2 points ([2,4)x[3,4) and [3,4)x[2,3), 3) = HV.
        assert contrib.sum() + 3.0 == pytest.approx(front.hypervolume((4.0, 4.0)).value)

    def test_one_point_contributes_its_whole_hv(self) -> None:
        np.testing.assert_allclose(make_front([(1.0, 1.0)]).contributions((3.0, 4.0)), [6.0])

    def test_duplicates_each_contribute_zero(self) -> None:
        front = make_front([(1.0, 1.0), (1.0, 1.0)])
        np.testing.assert_allclose(front.contributions((2.0, 2.0)), [0.0, 0.0])
        assert front.hypervolume((2.0, 2.0)).value == pytest.approx(1.0)


class TestCoverage:
    def test_hand_case(self) -> None:
        a = make_front([(1.0, 3.0), (3.0, 1.0)], prefix="a")
        b = make_front([(2.0, 2.0), (3.0, 1.0), (4.0, 4.0)], prefix="b")
        # (2,2) not covered by A; (3,1) equal to a point of A (weak dominance); (4,4) dominated.
        assert coverage(a, b) == pytest.approx(2 / 3)
        # Of A only (3,1) is covered (equal to b's (3,1)); (1,3) is not.
        assert coverage(b, a) == pytest.approx(1 / 2)

    def test_empty_b_is_undefined(self) -> None:
        assert math.isnan(coverage(make_front(STAIRCASE), Front(MIN2)))

    def test_different_objectives_refused(self) -> None:
        other = make_front(STAIRCASE, (Objective("f1", "min"), Objective("f2", "max")))
        with pytest.raises(ValueError, match="different objectives"):
            coverage(make_front(STAIRCASE), other)


class TestIGD:
    def test_zero_for_exact_points(self) -> None:
        exact = np.array(STAIRCASE)
        assert make_front(STAIRCASE).igd(exact) == pytest.approx(0.0)

    def test_hand_value(self) -> None:
        # Distances from (0,1) and (1,0) to the only point (0,1): 0 and sqrt(2); mean sqrt(2)/2.
        assert make_front([(0.0, 1.0)]).igd([[0.0, 1.0], [1.0, 0.0]]) == pytest.approx(math.sqrt(2) / 2)

    def test_empty_front_is_infinite(self) -> None:
        assert Front(MIN2).igd([[0.0, 1.0]]) == math.inf


# ---------------------------------------------------------------------------------------------------------
# Merge, serialization, validation
# ---------------------------------------------------------------------------------------------------------


class TestMerge:
    def test_merge_and_idempotent_readd(self) -> None:
        a = make_front(STAIRCASE)
        b = Front(MIN2, (FrontPoint("p1", (2.0, 2.0)), FrontPoint("q", (0.5, 0.5))))
        merged = a.merge(b)
        assert merged.ids == ("p0", "p1", "p2", "q")
        assert merged.non_dominated().ids == ("q",)

    def test_conflicting_id_refused(self) -> None:
        with pytest.raises(ValueError, match=r"'p1'.*\[2\.0, 2\.0\].*\[9\.0, 9\.0\]"):
            make_front(STAIRCASE).merge(Front(MIN2, (FrontPoint("p1", (9.0, 9.0)),)))


class TestSerialization:
    def test_round_trip(self) -> None:
        objs = (Objective("loss", "min"), Objective("accuracy", "max"))
        front = Front(
            objs,
            (
                FrontPoint("t1/0", (0.5, 0.9), {"trial_id": "t1", "member": 0, "model_uri": "runs:/x/model"}),
                FrontPoint("t1/1", (math.nan, 0.7), {"trial_id": "t1", "member": 1, "preference": [0.5, 0.5]}),
            ),
        )
        with pytest.warns(NonFiniteValuesWarning):
            d = front.to_dict(reference_point=(2.0, 0.0))
        text = json.dumps(d, allow_nan=False)  # strict JSON: NaN written as null
        assert d["points"][1]["values"] == [None, 0.7]
        assert d["hypervolume"] == pytest.approx((2.0 - 0.5) * 0.9)
        assert d["reference_point"] == [2.0, 0.0]
        back = Front.from_dict(json.loads(text))
        assert back.objectives == objs
        assert back.ids == front.ids
        np.testing.assert_array_equal(back.values(), front.values())  # NaN positions equal too
        assert [p.data for p in back.points] == [p.data for p in front.points]

    def test_unknown_key_refused(self) -> None:
        d = make_front(STAIRCASE).to_dict()
        d["colour"] = "red"
        with pytest.raises(ValueError, match="colour"):
            Front.from_dict(d)


class TestValidation:
    def test_bad_direction(self) -> None:
        with pytest.raises(ValueError, match=r"'acc'.*'min', 'max'.*'maximize'"):
            Objective("acc", "maximize")  # type: ignore[arg-type]

    def test_values_length(self) -> None:
        with pytest.raises(ValueError, match=r"'t7'.*should have 2 entries.*Found 3"):
            Front(MIN2, (FrontPoint("t7", (1.0, 2.0, 3.0)),))

    def test_reference_point_length(self) -> None:
        with pytest.raises(ValueError, match=r"reference_point.*2 entries.*f1, f2.*\(1\.0,\)"):
            make_front(STAIRCASE).hypervolume((1.0,))

    def test_reference_point_finite(self) -> None:
        with pytest.raises(ValueError, match=r"reference_point.*finite"):
            make_front(STAIRCASE).hypervolume((math.inf, 1.0))

    def test_duplicate_objective_names(self) -> None:
        with pytest.raises(ValueError, match=r"unique names.*'f1'"):
            Front((Objective("f1", "min"), Objective("f1", "max")))

    def test_duplicate_point_ids(self) -> None:
        with pytest.raises(ValueError, match=r"unique ids.*'x'"):
            Front(MIN2, (FrontPoint("x", (1.0, 2.0)), FrontPoint("x", (2.0, 1.0))))

    def test_non_numeric_values(self) -> None:
        with pytest.raises(ValueError, match=r"'p'.*values.*'a'"):
            FrontPoint("p", ("a", 1.0))  # type: ignore[arg-type]

    def test_to_min_form_shape(self) -> None:
        with pytest.raises(ValueError, match=r"2 entries.*shape \(3,\)"):
            to_min_form([1.0, 2.0, 3.0], ("min", "max"))


def test_a_trials_exclusive_contribution_to_the_global_front(tmp_path) -> None:
    """Trial b's points (1, 2) and (2, 1) against a's (0.5, 3) and (3, 0.5), reference (4, 4). By hand: b dominates
    8 (the 3×2 band plus 2×1), of which 5 a dominates too, so b alone adds 3 = HV(all) 9 − HV(a) 6. The driver passes
    the HV it already has and gets the same number."""
    from pareto_search.front.global_front import GlobalFront
    from pareto_search.front.pareto import Objective

    front = GlobalFront("s", (Objective("f1", "min"), Objective("f2", "min")), (4.0, 4.0), tmp_path / "front.json")
    front.update("a", [{"member": 0, "values": [0.5, 3.0]}, {"member": 1, "values": [3.0, 0.5]}])
    front.update("b", [{"member": 0, "values": [1.0, 2.0]}, {"member": 1, "values": [2.0, 1.0]}])
    total = front.hypervolume().value
    assert total == pytest.approx(9.0)
    assert front.contribution("b") == pytest.approx(3.0)
    assert front.contribution("b", total=total) == front.contribution("b")
