"""Decision making on a front: the adapter of `pymoo.mcdm` (pseudo-weights, high trade-off points).

Everything here takes objective values in minimization form (maximized objectives negated, see
`pareto_search.front.pareto.to_min_form`) and returns an ordering of the points, best first, so that a
selection can name its runners-up. pymoo picks the winner; the ordering of the others uses the same
quantity pymoo ranks by.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray
from pymoo.core.decision_making import NeighborFinder
from pymoo.mcdm.high_tradeoff import HighTradeoffPoints
from pymoo.mcdm.pseudo_weights import PseudoWeights

FloatArray = NDArray[np.float64]

# pymoo's HighTradeoffPoints compares each point with its neighbours within this radius of the
# normalized front (its own default, which its _do hard-codes), at least 2·m of them.
_TRADEOFF_RADIUS = 0.125


def _bounds(values_min: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The front's ideal and nadir; an objective on which every point is equal gets a unit range
    (it decides nothing, and pymoo would divide by zero)."""
    ideal, nadir = values_min.min(axis=0), values_min.max(axis=0)
    flat = nadir - ideal <= 0
    return ideal, np.where(flat, ideal + 1.0, nadir)


def pseudo_weight_order(values_min: FloatArray, weights: FloatArray) -> tuple[list[int], FloatArray]:
    """Points ordered by how close their pseudo-weights are to `weights` (Deb 2001; pymoo's
    `PseudoWeights`, L1 distance as pymoo measures it), and every point's pseudo-weights.

    A point's pseudo-weight on objective i is its normalized distance from the nadir on i, so a large
    weight on an objective picks a point that is good on it.
    """
    if len(values_min) == 1:
        return [0], np.full((1, values_min.shape[1]), 1.0 / values_min.shape[1])
    ideal, nadir = _bounds(values_min)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        chosen, pseudo = PseudoWeights(weights, ideal=ideal, nadir=nadir).do(values_min, return_pseudo_weights=True)
    distance = np.nan_to_num(np.abs(pseudo - weights).sum(axis=1), nan=np.inf)
    order = [int(chosen), *(int(i) for i in np.argsort(distance, kind="stable") if i != chosen)]
    return order, pseudo


def high_tradeoff_order(values_min: FloatArray) -> tuple[list[int], bool]:
    """Points ordered by their trade-off μ (the least improvement per unit of deterioration toward a
    neighbour; Rachmawati & Srinivasan 2009, pymoo's `HighTradeoffPoints`), highest first, and whether
    pymoo found a pronounced knee (a μ outlier).

    pymoo returns only the outliers, so μ is recomputed here with pymoo's own neighbourhood to order
    the rest. Without an outlier (a straight or very small front) the order is still by μ.
    """
    n = len(values_min)
    if n <= 2:  # no point has a neighbour on both sides: no knee to speak of
        return list(range(n)), False
    ideal, nadir = _bounds(values_min)
    normalized = (values_min - ideal) / (nadir - ideal)
    neighbours = NeighborFinder(normalized, epsilon=_TRADEOFF_RADIUS, n_min_neigbors="auto", consider_2d=False)
    mu = np.full(n, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(n):
            diff = normalized[[j for j in neighbours.find(i) if j != i]] - normalized[i]
            tradeoff = np.maximum(0.0, diff).sum(axis=1) / np.maximum(0.0, -diff).sum(axis=1)
            finite = tradeoff[np.isfinite(tradeoff)]
            mu[i] = finite.min() if finite.size else -np.inf
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        knees = HighTradeoffPoints().do(normalized)
    order = [int(i) for i in np.argsort(-mu, kind="stable")]
    finite = mu[np.isfinite(mu)]
    # Equal trade-offs everywhere (a straight front): pymoo's outlier test then reads float noise as
    # an outlier, so there is no knee to report.
    flat = finite.size == 0 or np.ptp(finite) <= 1e-9 * max(1.0, float(np.abs(finite).max()))
    if flat or knees is None or len(knees) == 0:
        return order, False
    best_knee = max((int(k) for k in knees), key=lambda k: mu[k])
    return [best_knee, *(i for i in order if i != best_knee)], True
