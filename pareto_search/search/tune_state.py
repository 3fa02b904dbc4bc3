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

A readable session can still disagree with itself: Tune copies these files into storage side by side, so a driver
killed mid-copy can leave a trial table of one moment beside a search-algorithm state of another, and a trial that
Tune errors without telling the search algorithm (a reused worker that failed to reset) stays "running" there. The
search algorithm then waits for a trial that never ends: with `max_concurrent_trials` reached it hands out no new
trial, Tune has none running, and the resumed search idles forever. So the generator's set of running trials is
made to agree with the trial table Tune restores: finished, errored or unknown trials leave it, unfinished ones
join it (:func:`reconcile_live_trials`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import ray.cloudpickle as cloudpickle

from pareto_search.errors import SearchStopped

DAMAGED_FOLDER = "damaged_state"
_GENERATOR_STATE = "basic-variant-state"  # BasicVariantGenerator (grid / random search): a pickled dict
_FINISHED = ("TERMINATED", "ERROR")  # what Tune restores as ended (errored trials are not resumed, runner.py)
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
    return moved + reconcile_live_trials(experiment_dir)


def _newest(experiment_dir: Path, prefix: str) -> Path | None:
    """The file Tune restores: the greatest name (the session stamp sorts by time), as Tune picks it."""
    paths = [p for p in experiment_dir.glob(f"{prefix}-*") if _SESSION_FILE.match(p.name) and p.is_file()]
    return max(paths, key=lambda p: p.name) if paths else None


def _trial_statuses(table: Path) -> dict[str, str]:
    """Trial id -> status in a trial table (``experiment_state-*.json``)."""
    statuses: dict[str, str] = {}
    for trial_json, _runtime in json.loads(table.read_bytes())["trial_data"]:
        trial = json.loads(trial_json)
        statuses[str(trial["trial_id"])] = str(trial.get("status", ""))
    return statuses


def reconcile_live_trials(experiment_dir: Path) -> list[str]:
    """Make the grid/random generator's running trials those the newest trial table has unfinished; one line
    per repaired file (empty: they agreed, or the search has no such generator)."""
    table, state_file = _newest(experiment_dir, _TRIAL_TABLE), _newest(experiment_dir, _GENERATOR_STATE)
    if table is None or state_file is None:
        return []
    statuses = _trial_statuses(table)
    state = cloudpickle.loads(state_file.read_bytes())
    if not isinstance(state, dict) or not isinstance(state.get("_live_trials"), set):
        return []  # not the layout this reads: left to Tune as it is
    live: set[str] = state["_live_trials"]
    unfinished = {trial for trial, status in statuses.items() if status not in _FINISHED}
    if live == unfinished:
        return []
    stale, missing = sorted(live - unfinished), sorted(unfinished - live)
    state["_live_trials"] = set(unfinished)
    partial = state_file.with_name(f".{state_file.name}.partial")
    partial.write_bytes(cloudpickle.dumps(state))
    partial.replace(state_file)  # whole or not at all, as Tune writes it
    what = []
    if stale:
        what.append(f"no longer waits for {', '.join(stale)} (ended or unknown in the trial table)")
    if missing:
        what.append(f"counts {', '.join(missing)} as running")
    return [f"the search algorithm's state disagreed with the trial table: it {' and '.join(what)}"]


# Modules that moved when the package was cut into layers, old path -> new path. Tune pickles the scheduler (Pareto
# ASHA) with the tuner, by module path, so a search started before the move names the old path in its state; Python's
# import system resolves the old name to the same module object, and the resume restores it as it was.
MOVED_MODULES = {
    "pareto_search.scheduler": "pareto_search.search.scheduler",
    "pareto_search.pareto": "pareto_search.front.pareto",
    "pareto_search.fronts": "pareto_search.front.global_front",
}


def alias_moved_modules() -> None:
    """Make the old module paths of :data:`MOVED_MODULES` import as their new modules (before Tune unpickles)."""
    import importlib
    import sys

    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
