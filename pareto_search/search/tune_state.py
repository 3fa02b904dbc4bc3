"""Check Tune's saved experiment state before `resume` hands it to Tune.

Tune keeps its state per driver session, in files stamped with the session's start time: the trial table
(``experiment_state-<stamp>.json``), the search algorithm's state and the callbacks' state. On restore it
reads the newest of each; if one cannot be read, Tune logs "Failed to restore the run state", silently
starts the experiment over and our search is lost. Since the storage writes are atomic (atomic_fs.py) a
kill no longer truncates these files, but a search written before that, a full disk or a damaged copy can
still hold one. Here each session's files are read first; a session with a damaged file is moved aside
whole (its files belong together: a trial table of one session with the search-algorithm state of another
would run trials twice or never), so Tune restores the newest intact session, and the trials continue from
their newest intact checkpoints (checkpoints.py). With no intact session left the search cannot be resumed:
one line says so and where its points are.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import ray.cloudpickle as cloudpickle

from pareto_search.errors import SearchStopped

DAMAGED_FOLDER = "damaged_state"
# Tune's per-session state files and how each is read (Ray 2.x names).
_SESSION_FILE = re.compile(
    r"^(experiment_state|basic-variant-state|search_gen_state|searcher-state|callback-states)-(?P<stamp>.+)\.(json|pkl)$"
)
_TRIAL_TABLE = "experiment_state"
TUNER_FILE = "tuner.pkl"


def _read(path: Path) -> None:
    """Raise if Tune could not read `path` (the trial table is JSON; the rest are pickles)."""
    data = path.read_bytes()
    if path.name.startswith(_TRIAL_TABLE):
        json.loads(data)
    else:
        cloudpickle.loads(data)


def _reason(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0].strip()
    return f"{type(exc).__name__}: {first}"[:160] if first else type(exc).__name__


def check_experiment_state(experiment_dir: Path) -> list[str]:
    """Move damaged sessions aside; return one line per session moved (empty: all intact).

    Raises SearchStopped when the state Tune needs is damaged and nothing intact is left."""
    tuner = experiment_dir / TUNER_FILE
    if tuner.is_file():
        try:
            _read(tuner)
        except Exception as exc:
            raise SearchStopped(f"{tuner} cannot be read ({_reason(exc)}); the search cannot be resumed") from None
    sessions: dict[str, list[Path]] = defaultdict(list)
    for path in experiment_dir.iterdir():
        match = _SESSION_FILE.match(path.name)
        if match and path.is_file():
            sessions[match["stamp"]].append(path)
    moved: list[str] = []
    for stamp in sorted(sessions, reverse=True):  # newest first: stop at the first intact session
        damaged = []
        for path in sorted(sessions[stamp]):
            try:
                _read(path)
            except Exception as exc:
                damaged.append(f"{path.name} ({_reason(exc)})")
        if not damaged:
            break
        aside = experiment_dir / DAMAGED_FOLDER
        aside.mkdir(exist_ok=True)
        for path in sessions[stamp]:
            path.replace(aside / path.name)
        moved.append(f"Tune state of session {stamp} is damaged: {', '.join(damaged)}; moved to {aside}")
    else:
        if moved:
            raise SearchStopped(
                f"{moved[-1]}; no intact state is left in {experiment_dir}: the search cannot be resumed "
                "(its points so far stay in pareto_search/front_points.json)"
            )
    return moved
