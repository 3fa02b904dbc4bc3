"""Model-epoch budget accounting: what each method is charged as its results arrive, the Tune stopper that
ends a search at the budget, and the HV curve over the model-epochs spent."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any


class BudgetCounter:
    """Model-epochs spent and the points seen, in the order results arrive. One result is one epoch of a trial:
    it costs as many model-epochs as it has members, so a trial stopped early is charged only for its epochs."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.spent = 0
        self.started = time.perf_counter()
        self.events: list[dict[str, Any]] = []

    def charge(self, model_epochs: int) -> None:
        """Training that adds no point to the front (a learning-rate probe's models)."""
        if model_epochs <= 0:
            return
        self.spent += model_epochs
        self.events.append({"cum": self.spent, "t": time.perf_counter() - self.started, "points": []})

    def add(
        self,
        run: str,
        values: Sequence[Sequence[float]],
        test: Sequence[Sequence[float]] | None = None,
        cost: int | None = None,
    ) -> None:
        """One epoch of ``run``'s members: their validation points (and, when given, the same models on test:
        recorded for the report only, never used to choose anything). It costs one model-epoch per member, or
        ``cost`` (a PSL network's epoch trains P preferences per example and shows N points)."""
        self.spent += len(values) if cost is None else cost
        points = [[f"{run}/m{k}", [float(v) for v in row]] for k, row in enumerate(values)]
        event: dict[str, Any] = {"cum": self.spent, "t": time.perf_counter() - self.started, "points": points}
        if test is not None:
            event["test"] = [[f"{run}/m{k}", [float(v) for v in row]] for k, row in enumerate(test)]
        self.events.append(event)

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget


PLATEAU_EPOCHS = 2  # a plateau: the trial's HV gained less than the tolerance over this many epochs


def budget_stopper(counter: BudgetCounter, plateau: float | None = None) -> Any:
    """A Ray Tune Stopper that feeds ``counter`` with every result (``values``: one row per member) and ends the
    whole experiment once the budget is spent. With ``plateau`` it also stops a trial whose HV (``trial_hv``) rose
    by less than that fraction over its last PLATEAU_EPOCHS epochs (the next trial then takes the rest of the
    budget); else it never stops a single trial (the scheduler does that)."""
    from ray.tune.stopper import Stopper

    class _BudgetStopper(Stopper):
        def __init__(self) -> None:
            self.seen: dict[str, int] = {}  # trial -> its last counted training_iteration
            self.hv: dict[str, list[float]] = {}  # trial -> its HV after each epoch

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            # Tune hands a trial's last result over again when its function returns (FIFO trials): counted once,
            # else a finished trial would be charged an epoch it never trained (and the budget cut another short).
            iteration = int(result.get("training_iteration", 0))
            if "values" in result and iteration > self.seen.get(trial_id, 0):
                self.seen[trial_id] = iteration
                counter.add(trial_id, result["values"], result.get("test_values"))
                if plateau is not None and "trial_hv" in result:
                    self.hv.setdefault(trial_id, []).append(float(result["trial_hv"]))
            history = self.hv.get(trial_id, [])
            if plateau is None or len(history) <= PLATEAU_EPOCHS:
                return False
            before, now = history[-1 - PLATEAU_EPOCHS], history[-1]
            return bool(now - before < plateau * abs(before))

        def stop_all(self) -> bool:
            return counter.exhausted

    return _BudgetStopper()


def replay_hv(events: Sequence[dict[str, Any]], directions: Sequence[str], reference: Sequence[float]) -> list[float]:
    """HV of the cumulative front after each event: every model with each epoch it was evaluated at (as the
    service's front keeps a model's non-dominated epochs with their weights: a later, worse epoch takes nothing
    away), so the curve never goes down."""
    from pareto_search.front.pareto import Front, FrontPoint, NonFiniteValuesWarning, Objective

    objectives = tuple(Objective(f"o{i}", d) for i, d in enumerate(directions))
    seen: list[FrontPoint] = []
    out = []
    for i, event in enumerate(events):
        seen.extend(FrontPoint(f"{key}@{i}", tuple(values)) for key, values in event["points"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteValuesWarning)  # a diverged model adds no volume
            front = Front(objectives, tuple(seen)).non_dominated()  # only the front: the replay stays small
            seen = list(front.points)
            out.append(front.hypervolume(tuple(reference)).value if seen else 0.0)
    return out


def grid_curve(cum: Sequence[int], hv: Sequence[float], budget: int) -> list[float]:
    """HV after x model-epochs for x = 0..budget: the HV of what had finished by then (a step function)."""
    curve, j, current = [], 0, 0.0
    for x in range(budget + 1):
        while j < len(cum) and cum[j] <= x:
            current = hv[j]
            j += 1
        curve.append(current)
    return curve


def budget_to_reach(xs: Sequence[float], values: Sequence[float], target: float) -> float:
    """The first x where ``values`` reaches ``target``, interpolated linearly between the bracketing points
    (as mt2o_evidence.crossing, on any x); inf if never."""
    for i, value in enumerate(values):
        if math.isfinite(value) and value >= target:
            if i > 0 and values[i] > values[i - 1]:
                return xs[i - 1] + (target - values[i - 1]) / (values[i] - values[i - 1]) * (xs[i] - xs[i - 1])
            return float(xs[i])
    return math.inf
