"""The Python API: what the ``pareto-search`` commands do, from a notebook or a script.

``run`` / ``resume`` drive a search as ``pareto-search run`` / ``resume`` do, ``open_search`` opens one that ran,
and a :class:`Search` gives its front (``front``), its points as plain rows (``points``), one chosen model
(``select``, the rules of ``pareto-search select``) and its registration in the MLflow Model Registry
(``register``, as ``select --register``). Every check and every message is the command's own: this module
calls the functions the CLI calls. Errors are raised, never turned into an exit: ``ConfigError`` (one line naming
the field) for bad input, before anything is written, and the runner's own exceptions otherwise
(``SearchStopped`` and its ``DriverLockHeld``, ``RegistryUnavailable``).

Importing it (and ``pareto_search``) loads neither torch, Ray nor MLflow: each function imports what it needs.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pareto_search.errors import ConfigError

if TYPE_CHECKING:
    from pareto_search.config import SearchConfig
    from pareto_search.front.global_front import GlobalFront
    from pareto_search.front.selection import Selection
    from pareto_search.plan import SearchPlan
    from pareto_search.search.runner import SearchOutcome
    from pareto_search.serving.publish import Publication
    from pareto_search.storage import Location

DEFAULT_ALIAS = "champion"  # the registry alias `select --register` and Search.register set when none is given
# MLflow's defaults (7 retries, ~4 min of backoff, 120 s per try) would hold one request for up to ~18 min.
REGISTER_HTTP_RETRIES = 5
REGISTER_HTTP_TIMEOUT_S = 30


def _storage(storage: str | os.PathLike[str] | Location | None) -> str | Path | Location:
    """A storage argument as the plan and location functions take it (None: the commands' default)."""
    from pareto_search.storage import Location, default_storage

    if storage is None:
        return default_storage()
    return storage if isinstance(storage, str | Location) else Path(storage)


def load_front(name: str, storage: str | os.PathLike[str] | Location) -> GlobalFront:
    """The global front of search `name` in `storage` as every command reads it, with one-line refusals."""
    from pareto_search.front.global_front import GlobalFront
    from pareto_search.locations import find_search

    plan, _, _ = find_search(_storage(storage), name)
    if not plan.front_path.is_file():
        raise ConfigError(f"search '{name}' has no evaluated point yet ({plan.front_path} is missing)")
    try:
        return GlobalFront.load(plan.front_path)
    except (ValueError, KeyError, TypeError) as exc:  # cut or edited by hand (a search writes it whole, atomically)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"search '{name}': its front file {plan.front_path} cannot be read ({type(exc).__name__}: {reason}); "
            "restore it from a copy (the search's MLflow run holds the front as front.json)"
        ) from None


@dataclass(frozen=True)
class Point:
    """One point of a search's front, as a row: what ``pareto-search front --format json`` prints for it, with
    the objectives by name and its trial's sampled hyperparameters (``params``, flat: ``optimizer.lr``)."""

    point: str  # TRIAL/MEMBER, or TRIAL/MEMBER@eEPOCH for an earlier epoch kept on the front: what select takes
    trial_id: str
    member: int
    epoch: int | None
    solver: str  # the solver entry's label
    objectives: dict[str, float]  # validation values, in each objective's own direction (the front is made of them)
    test_objectives: dict[str, float] | None  # the same epoch on the test split (reported, never used to select)
    preference: list[float] | None
    params: dict[str, Any] = field(default_factory=dict)  # {} when the trial's params.json cannot be read
    model_uri: str = ""

    def as_row(self) -> dict[str, Any]:
        """One flat dict, objectives, ``test_<objective>`` and ``params.<name>`` as columns:
        ``pandas.DataFrame([p.as_row() for p in search.points()])``."""
        tests = {f"test_{k}": v for k, v in (self.test_objectives or {}).items()}
        return {
            "point": self.point,
            "trial_id": self.trial_id,
            "member": self.member,
            "epoch": self.epoch,
            "solver": self.solver,
            **self.objectives,
            **tests,
            "preference": self.preference,
            **{f"params.{k}": v for k, v in self.params.items()},  # MLflow's own column names for run params
            "model_uri": self.model_uri,
        }


class Search:
    """A search in its storage: its plan (the config as it ran, objectives, reference point), front and models.

    Made by :func:`run`, :func:`resume` or :func:`open_search`; every method reads the search's files as they are
    now (a search still running elsewhere shows its front so far)."""

    def __init__(self, plan: SearchPlan, parent_run_id: str | None, outcome: SearchOutcome | None = None) -> None:
        self.plan = plan
        self.parent_run_id = parent_run_id  # the search's MLflow run
        self.outcome = outcome  # run / resume: trials run, failures, recoveries; None when opened

    def __repr__(self) -> str:
        return f"Search({self.name!r}, storage={str(self.storage)!r})"

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def storage(self) -> Location:
        """The storage folder (or URI) holding the search's folder."""
        return self.plan.storage_dir.parent

    @property
    def tracking_uri(self) -> str:
        """The MLflow store the search tracks to and registers in, as every command resolves it from what the
        search recorded (`tracking.uri`, else $MLFLOW_TRACKING_URI, else the working folder's mlflow.db)."""
        from pareto_search.locations import resolve_locations

        return resolve_locations(self.plan).tracking_uri

    @property
    def failures(self) -> list[str]:
        """The trials of the last run / resume that ended in error, one line each (their points are kept)."""
        return self.outcome.failure_lines()[1:] if self.outcome is not None and self.outcome.failures else []

    def front(self) -> GlobalFront:
        """The global front as ``pareto-search front`` reads it: ``to_json()`` is what ``--format json`` prints,
        ``to_table()`` the table, ``front()`` the non-dominated points (a ``pareto.Front``)."""
        return load_front(self.name, self.storage)

    def hypervolume(self) -> float:
        """The front's hypervolume at the search's reference point (``front --format json``'s ``hypervolume``)."""
        return float(self.front().to_json()["hypervolume"])

    def points(self) -> list[Point]:
        """The front's points (the non-dominated ones, as ``front`` lists them), each with its objectives by
        name and its trial's hyperparameters."""
        data = self.front().to_json()
        names = data["objectives"]
        params = {trial: self._trial_params(trial) for trial in {row["trial_id"] for row in data["points"]}}
        return [
            Point(
                point=row["point"],
                trial_id=row["trial_id"],
                member=row["member"],
                epoch=row["epoch"],
                solver=row["solver"],
                objectives=dict(zip(names, row["values"], strict=True)),
                test_objectives=None if not row["test_values"] else dict(zip(names, row["test_values"], strict=True)),
                preference=row["preference"],
                params=params[row["trial_id"]],
                model_uri=row["model_uri"],
            )
            for row in data["points"]
        ]

    def _trial_params(self, trial_id: str) -> dict[str, Any]:
        """The trial's sampled hyperparameters as its MLflow run records them, from Tune's params.json in the
        trial's folder (named by its id); {} when it cannot be read (a folder copied without its trials)."""
        import json

        from pareto_search.search.callback import trial_params

        try:
            return trial_params(json.loads((self.plan.storage_dir / trial_id / "params.json").read_text()))
        except (OSError, ValueError):
            return {}

    def select(
        self,
        *,
        knee: bool = False,
        weights: str | Sequence[float] | None = None,
        point: str | None = None,
        constraints: str | Sequence[str] = (),
        optimize: str | None = None,
        exact: bool = False,
    ) -> Selection:
        """One model from the front by exactly one rule, as ``pareto-search select``: ``knee=True``,
        ``weights=[0.7, 0.3]`` (or "0.7,0.3"), ``constraints=["left_acc>=0.9"]`` (with ``optimize=OBJECTIVE``
        unless one objective is left unconstrained) or ``point="TRIAL/MEMBER[@eEPOCH]"``; ``exact=True`` with
        weights evaluates a PSL trial's model at exactly those weights. ``selection.to_text()`` / ``to_json()``
        are what the command prints."""
        from pareto_search.front.selection import SelectionError, WeightsRule
        from pareto_search.front.selection.request import select_on_front, selection_rule

        try:
            rule = selection_rule(
                weights=weights, knee=knee, constraints=constraints, optimize=optimize, point=point, exact=exact
            )
            rule, selection = select_on_front(self.front(), rule, self.name, weights)
        except SelectionError as exc:
            raise ConfigError(str(exc)) from None
        if exact:
            from pareto_search.serving.exact import exact_selection

            _plugins_from_cwd()
            _quiet_mlflow()  # the point's weights are downloaded
            assert isinstance(rule, WeightsRule)  # selection_rule refused exact without weights
            selection = exact_selection(self.plan, selection, rule.weights, tracking_uri=self.tracking_uri)
        return selection

    def register(
        self, selection: Selection, model_name: str, *, alias: str = DEFAULT_ALIAS, whole_front: bool = False
    ) -> Publication:
        """Register the selected model (or, ``whole_front=True``, one model holding every front member with the
        selection answering by default) in the search's MLflow store under ``model_name``, ``alias`` on it: as
        ``select --register`` (``--register-front``). The same call again registers nothing new (the alias
        moves). Returns the ``Publication``: ``.version`` (name, version, alias, ``model_uri``), ``.ui_link``."""
        from pareto_search.serving.registry import check_names

        check_names("model_name", model_name, alias)  # what MLflow would refuse, before anything is read or written
        _quiet_mlflow()
        # As the command: a server that went away is waited for boundedly (a caller's own setting wins).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(REGISTER_HTTP_RETRIES))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REGISTER_HTTP_TIMEOUT_S))
        _plugins_from_cwd()
        front = self.front()
        from pareto_search.serving.publish import register

        return register(
            self.plan,
            self.parent_run_id,
            front,
            selection,
            model_name=model_name,
            alias=alias,
            whole_front=whole_front,
            tracking_uri=self.tracking_uri,
        )


def open_search(name: str, storage: str | os.PathLike[str] | Location | None = None) -> Search:
    """The search `name` in `storage` (default: $PARETO_SEARCH_STORAGE, else ./searches, as the commands), finished
    or interrupted. ConfigError when it is not there."""
    from pareto_search.plan import load_plan

    plan, parent_run_id = load_plan(_storage(storage), name)
    return Search(plan, parent_run_id)


def run(
    config: Mapping[str, Any] | str | os.PathLike[str] | SearchConfig,
    *,
    name: str | None = None,
    address: str | None = None,
    storage: str | os.PathLike[str] | None = None,
    verbose: bool = False,
) -> Search:
    """Run a search, as ``pareto-search run``: `config` is a dict (the YAML file's content), a YAML file's path
    or a ``SearchConfig``; `name` and `storage` replace the config's. Ray: the one already initialized in this
    process, else the cluster at `address`, else an embedded local Ray, stopped when the search ends.

    Every check of the command runs first (ConfigError, nothing written); a search that cannot finish raises
    ``SearchStopped``; Ctrl-C stops it saved (``resume`` continues it) and raises KeyboardInterrupt. Trials that
    ended in error leave their points on the front: the search is returned, with a warning and
    ``Search.failures``. Progress lines go to stderr; Ray's and Tune's own output to the search's ``driver.log``
    (also to the notebook or terminal with ``verbose=True``)."""
    from pareto_search.config import SearchConfig, load_config, parse_config
    from pareto_search.plan import make_plan

    if isinstance(config, SearchConfig):
        parsed = config
    elif isinstance(config, str | os.PathLike):
        parsed = load_config(Path(config))  # a schema error answers here, before torch loads
    else:
        parsed = parse_config(config)
    overrides = {k: str(v) for k, v in (("name", name), ("storage", storage)) if v is not None}
    if overrides:
        parsed = parse_config({**parsed.model_dump(mode="json"), **overrides})
    _plugins_from_cwd()
    return _drive(make_plan(parsed), address, resume=False, verbose=verbose)


def resume(
    name: str, storage: str | os.PathLike[str] | None = None, *, address: str | None = None, verbose: bool = False
) -> Search:
    """Continue an interrupted search from its storage, as ``pareto-search resume``; as :func:`run` otherwise."""
    from pareto_search.plan import load_plan

    plan, _ = load_plan(_storage(storage), name)
    _plugins_from_cwd()
    return _drive(plan, address, resume=True, verbose=verbose)


def _drive(plan: SearchPlan, address: str | None, *, resume: bool, verbose: bool) -> Search:
    """The command's order: storage reachable, no other driver, then the search; Ray stopped if started here."""
    from pareto_search.search.driver_lock import refuse_if_held
    from pareto_search.storage import StorageError, check_reachable

    try:
        check_reachable(plan.storage_dir)  # bounded; the lock is read there next
    except StorageError as exc:
        raise ConfigError(f"`storage`: {exc}") from None
    refuse_if_held(plan.name, plan.files)  # DriverLockHeld before Ray and torch load
    from pareto_search.console import search_console
    from pareto_search.search.runner import ray_of_this_call, run_search

    # As the command: Ray's and Tune's own output in the search's driver.log (and shown when verbose).
    with search_console(plan.files, verbose=verbose), ray_of_this_call():
        outcome = run_search(plan, address=address, resume=resume)
    if outcome.interrupted:
        raise KeyboardInterrupt(
            f"search '{plan.name}' was {'stopped by SIGTERM' if outcome.terminated else 'interrupted'}; its front so "
            f"far is kept: pareto_search.resume({plan.name!r}) or `pareto-search resume {plan.name}` continues it"
        )
    search = open_search(plan.name, plan.storage_dir.parent)  # the plan as saved (probed values, its MLflow run)
    search.outcome = outcome
    if outcome.recoveries:
        warnings.warn("\n".join(outcome.recovery_lines()), stacklevel=3)
    if outcome.failures:
        warnings.warn("\n".join(outcome.failure_lines()), stacklevel=3)
    return search


def _quiet_mlflow() -> None:
    """As the command (a caller's own setting wins): no download progress bars or INFO lines around the answer.
    MLflow reads these when it is imported."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def _plugins_from_cwd() -> None:
    """Plug-in problems ('package.module:factory') are found from the working directory, as the commands find
    them (cli.main) and as the search's Ray workers do (runner._init_ray)."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


__all__ = ["DEFAULT_ALIAS", "ConfigError", "Point", "Search", "open_search", "resume", "run"]
