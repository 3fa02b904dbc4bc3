"""A search that spends a budget of model-epochs (``search.budget_model_epochs``) instead of num_samples x epochs.

Two parts, each where its information is:

- **In the trial** (:func:`plateaued`): a trial ends itself once its hypervolume rose by less than ``PLATEAU_GAIN``
  (relative) over its last ``PLATEAU_EPOCHS`` epochs. Its history of HVs is rebuilt from the trainer's own record of
  its epochs, which its checkpoint holds, so a restored trial decides as the uninterrupted one would have.
- **In the driver** (:class:`BudgetStopper`, a Tune ``Stopper``): it counts each trial's model-epochs from its
  results (``model_epochs``, cumulative), stops the running trial when its next epoch would not fit, and ends the
  search when no epoch fits. A search resumed after its driver was killed counts what its trials spent before from
  the front file, whose points carry their trial's ``model_epochs`` (Tune restores a Stopper as it was pickled when
  the search started, not as it was when the driver died).

The probe's model-epochs (``plan.probes``) are charged first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.stopper import Stopper

from pareto_search.config import PLATEAU_EPOCHS, PLATEAU_GAIN
from pareto_search.front.global_front import GlobalFront
from pareto_search.storage import Location


def plateaued(history: Sequence[float]) -> bool:
    """Whether a trial whose hypervolume after each epoch is ``history`` stops here: it gained at most
    PLATEAU_GAIN of its value of PLATEAU_EPOCHS epochs ago (a trial stuck at 0, dominated by the reference point,
    stops too)."""
    if len(history) <= PLATEAU_EPOCHS:
        return False
    before, now = history[-1 - PLATEAU_EPOCHS], history[-1]
    return now - before <= PLATEAU_GAIN * abs(before)


def spent_by_trial(front: GlobalFront) -> dict[str, int]:
    """Each trial's model-epochs as its points in the front record them (its latest result's count)."""
    spent: dict[str, int] = {}
    for point in front.points.values():
        trial, model_epochs = point.data.get("trial_id"), point.data.get("model_epochs")
        if trial is not None and model_epochs is not None:
            spent[str(trial)] = max(spent.get(str(trial), 0), int(model_epochs))
    return spent


class BudgetStopper(Stopper):
    """Stops a search at ``budget`` model-epochs: ``charged`` of them spent before the trials (the probe)."""

    def __init__(self, search: str, front_path: Location, budget: int, charged: int) -> None:
        self.search = search
        self.front_path = front_path
        self.budget = budget
        self.charged = charged
        self._spent: dict[str, int] = {}  # trial -> its model-epochs so far
        self._per_epoch: dict[str, int] = {}  # trial -> what one epoch of it costs
        self._seeded = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_spent={}, _per_epoch={}, _seeded=False)  # counted again where it is unpickled (module doc)
        return state

    def _seed(self) -> None:
        from pareto_search.search.callback import bound_files

        self._seeded = True
        files = bound_files(self.search)  # a moved search's front is where the resuming command found it
        path = files / self.front_path.name if files is not None else self.front_path
        if path.is_file():
            for trial, spent in spent_by_trial(GlobalFront.load(path)).items():
                self._spent[trial] = max(self._spent.get(trial, 0), spent)

    @property
    def spent(self) -> int:
        return self.charged + sum(self._spent.values())

    def _next_epoch(self) -> int:
        """What the next epoch of any trial costs: the largest seen (the one entry's trials cost alike)."""
        return max(self._per_epoch.values(), default=1)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if not self._seeded:
            self._seed()
        model_epochs, epoch = result.get("model_epochs"), result.get("epoch")
        if model_epochs is None or not epoch:
            return False
        self._spent[trial_id] = max(self._spent.get(trial_id, 0), int(model_epochs))
        self._per_epoch[trial_id] = max(1, int(model_epochs) // int(epoch))
        return self.spent + self._per_epoch[trial_id] > self.budget

    def stop_all(self) -> bool:
        if not self._seeded:
            self._seed()
        return self.spent + self._next_epoch() > self.budget
