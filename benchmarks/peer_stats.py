"""The statistics of the headline benchmark (benchmarks/vs_peers.py) that a reviewer asks for beyond mean curves.

- **Per-seed budget ratios.** On each seed, the model-epochs ours needs to reach the best peer's final HV *on that
  seed*, divided by the model-epochs the peer needed on that seed; reported as median and range beside the
  mean-curve ratio (a mean curve averages away a seed that never gets there).
- **A paired bootstrap interval** of the final-HV difference ours − best peer over seeds (same seed, same data
  split): the 95 % percentile interval of the mean difference over seeds resampled with replacement.
- **HV at a reference near the fronts.** The problem's fixed reference point (e.g. accuracy 0) rewards the level of
  the objectives far more than their trade-offs; a reference at each objective's worst value among all methods'
  final points makes a spread of trade-offs count.
- **The front's ends.** How far apart the best points for each objective lie: a problem whose ends coincide has
  no trade-off to search for.
- **Test HV.** The models on a run's final *validation* front, evaluated on the test split (never used to select).
- **The frozen defaults.** A digest of everything that defines the shipped default (the `mt2o` preset, the
  learning-rate probe's constants, how the benchmark writes the default's config), recorded with every run, so
  that runs made under different defaults are never combined in one table.

Pure functions over plain lists (no torch, no Ray): tests/unit/benchmarks/test_vs_peers.py checks them on
hand-made cases.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOOTSTRAP_RESAMPLES = 10_000  # percentile interval: 10k resamples put its ends within ~0.5 % of their limit
BOOTSTRAP_SEED = 0  # the interval is a function of the data, not of the run: a fixed resampling stream


# -- fronts ---------------------------------------------------------------------------------------------------


def _front_hv(points: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]) -> float:
    from pareto_search.front.pareto import Front, FrontPoint, NonFiniteValuesWarning, Objective

    objectives = tuple(Objective(f"o{i}", d) for i, d in enumerate(directions))
    front = Front(objectives, tuple(FrontPoint(str(i), tuple(p)) for i, p in enumerate(points)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteValuesWarning)  # a diverged model adds no volume
        return front.hypervolume(tuple(reference)).value


def _dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    signs = [1.0 if d == "min" else -1.0 for d in directions]
    am = [s * v for s, v in zip(signs, a, strict=True)]
    bm = [s * v for s, v in zip(signs, b, strict=True)]
    return all(x <= y for x, y in zip(am, bm, strict=True)) and any(x < y for x, y in zip(am, bm, strict=True))


def final_points(events: Sequence[Mapping[str, Any]], split: str = "points") -> list[tuple[str, list[float]]]:
    """Every (model, epoch) point a run evaluated, keyed ``model@event``: the front keeps a model's best epochs,
    so every epoch's point is a candidate (``split``: ``points`` = validation, ``test`` = the same models on test)."""
    out = []
    for i, event in enumerate(events):
        for key, values in event.get(split) or []:
            out.append((f"{key}@{i}", [float(v) for v in values]))
    return out


def non_dominated_keys(points: Sequence[tuple[str, Sequence[float]]], directions: Sequence[str]) -> list[str]:
    finite = [(k, v) for k, v in points if all(math.isfinite(x) for x in v)]
    return [k for k, v in finite if not any(_dominates(w, v, directions) for _, w in finite)]


def hv_on_test(events: Sequence[Mapping[str, Any]], directions: Sequence[str], reference: Sequence[float]) -> float:
    """HV of the test points of the models on the run's final validation front; NaN when the run has no test
    points (runs recorded before test points were)."""
    val = final_points(events, "points")
    test = dict(final_points(events, "test"))
    if not test:
        return math.nan
    chosen = [test[k] for k in non_dominated_keys(val, directions) if k in test]
    return _front_hv(chosen, directions, reference) if chosen else 0.0


def near_reference(
    runs: Sequence[Sequence[Sequence[float]]], directions: Sequence[str], bound: Sequence[float] | None = None
) -> list[float]:
    """Each objective's worst value among the final validation front points of all ``runs`` (each run a list of
    points): a reference point that every run's front dominates, close enough that the trade-offs count. With
    ``bound`` (the fixed reference point), only points inside it count: a diverged model adds no volume at the fixed
    reference and must not push the near one out to where it measures nothing."""
    signs = [1.0 if d == "min" else -1.0 for d in directions]

    def inside(p: Sequence[float]) -> bool:
        finite = all(math.isfinite(v) for v in p)
        return finite and (bound is None or all(s * v < s * b for s, v, b in zip(signs, p, bound, strict=True)))

    points = [p for run in runs for p in run if inside(p)]
    if not points:
        return [float(b) for b in bound] if bound is not None else [math.nan] * len(directions)
    return [max(s * p[j] for p in points) * s for j, s in enumerate(signs)]


def front_of(events: Sequence[Mapping[str, Any]], directions: Sequence[str]) -> list[list[float]]:
    """The final validation front of a run (its non-dominated (model, epoch) points)."""
    points = final_points(events, "points")
    keep = set(non_dominated_keys(points, directions))
    return [v for k, v in points if k in keep]


def hv_at(points: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]) -> float:
    return _front_hv(points, directions, reference) if points else 0.0


def front_ends(fronts: Sequence[Sequence[Sequence[float]]], directions: Sequence[str]) -> list[list[float]]:
    """For each objective, the point of the union of ``fronts`` that is best in it (ties: best in the others'
    sum in minimization form): how far apart the ends of the best front found lie."""
    union = [p for front in fronts for p in front if all(math.isfinite(v) for v in p)]
    signs = [1.0 if d == "min" else -1.0 for d in directions]
    ends = []
    for j in range(len(directions)):
        ends.append(min(union, key=lambda p, j=j: (signs[j] * p[j], sum(s * v for s, v in zip(signs, p, strict=True)))))
    return ends


# -- per-seed ratios and the paired bootstrap -------------------------------------------------------------------


@dataclass(frozen=True)
class SeedRatios:
    ratios: dict[int, float]  # seed -> ours' model-epochs / the peer's, to the peer's final HV on that seed

    @property
    def finite(self) -> list[float]:
        return [r for r in self.ratios.values() if math.isfinite(r)]

    @property
    def median(self) -> float:
        # A seed that never gets there counts as infinitely slow: the median is inf once half of them never do.
        return statistics.median(sorted(self.ratios.values())) if self.ratios else math.nan

    def text(self) -> str:
        if not self.ratios:
            return "–"
        values = sorted(self.ratios.values())
        shown = lambda v: "never" if math.isinf(v) else f"{v:.2f}"  # noqa: E731
        return f"{shown(self.median)} ({shown(values[0])}–{shown(values[-1])})"


def seed_ratios(
    ours: Mapping[int, Sequence[float]], peer: Mapping[int, Sequence[float]], budget_to_reach: Any
) -> SeedRatios:
    """Per seed present in both: ours' budget to the peer's final HV on that seed / the peer's budget to it.
    ``ours`` and ``peer`` map a seed to its HV curve on the model-epoch grid 0..budget."""
    ratios = {}
    for seed in sorted(set(ours) & set(peer)):
        xs = list(range(len(peer[seed])))
        target = peer[seed][-1]
        if not target > 0:
            continue  # a peer with no volume on this seed: nothing to reach
        theirs = budget_to_reach(xs, peer[seed], target)
        mine = budget_to_reach(list(range(len(ours[seed]))), ours[seed], target)
        ratios[seed] = mine / theirs if theirs > 0 else math.inf
    return SeedRatios(ratios)


def paired_bootstrap(
    ours: Mapping[int, float], peer: Mapping[int, float], resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float, float]:
    """(mean difference, 2.5 %, 97.5 %) of ours − peer over the seeds both have, seeds resampled with replacement.
    With n seeds the interval can only be as wide as the n differences allow: report n beside it."""
    import numpy as np

    seeds = sorted(set(ours) & set(peer))
    diffs = np.array([ours[s] - peer[s] for s in seeds], dtype=float)
    if diffs.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = diffs[rng.integers(0, diffs.size, size=(resamples, diffs.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diffs.mean()), float(lo), float(hi)


# -- frozen defaults ------------------------------------------------------------------------------------------


def defaults_digest(default_entry: Mapping[str, Any], budget: bool = False) -> str:
    """12 hex digits of sha256 over what defines the shipped default: the `mt2o` preset as it expands, the
    learning-rate probe's constants and the solver entry the benchmark writes for the default; with ``budget``, also
    the rule that spends `search.budget_model_epochs` (its plateau's constants). Anything that would change the
    default's results changes the digest (the training code itself is pinned by the commit)."""
    from pareto_search.config import PLATEAU_EPOCHS, PLATEAU_GAIN, PROBE_CANDIDATES, PROBE_EPOCHS
    from pareto_search.search.lr_probe import PROBE_TOLERANCE
    from trials.presets import MT2O

    frozen: dict[str, Any] = {
        "preset": {"solver": MT2O.solver, "population": dict(MT2O.population)},
        "probe": {"candidates": PROBE_CANDIDATES, "epochs": PROBE_EPOCHS, "tolerance": PROBE_TOLERANCE},
        "entry": dict(default_entry),
    }
    if budget:  # a key only here: the digest of the default without a budget stays what it was frozen as
        frozen["budget"] = {"plateau_epochs": PLATEAU_EPOCHS, "plateau_gain": PLATEAU_GAIN, "concurrent": 1}
    text = json.dumps(frozen, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def commit_of(repo: Path) -> str:
    """The repository's commit, with ``+dirty`` when the code that trains (pareto_search/, trials/) has changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "pareto_search", "trials"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def check_digests(records: Sequence[Mapping[str, Any]], current: str, strict: bool) -> str:
    """'' when the records may share a table; else one line saying why not. ``strict`` (the held-out protocol): every
    record carries the current digest. Otherwise records without one (made before digests were recorded) pass, and
    those with one must agree."""
    seen = {r.get("digest") for r in records}
    if strict:
        other = sorted(str(d) for d in seen if d != current)
        if other:
            return (
                f"held-out runs were made with the default's digest {', '.join(other)} and the code now has {current}: "
                "the held-out set checks a frozen default once; rerun them all (--no-cache) only for a new default, "
                "and report that it was tuned after a held-out check"
            )
        return ""
    recorded = sorted(str(d) for d in seen if d is not None)
    if len(recorded) > 1:
        return f"runs of different defaults ({', '.join(recorded)}) cannot share a table; rerun with --no-cache"
    return ""
