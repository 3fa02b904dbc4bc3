"""Task groups of a finished search from its measured inter-task affinities (TAG, Fifty et al. 2021).

Trials measure affinity when the config sets ``diagnostics.affinity_every`` (trials/affinity.py).
The search callback keeps each trial's latest running total (the sum over epochs of the epoch's
mean affinity matrix) in ``<storage>/<name>/pareto_search/affinity.json``, next to the front, so
``pareto-search groups`` needs neither Ray nor MLflow. The grouping itself is
:func:`pareto_search.front.grouping.select_groups`.

Several trials: their totals are averaged (each trial is one training trajectory; the mean keeps
the scale of one trajectory), or ``--trial`` picks one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pareto_search.errors import ConfigError
from pareto_search.front.global_front import write_atomic
from pareto_search.front.grouping import Grouping, GroupingError, select_groups
from pareto_search.storage import Location

AFFINITY_FILE = "affinity.json"
FORMAT = 1  # bump when the file layout changes


def affinity_path(front_path: Path | Location) -> Location:
    """The affinity file of a search: in the folder of its front file (the plan's own files)."""
    return Location(front_path).parent / AFFINITY_FILE


def load_affinities(path: Path | Location) -> dict[str, dict[str, Any]]:
    """trial id -> {"tasks", "total", "epoch", "label"}; empty when nothing was recorded."""
    path = Location(path)
    if not path.is_file():
        return {}
    payload = json.loads(path.read_text())
    if payload.get("format") != FORMAT:
        raise ValueError(f"affinity file '{path}' has format {payload.get('format')!r}; expected {FORMAT}")
    return dict(payload["trials"])


def record_affinity(
    path: Path | Location, trial_id: str, *, tasks: list[str], total: list[list[float]], epoch: int, label: str
) -> None:
    """Store (replace) a trial's running affinity total; the file is rewritten atomically."""
    trials = load_affinities(path)
    trials[trial_id] = {"tasks": list(tasks), "total": total, "epoch": int(epoch), "label": label}
    write_atomic(path, json.dumps({"format": FORMAT, "trials": trials}, allow_nan=True))


@dataclass(frozen=True)
class GroupsReport:
    search: str
    budget: int
    tasks: tuple[str, ...]
    trials: tuple[str, ...]  # the trials whose affinity was used
    affinity: np.ndarray  # (T, T), row = source task, column = target task
    grouping: Grouping

    def to_text(self) -> str:
        names = self.tasks
        source = f"trial {self.trials[0]}" if len(self.trials) == 1 else f"the mean of {len(self.trials)} trials"
        lines = [
            f"search '{self.search}': {len(self.grouping.groups)} group(s) for a budget of {self.budget} "
            f"network(s), from the affinity summed over training of {source}"
        ]
        width = max(len(n) for n in names)
        lines.append("affinity Z(row → column):")
        lines.append(" " * (width + 2) + "  ".join(n.rjust(10) for n in names))
        for name, row in zip(names, self.affinity, strict=True):
            lines.append(f"  {name.ljust(width)}" + "  ".join(f"{v:10.4f}" for v in row))
        for k, group in enumerate(self.grouping.groups, start=1):
            members = ", ".join(names[t] for t in group.tasks)
            served = ", ".join(f"{names[t]} ({s:.4f})" for t, s in zip(group.serves, group.scores, strict=True))
            lines.append(f"group {k}: {members} | serves {served}")
        lines.append(
            f"total score {self.grouping.total:.4f} (sum over tasks of the mean affinity onto the task "
            "from the rest of its serving group; 0 for a task alone)"
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "search": self.search,
            "budget": self.budget,
            "tasks": list(self.tasks),
            "trials": list(self.trials),
            "affinity": self.affinity.tolist(),
            "groups": [
                {
                    "tasks": [self.tasks[t] for t in g.tasks],
                    "serves": [self.tasks[t] for t in g.serves],
                    "scores": list(g.scores),
                }
                for g in self.grouping.groups
            ],
            "total": self.grouping.total,
        }


def check_budget(budget: object) -> int:
    """``--budget``: how many networks the grouping may use (an integer >= 1), refused in one line otherwise."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"`--budget` must be an integer >= 1, found {budget!r}")
    return budget


def search_groups(
    name: str, front_path: Location, affinity_every: int, budget: int, trial: str | None = None
) -> GroupsReport:
    """The TAG grouping of search ``name`` (its front at ``front_path``, its config's
    ``diagnostics.affinity_every``) for ``budget`` networks; every bad input is a one-line ConfigError."""
    check_budget(budget)
    recorded = load_affinities(affinity_path(front_path))
    if not recorded:
        if affinity_every == 0:
            raise ConfigError(
                f"search '{name}' measured no task affinity: `diagnostics.affinity_every` is 0 in its config "
                "(set it >= 1 to measure)"
            )
        raise ConfigError(f"search '{name}' has no trial result with task affinity yet")
    if trial is not None:
        if trial not in recorded:
            raise ConfigError(
                f"`--trial` {trial!r} recorded no task affinity; trials with affinity: {', '.join(sorted(recorded))}"
            )
        recorded = {trial: recorded[trial]}
    ids = tuple(sorted(recorded))
    tasks = tuple(recorded[ids[0]]["tasks"])
    matrix = np.mean([np.asarray(recorded[t]["total"], dtype=float) for t in ids], axis=0)
    try:
        grouping = select_groups(matrix, budget)
    except GroupingError as exc:
        raise ConfigError(str(exc)) from None
    return GroupsReport(name, budget, tasks, ids, matrix, grouping)
