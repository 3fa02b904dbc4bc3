"""Pareto math of the control plane: the one adapter module that imports pymoo / moocore.

Everything else in the service (tracking, selection, the CLI) talks to this module, so a test can check
the import boundary and a change of Pareto library touches one file.

Conventions (see docs/conventions.md):

- Values given by users and stored in files are in each objective's own direction ("min" or "max").
  Internally every objective is minimized: the *minimization form* negates maximized objectives.
  Directions travel beside the values (`Front.objectives`) and the conversion happens only here, at the
  edges (`to_min_form` / `from_min_form`).
- The hypervolume reference point is always explicit and given in the objectives' own direction too
  (e.g. 0.0 for a maximized accuracy, the worst acceptable value); it is converted the same way and is
  never derived from the points, so that HV values of different searches and times stay comparable.
- Points with NaN or infinite values (a diverged trial) are excluded from sorting, HV, IGD and coverage
  with a `NonFiniteValuesWarning` naming them: they are never on the front.
- Points that do not strictly dominate the reference point contribute 0 to the HV. moocore already
  ignores them, but we filter explicitly so the rule does not hang on a library detail.

What comes from the libraries (we write no HV or sorting of our own):
non-dominated sorting from `pymoo.util.nds.non_dominated_sorting.NonDominatedSorting`, exact HV from
`pymoo.indicators.hv.HV` (which calls moocore) up to 5 objectives, `moocore.hv_approx` above that,
and IGD from `pymoo.indicators.igd.IGD`.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import moocore
import numpy as np
from numpy.typing import ArrayLike, NDArray
from pymoo.indicators.hv import HV
from pymoo.indicators.igd import IGD
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

__all__ = [
    "DIRECTIONS",
    "EXACT_HV_MAX_OBJECTIVES",
    "UNRANKED",
    "Direction",
    "Front",
    "FrontPoint",
    "HypervolumeResult",
    "NonFiniteValuesWarning",
    "Objective",
    "coverage",
    "from_min_form",
    "hypervolume",
    "non_dominated_mask",
    "to_min_form",
]

Direction = Literal["min", "max"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)

# Exact HV (pymoo -> moocore) is fast up to 5 objectives (1000 points: 10 ms at 5); at 6 objectives x 1000
# points it takes 2 s and 8 x 200 takes 18 s (measured: docs/conventions.md, "The hypervolume"), too slow to log
# after every trial.
EXACT_HV_MAX_OBJECTIVES = 5
# moocore's default sample count: ~0.1 s for 6 objectives x 200 points, relative error ~1e-4 measured here.
HV_APPROX_NSAMPLES = 262_144
# "Rphi-FWE+" uses a deterministic low-discrepancy sequence: the same front always gives the same number,
# so HV over time never jitters from sampling noise. It ignores the seed; we pass one anyway so that a
# change of method to the Monte-Carlo one ("DZ2019-MC") would stay reproducible.
HV_APPROX_METHOD = "Rphi-FWE+"
HV_APPROX_SEED = 0
EXACT_HV_METHOD = "pymoo.HV (exact)"
APPROX_HV_METHOD = "moocore.hv_approx (approximate, ≤0.1% error)"
# pymoo's own marker for a point on no front (`rank_from_fronts` fills with sys.maxsize). We keep it
# rather than -1 so that sorting points by rank still puts the excluded (non-finite) ones last.
UNRANKED = sys.maxsize
# How many offending ids a warning lists before "... and N more" (a diverged search can have hundreds).
_MAX_IDS_IN_MESSAGE = 20

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


class NonFiniteValuesWarning(UserWarning):
    """Points with NaN or infinite values were excluded from a Pareto computation.

    A warning, not an error: one diverged trial must not stop a search, but it must not pass silently
    either (pymoo would rank a NaN point on the first front and moocore counts -inf as infinite HV).
    """


# --------------------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """One objective: its name and whether it is minimized or maximized in its own units."""

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Objective `name` should be a non-empty string. Found {self.name!r}.")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"Objective {self.name!r}: `direction` should be one of {', '.join(map(repr, DIRECTIONS))}. "
                f"Found {self.direction!r}."
            )


@dataclass(frozen=True)
class FrontPoint:
    """One evaluated model: an id, its objective values (own direction) and what the service needs.

    `data` carries trial_id, member, solver, preference, model_uri, ... It is copied on construction;
    treat it as read-only (a plain dict rather than a read-only proxy so that points pickle for Ray).
    It takes no part in hashing.
    """

    id: str
    values: tuple[float, ...]
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"FrontPoint `id` should be a non-empty string. Found {self.id!r}.")
        if isinstance(self.values, str | bytes) or not isinstance(self.values, Iterable):
            raise ValueError(f"Point {self.id!r}: `values` should be a sequence of numbers. Found {self.values!r}.")
        try:
            values = tuple(float(v) for v in self.values)
        except (TypeError, ValueError):
            raise ValueError(
                f"Point {self.id!r}: `values` should be a sequence of numbers. Found {self.values!r}."
            ) from None
        if not isinstance(self.data, Mapping):
            raise ValueError(f"Point {self.id!r}: `data` should be a mapping. Found {type(self.data).__name__}.")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "data", dict(self.data))


@dataclass(frozen=True)
class HypervolumeResult:
    """A hypervolume value and what it means: it is never reported without its reference point.

    `reference_point` is in the objectives' own direction. `exact` is False when the value comes from an
    approximation (above `EXACT_HV_MAX_OBJECTIVES` objectives); `method` says which, for display.
    """

    value: float
    reference_point: tuple[float, ...]
    exact: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for MLflow params/artifacts."""
        return {
            "value": self.value,
            "reference_point": list(self.reference_point),
            "exact": self.exact,
            "method": self.method,
        }


# --------------------------------------------------------------------------------------------------------
# Conversions and validation helpers
# --------------------------------------------------------------------------------------------------------


def _signs(directions: Sequence[str]) -> FloatArray:
    for i, d in enumerate(directions):
        if d not in DIRECTIONS:
            raise ValueError(f"`directions[{i}]` should be one of {', '.join(map(repr, DIRECTIONS))}. Found {d!r}.")
    return np.array([-1.0 if d == "max" else 1.0 for d in directions])


def to_min_form(values: ArrayLike, directions: Sequence[str]) -> FloatArray:
    """Own-direction values (one point, shape (m,), or many, shape (n, m)) -> minimization form.

    Maximized objectives are negated; minimized ones are unchanged. Works for reference points too.
    """
    arr = np.asarray(values, dtype=float)
    signs = _signs(directions)
    if arr.ndim == 0 or arr.shape[-1] != len(signs):
        raise ValueError(
            f"Parameter `values` should have {len(signs)} entries per point (one per direction). "
            f"Found shape {arr.shape}."
        )
    # `+ 0.0` turns the -0.0 of a negated 0.0 into 0.0, so that printed/serialized values stay tidy.
    return arr * signs + 0.0


def from_min_form(values_min_form: ArrayLike, directions: Sequence[str]) -> FloatArray:
    """Minimization form -> own direction (negation is its own inverse)."""
    return to_min_form(values_min_form, directions)


def _as_matrix(values_min_form: ArrayLike, name: str, n_objectives: int | None = None) -> FloatArray:
    arr = np.asarray(values_min_form, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"Parameter `{name}` should be 2-dimensional (points x objectives). Found shape {arr.shape}.")
    if n_objectives is not None and arr.shape[1] != n_objectives:
        raise ValueError(
            f"Parameter `{name}` should have {n_objectives} columns (one per objective). Found shape {arr.shape}."
        )
    return arr


def _as_reference(reference_point: ArrayLike, n_objectives: int, names: Sequence[str] | None = None) -> FloatArray:
    try:
        ref = np.asarray(reference_point, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"`reference_point` should be a sequence of numbers. Found {reference_point!r}.") from None
    which = f" ({', '.join(names)})" if names else ""
    if ref.ndim != 1 or ref.shape[0] != n_objectives:
        raise ValueError(
            f"`reference_point` should have {n_objectives} entries (one per objective{which}). "
            f"Found {reference_point!r} (shape {ref.shape})."
        )
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"`reference_point` should be finite. Found {reference_point!r}.")
    return ref


def _finite_rows(values: FloatArray, ids: Sequence[str] | None, stacklevel: int) -> BoolArray:
    """Mask of rows with only finite values; warns naming the others (ids, or row indices without ids)."""
    finite: BoolArray = np.all(np.isfinite(values), axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        names = [ids[int(i)] for i in bad] if ids is not None else [f"row {i}" for i in bad]
        shown = ", ".join(map(str, names[:_MAX_IDS_IN_MESSAGE]))
        more = f" and {len(names) - _MAX_IDS_IN_MESSAGE} more" if len(names) > _MAX_IDS_IN_MESSAGE else ""
        warnings.warn(
            f"{len(names)} point(s) with NaN or infinite values excluded from Pareto sorting and hypervolume "
            f"(they are never on the front): {shown}{more}.",
            NonFiniteValuesWarning,
            stacklevel=stacklevel + 1,
        )
    return finite


# --------------------------------------------------------------------------------------------------------
# Core computations on the minimization form (finite values only; callers filter and warn)
# --------------------------------------------------------------------------------------------------------


def _nd_mask_finite(values: FloatArray) -> BoolArray:
    mask = np.zeros(len(values), dtype=bool)
    if len(values):
        # pymoo keeps weakly dominated duplicates on the first front: identical points both stay.
        mask[NonDominatedSorting().do(values, only_non_dominated_front=True)] = True
    return mask


def _hv_value(values: FloatArray, ref: FloatArray) -> tuple[float, bool, str]:
    """(value, exact, method) for finite min-form `values` against min-form `ref`."""
    # Only points strictly better than the reference in every objective enclose any volume. moocore drops
    # the others itself; filtering here makes the rule ours, for both the exact and the approximate path.
    inside = values[np.all(values < ref, axis=1)]
    exact = len(ref) <= EXACT_HV_MAX_OBJECTIVES
    method = EXACT_HV_METHOD if exact else APPROX_HV_METHOD
    if len(inside) == 0:
        return 0.0, exact, method
    if exact:
        return float(HV(ref_point=ref)(inside)), exact, method
    value = moocore.hv_approx(
        inside, ref=ref, nsamples=HV_APPROX_NSAMPLES, seed=HV_APPROX_SEED, method=HV_APPROX_METHOD
    )
    return float(value), exact, method


def _weakly_dominated_by_any(a: FloatArray, b: FloatArray) -> BoolArray:
    """For each row of b: is some row of a <= it in every objective (min form)?"""
    out = np.zeros(len(b), dtype=bool)
    if len(a) == 0:
        return out
    # Chunk over b so that memory stays ~|a| x chunk x m bools for large fronts.
    chunk = max(1, 2_000_000 // max(1, len(a) * a.shape[1]))
    for start in range(0, len(b), chunk):
        block = b[start : start + chunk]
        out[start : start + chunk] = np.all(a[:, None, :] <= block[None, :, :], axis=2).any(axis=0)
    return out


# --------------------------------------------------------------------------------------------------------
# Public functions on arrays
# --------------------------------------------------------------------------------------------------------


def non_dominated_mask(values_min_form: ArrayLike, ids: Sequence[str] | None = None) -> BoolArray:
    """Which points are non-dominated (minimization form, shape (n, m)).

    Identical points are all kept (they are different models with the same scores). Points with NaN or
    infinite values are False, with a `NonFiniteValuesWarning` naming them (`ids`, or row indices).
    """
    values = _as_matrix(values_min_form, "values_min_form")
    finite = _finite_rows(values, ids, stacklevel=2)
    mask = np.zeros(len(values), dtype=bool)
    mask[finite] = _nd_mask_finite(values[finite])
    return mask


def hypervolume(
    values_min_form: ArrayLike,
    ref_min_form: ArrayLike,
    *,
    directions: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> HypervolumeResult:
    """Hypervolume of points in minimization form against an explicit reference point in minimization form.

    Exact (pymoo) up to `EXACT_HV_MAX_OBJECTIVES` objectives, `moocore.hv_approx` above (deterministic).
    Points not strictly dominating the reference contribute 0; NaN/inf points are excluded with a warning;
    no points gives 0.0. `directions` (default: all "min") converts the reference point stored in the
    result back to the objectives' own direction; `ids` name excluded points in the warning.
    """
    values = _as_matrix(values_min_form, "values_min_form")
    ref = _as_reference(ref_min_form, values.shape[1])
    if directions is not None and len(directions) != len(ref):
        raise ValueError(f"Parameter `directions` should have {len(ref)} entries. Found {list(directions)!r}.")
    finite = _finite_rows(values, ids, stacklevel=2)
    value, exact, method = _hv_value(values[finite], ref)
    ref_own = from_min_form(ref, directions) if directions is not None else ref
    return HypervolumeResult(value, tuple(float(x) for x in ref_own), exact, method)


# --------------------------------------------------------------------------------------------------------
# Front
# --------------------------------------------------------------------------------------------------------

_FRONT_KEYS = {"objectives", "directions", "points"}
# Written by `to_dict(reference_point=...)`; derived from the points, so `from_dict` accepts and ignores them.
_FRONT_DERIVED_KEYS = {"reference_point", "hypervolume", "hypervolume_exact", "hypervolume_method"}
_POINT_KEYS = {"id", "values", "data"}


@dataclass(frozen=True)
class Front:
    """A set of evaluated points over named objectives (all points, dominated ones included).

    The service keeps every point of a search here and asks for the non-dominated subset, ranks, HV and
    so on; keeping dominated points lets `merge` and `ranks` work on the whole history. Point ids are
    unique (an id names one model).
    """

    objectives: tuple[Objective, ...]
    points: tuple[FrontPoint, ...] = ()

    def __post_init__(self) -> None:
        objectives = tuple(self.objectives)
        if not objectives:
            raise ValueError("Front `objectives` should name at least one objective. Found none.")
        for o in objectives:
            if not isinstance(o, Objective):
                raise ValueError(f"Front `objectives` should hold Objective instances. Found {o!r}.")
        names = [o.name for o in objectives]
        dup_names = sorted({n for n in names if names.count(n) > 1})
        if dup_names:
            raise ValueError(f"Front `objectives` should have unique names. Found duplicates: {dup_names!r}.")
        points = tuple(self.points)
        seen: set[str] = set()
        for p in points:
            if not isinstance(p, FrontPoint):
                raise ValueError(f"Front `points` should hold FrontPoint instances. Found {p!r}.")
            if len(p.values) != len(objectives):
                raise ValueError(
                    f"Point {p.id!r}: `values` should have {len(objectives)} entries (one per objective: "
                    f"{', '.join(names)}). Found {len(p.values)}: {list(p.values)!r}."
                )
            if p.id in seen:
                raise ValueError(f"Front `points` should have unique ids. Found {p.id!r} twice.")
            seen.add(p.id)
        object.__setattr__(self, "objectives", objectives)
        object.__setattr__(self, "points", points)

    # -- basic views -------------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """Objective names, in order."""
        return tuple(o.name for o in self.objectives)

    @property
    def directions(self) -> tuple[str, ...]:
        """Objective directions ("min"/"max"), in order."""
        return tuple(o.direction for o in self.objectives)

    @property
    def ids(self) -> tuple[str, ...]:
        """Point ids, in order."""
        return tuple(p.id for p in self.points)

    def __len__(self) -> int:
        return len(self.points)

    def values(self) -> FloatArray:
        """Values in each objective's own direction, shape (n, m)."""
        return np.array([p.values for p in self.points], dtype=float).reshape(len(self.points), len(self.objectives))

    def values_min_form(self) -> FloatArray:
        """Values in minimization form (maximized objectives negated), shape (n, m)."""
        return to_min_form(self.values(), self.directions)

    def reference_min_form(self, reference_point: ArrayLike) -> FloatArray:
        """Validate a reference point given in the objectives' own direction and convert it."""
        return to_min_form(_as_reference(reference_point, len(self.objectives), self.names), self.directions)

    def _finite(self, stacklevel: int) -> tuple[FloatArray, BoolArray]:
        values = self.values_min_form()
        return values, _finite_rows(values, self.ids, stacklevel=stacklevel + 1)

    def _check_same_objectives(self, other: Front, what: str) -> None:
        if self.objectives != other.objectives:
            raise ValueError(
                f"Cannot {what} fronts over different objectives: "
                f"{list(zip(self.names, self.directions, strict=True))!r} vs "
                f"{list(zip(other.names, other.directions, strict=True))!r}."
            )

    # -- Pareto computations -----------------------------------------------------------------------------

    def non_dominated(self) -> Front:
        """The non-dominated points (finite ones only).

        Identical points are all kept: they are different models (different ids) with the same scores,
        and the user may prefer either (smaller, faster, other solver).
        """
        values, finite = self._finite(stacklevel=2)
        mask = np.zeros(len(values), dtype=bool)
        mask[finite] = _nd_mask_finite(values[finite])
        return Front(self.objectives, tuple(p for p, keep in zip(self.points, mask, strict=True) if keep))

    def ranks(self) -> IntArray:
        """Front index of each point (0 = non-dominated), from pymoo's non-dominated sorting.

        Non-finite points get `UNRANKED` (pymoo's sys.maxsize marker) so they sort last.
        """
        values, finite = self._finite(stacklevel=2)
        out = np.full(len(values), UNRANKED, dtype=np.int64)
        if finite.any():
            _, rank = NonDominatedSorting().do(values[finite], return_rank=True)
            out[finite] = rank
        return out

    def hypervolume(self, reference_point: ArrayLike) -> HypervolumeResult:
        """HV of the front against `reference_point`, given in the objectives' own direction.

        E.g. for (loss "min", accuracy "max") a reference (2.0, 0.0) means "loss worse than 2 or
        accuracy worse than 0 counts for nothing". The result carries the reference point as given.
        """
        return self._hypervolume(reference_point, stacklevel=2)

    def _hypervolume(self, reference_point: ArrayLike, stacklevel: int) -> HypervolumeResult:
        ref = self.reference_min_form(reference_point)
        values, finite = self._finite(stacklevel=stacklevel + 1)
        value, exact, method = _hv_value(values[finite], ref)
        ref_own = tuple(float(x) for x in np.asarray(reference_point, dtype=float))
        return HypervolumeResult(value, ref_own, exact, method)

    def contributions(self, reference_point: ArrayLike) -> FloatArray:
        """Exclusive HV contribution of each point: HV(all) - HV(all without it).

        Dominated and non-finite points, and points not strictly dominating the reference, get 0.
        Two identical points each get 0 (removing one leaves the other), which is the definition, not a
        bug: their shared region is counted once in the HV but belongs to neither alone. Negative rounding
        residue is clipped to 0. Above `EXACT_HV_MAX_OBJECTIVES` objectives each term is an approximation,
        so small contributions are unreliable there. Cost: one HV per non-dominated point.
        """
        ref = self.reference_min_form(reference_point)
        values, finite = self._finite(stacklevel=2)
        out = np.zeros(len(values))
        candidates = np.flatnonzero(finite)
        nd = _nd_mask_finite(values[candidates])
        nd_rows, nd_values = candidates[nd], values[candidates][nd]
        # Dominated points add nothing to the HV, so HV(all) = HV(non-dominated set).
        total, _, _ = _hv_value(nd_values, ref)
        for k, row in enumerate(nd_rows):
            if not np.all(values[row] < ref):
                continue
            without, _, _ = _hv_value(np.delete(nd_values, k, axis=0), ref)
            out[row] = max(0.0, total - without)
        return out

    def igd(self, exact_points_min_form: ArrayLike) -> float:
        """Inverted generational distance of the non-dominated set to known exact front points.

        `exact_points_min_form` (shape (k, m), minimization form, finite) samples the true front of a
        synthetic problem. Lower is better; 0 when the front contains every exact point. An empty front
        gives inf (pymoo returns 0.0 for an empty set, which would read as a perfect front).
        """
        exact = _as_matrix(exact_points_min_form, "exact_points_min_form", len(self.objectives))
        if len(exact) == 0 or not np.all(np.isfinite(exact)):
            raise ValueError(
                f"Parameter `exact_points_min_form` should be a non-empty array of finite values. "
                f"Found shape {exact.shape}."
            )
        values, finite = self._finite(stacklevel=2)
        approx = values[finite][_nd_mask_finite(values[finite])]
        if len(approx) == 0:
            return math.inf
        return float(IGD(exact)(approx))

    def merge(self, other: Front) -> Front:
        """All points of both fronts (dominated ones included), e.g. a new trial's points into the global set.

        Same objectives (names, order, directions) required. An id present in both with the same values is
        kept once (so re-adding a trial's points on resume is harmless); with different values it is an
        error, since one id names one model.
        """
        self._check_same_objectives(other, "merge")
        by_id = {p.id: p for p in self.points}
        added: list[FrontPoint] = []
        for p in other.points:
            mine = by_id.get(p.id)
            if mine is None:
                added.append(p)
            elif not np.array_equal(mine.values, p.values, equal_nan=True):
                raise ValueError(
                    f"Cannot merge: point {p.id!r} has values {list(mine.values)!r} in one front and "
                    f"{list(p.values)!r} in the other."
                )
        return Front(self.objectives, self.points + tuple(added))

    # -- serialization -----------------------------------------------------------------------------------

    def to_dict(self, reference_point: ArrayLike | None = None) -> dict[str, Any]:
        """JSON-able form (strict JSON: NaN/inf values are written as null).

        With `reference_point` (own direction), also the HV with it, its exactness and method: what
        `front --format json` prints next to the points. `data` must itself be JSON-able.
        """
        out: dict[str, Any] = {
            "objectives": list(self.names),
            "directions": list(self.directions),
            "points": [
                {
                    "id": p.id,
                    "values": [v if math.isfinite(v) else None for v in p.values],
                    "data": dict(p.data),
                }
                for p in self.points
            ],
        }
        if reference_point is not None:
            hv = self._hypervolume(reference_point, stacklevel=2)
            out["reference_point"] = list(hv.reference_point)
            out["hypervolume"] = hv.value
            out["hypervolume_exact"] = hv.exact
            out["hypervolume_method"] = hv.method
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Front:
        """Inverse of `to_dict`. Unknown keys are errors; stored HV fields are ignored (recomputed on demand)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"Front dict should be a mapping. Found {type(d).__name__}.")
        missing = sorted(_FRONT_KEYS - d.keys())
        unknown = sorted(d.keys() - _FRONT_KEYS - _FRONT_DERIVED_KEYS)
        if missing or unknown:
            raise ValueError(
                f"Front dict: missing keys {missing!r}, unknown keys {unknown!r}; "
                f"allowed: {sorted(_FRONT_KEYS | _FRONT_DERIVED_KEYS)!r}."
            )
        names, directions = list(d["objectives"]), list(d["directions"])
        if len(names) != len(directions):
            raise ValueError(
                f"Front dict: `objectives` ({len(names)}: {names!r}) and `directions` "
                f"({len(directions)}: {directions!r}) should have the same length."
            )
        objectives = tuple(Objective(n, dr) for n, dr in zip(names, directions, strict=True))
        points = []
        for i, raw in enumerate(d["points"]):
            if not isinstance(raw, Mapping):
                raise ValueError(f"Front dict: `points[{i}]` should be a mapping. Found {raw!r}.")
            bad = sorted(raw.keys() - _POINT_KEYS)
            if bad or "id" not in raw or "values" not in raw:
                raise ValueError(
                    f"Front dict: `points[{i}]` has keys {sorted(raw.keys())!r}; "
                    f"required 'id', 'values', optional 'data'."
                )
            values = [math.nan if v is None else v for v in raw["values"]]
            points.append(FrontPoint(raw["id"], tuple(values), raw.get("data", {})))
        return cls(objectives, tuple(points))


def coverage(a: Front, b: Front) -> float:
    """Zitzler's coverage C(A, B): the fraction of B's points weakly dominated by at least one point of A.

    C(A, B) = 1 means every point of B is matched or beaten by A; C(A, B) and C(B, A) are both needed
    (they do not sum to 1). Computed on the points given (finite ones; pass `.non_dominated()` fronts for
    the usual definition). Same objectives required. NaN when B has no finite point (undefined).
    """
    a._check_same_objectives(b, "compare")
    va, fa = a._finite(stacklevel=2)
    vb, fb = b._finite(stacklevel=2)
    if not fb.any():
        return math.nan
    return float(_weakly_dominated_by_any(va[fa], vb[fb]).mean())
