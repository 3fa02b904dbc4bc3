"""The ``pareto-search`` command line.

Bad input (config, arguments, names) ends in one line on stderr and exit code 2, before Ray
starts. Heavy imports (Ray, MLflow) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

# Only light modules here: `--help` and argument errors must not wait for torch, Ray or MLflow (each command
# imports what it needs).
from pareto_search.api import DEFAULT_ALIAS, REGISTER_HTTP_RETRIES, REGISTER_HTTP_TIMEOUT_S
from pareto_search.api import load_front as _load_front
from pareto_search.errors import ConfigDeprecation, ConfigError, SearchStopped
from pareto_search.storage import default_storage

if TYPE_CHECKING:
    from pareto_search.config import SearchConfig
    from pareto_search.front.selection import Rule
    from pareto_search.locations import Locations
    from pareto_search.plan import SearchPlan
    from pareto_search.search.runner import SearchOutcome

EXIT_FAILED = 1  # a trial ended in error, or the search could not finish (the message says what is kept)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)
EXIT_UNREACHABLE = 3  # status / logs / stop: the Ray job server did not answer, the job's state is unknown
EXIT_TERMINATED = 143  # SIGTERM (Kubernetes, systemd, Slurm, spot preemption), as shells report it (128 + 15)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other input error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _storage_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        default=default_storage(),
        help="folder holding searches (default: $PARETO_SEARCH_STORAGE or ./searches)",
    )


def _verbose_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's and Tune's own output (status tables, worker lines) too; it is always in the search's "
        "driver.log",
    )


def _address_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="the Ray job server (dashboard) address, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pareto-search", description="Pareto search for multi-task learning (Ray Tune + MLflow).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a search from a YAML config")
    run.add_argument("config", help="path to the search's YAML config")
    run.add_argument("--name", help="override the config's name")
    run.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    run.add_argument("--storage", help="override the config's storage folder")
    _verbose_arg(run)

    resume = commands.add_parser("resume", help="continue an interrupted search from its storage")
    resume.add_argument("name")
    resume.add_argument("--address", help="Ray cluster address (default: embedded local Ray)")
    _storage_arg(resume)
    _verbose_arg(resume)

    front = commands.add_parser("front", help="print the global front of a search")
    front.add_argument("name")
    front.add_argument("--format", choices=["table", "json", "csv"], default="table")
    _storage_arg(front)

    compare = commands.add_parser("compare", help="compare the fronts of searches (HV, counts, coverage)")
    compare.add_argument("names", nargs="+")
    compare.add_argument("--reference-point", type=float, nargs="+", help="common HV reference point")
    compare.add_argument("--no-mlflow", action="store_true", help="do not log the overlay plot to MLflow")
    _storage_arg(compare)

    groups = commands.add_parser("groups", help="group tasks by their measured affinity (TAG) for a network budget")
    groups.add_argument("name")
    groups.add_argument("--budget", type=int, required=True, help="how many networks may serve the tasks")
    groups.add_argument("--trial", help="use this trial's affinity (default: the mean over the search's trials)")
    groups.add_argument("--format", choices=["table", "json"], default="table")
    _storage_arg(groups)

    select = commands.add_parser(
        "select",
        help="pick one model from a search's front; optionally register it (or the whole front) in MLflow",
        description="Pick one trade-off model from the front of search NAME with exactly one rule. "
        "Prints the chosen point, its objectives, the rule and the two runners-up.",
    )
    select.add_argument("name")
    rule = select.add_mutually_exclusive_group(required=True)
    rule.add_argument(
        "--weights",
        help="importance of each objective, e.g. 0.7,0.3: the point whose pseudo-weights (normalized distance "
        "from the front's nadir per objective) are closest (pymoo.mcdm PseudoWeights)",
    )
    rule.add_argument("--knee", action="store_true", help="the high trade-off point (pymoo.mcdm HighTradeoffPoints)")
    rule.add_argument(
        "--constraint",
        action="append",
        metavar="EXPR",
        help="e.g. 'left_acc>=0.9' (repeatable; >=, <=, >, <): the best point on --optimize among those meeting "
        "every constraint (filter, then sort)",
    )
    rule.add_argument(
        "--point",
        metavar="TRIAL/MEMBER[@eEPOCH]",
        help="this point (any evaluated point): a member's latest epoch, or with @eEPOCH an epoch kept on the front",
    )
    select.add_argument(
        "--exact",
        action="store_true",
        help="with --weights, when the nearest point is a Pareto set learning trial's (method: psl): its "
        "conditioned model at exactly these weights (the preference over the tasks), evaluated on the "
        "validation split; --register then registers the model fixed at that preference",
    )
    select.add_argument(
        "--optimize",
        metavar="OBJECTIVE",
        help="with --constraint: the objective to make best (default: the only unconstrained one)",
    )
    select.add_argument("--format", choices=["table", "json"], default="table")
    target = select.add_mutually_exclusive_group()
    target.add_argument(
        "--register", metavar="MODEL_NAME", help="register the chosen member in the MLflow Model Registry"
    )
    target.add_argument(
        "--register-front",
        metavar="MODEL_NAME",
        help="register one model holding every front member; a request picks the trade-off with "
        'params {"weights": [...]} or {"point": "TRIAL/MEMBER"}, the chosen point answers by default',
    )
    select.add_argument(
        "--alias",
        help=f"registry alias set on the registered version (default: {DEFAULT_ALIAS}); "
        "with --register or --register-front",
    )
    _storage_arg(select)

    submit = commands.add_parser(
        "submit",
        help="submit a search to a Ray cluster as a Ray Job",
        description="Submit `pareto-search run CONFIG` as a Ray Job: the current directory (the config, plug-in "
        "problems) travels to the cluster; .venv, data, searches and MLflow files stay here. Prints the job id.",
    )
    submit.add_argument("config", help="path to the search's YAML config (inside the current directory)")
    submit.add_argument("--name", help="override the config's name")
    _address_arg(submit)
    status = commands.add_parser(
        "status",
        help="the state of a submitted search job (exit 0 succeeded, 1 failed, 130 stopped, 3 the cluster's job "
        "server does not answer)",
    )
    status.add_argument("job_id")
    _address_arg(status)
    logs = commands.add_parser("logs", help="the output of a submitted search job")
    logs.add_argument("job_id")
    logs.add_argument("--follow", action="store_true", help="stream until the job ends; exit with its outcome")
    logs.add_argument("--timeout", type=float, help="with --follow: give up after this many seconds")
    _address_arg(logs)
    stop = commands.add_parser("stop", help="stop a submitted search job (resume it later with `submit` again)")
    stop.add_argument("job_id")
    _address_arg(stop)
    jobs = commands.add_parser("list", help="the search jobs submitted to a Ray cluster")
    jobs.add_argument("--format", choices=["table", "json"], default="table")
    _address_arg(jobs)

    solvers = commands.add_parser("solvers", help="list the solvers with their hyperparameters and papers")
    solvers.add_argument("--format", choices=["table", "json"], default="table")

    problems = commands.add_parser("problems", help="list the built-in problems (a config's `problem.name`)")
    problems.add_argument("--format", choices=["table", "json"], default="table")

    serve = commands.add_parser(
        "serve",
        help="serve a registered model (`mlflow models serve` from this environment) until Ctrl-C / SIGTERM",
        description="Serve MODEL (NAME: its latest version, NAME@ALIAS, NAME/VERSION) from the MLflow registry "
        "`select --register` wrote to, at http://HOST:PORT/invocations, in the foreground.",
    )
    serve.add_argument("model", metavar="MODEL[@ALIAS]")
    serve.add_argument("--port", type=int, default=5000, help="default: 5000")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    serve.add_argument("--tracking-uri", help="the model's store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    serve.add_argument("--workers", type=int, help="uvicorn workers, each with its own copy of the model (default: 1)")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from pareto_search.config import load_config

    config = load_config(args.config)  # a schema error answers here, before torch loads (trials/names.py)
    overrides = {k: v for k, v in (("name", args.name), ("storage", args.storage)) if v}
    if overrides:
        from pareto_search.config import parse_config

        config = parse_config({**config.model_dump(mode="json"), **overrides})
    from pareto_search.plan import make_plan

    plan = make_plan(config)
    return _drive(plan, args.address, resume=False, verbose=args.verbose)


def _drive(plan: SearchPlan, address: str | None, *, resume: bool, verbose: bool = False) -> int:
    """Run or resume the search and report it. A Ctrl-C or SIGTERM before Tune runs (while Ray starts, say)
    ends here too: one line and the signal's exit code, no traceback."""
    from pareto_search.search.driver_lock import DriverLockHeld, refuse_if_held
    from pareto_search.storage import StorageError, check_reachable

    try:
        check_reachable(plan.storage_dir)  # bounded; the lock is read there next
    except StorageError as exc:
        raise ConfigError(f"`storage`: {exc}") from None
    try:  # one driver per search: refused before Ray and torch load (run_search takes the lock itself)
        refuse_if_held(plan.name, plan.files)
    except DriverLockHeld as exc:
        print(f"pareto-search {'resume' if resume else 'run'}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from pareto_search.console import search_console
    from pareto_search.search.runner import release_ray, run_search, sigterm_received

    # Ray's and Tune's own output goes to the search's driver.log (and the terminal with --verbose) until Ray has
    # stopped: its buffered trial lines arrive at shutdown. Anything printed for the user comes after.
    with search_console(plan.files, verbose=verbose):
        try:
            outcome = run_search(plan, address=address, resume=resume)
        except KeyboardInterrupt:
            outcome = None
        release_ray()
    if outcome is None:
        terminated = sigterm_received()
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{what} before training went on — `pareto-search resume {plan.name}` continues it", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return _report(outcome)


def _report(outcome: SearchOutcome) -> int:
    """The front, then (on stderr, last) the trials that ended in error or the interruption; the exit code."""
    terminated = outcome.interrupted and getattr(outcome, "terminated", False)
    if outcome.interrupted:
        how = "stopped by SIGTERM" if terminated else "interrupted"
        print(f"PARTIAL front (the search was {how}):\n{outcome.front.to_table()}")
    else:
        print(outcome.front.to_table())
    if outcome.recoveries:  # the front is whole: these trials ran again from an older checkpoint or from scratch
        print("\n".join(outcome.recovery_lines()), file=sys.stderr)
    if outcome.failures:
        print("\n".join(outcome.failure_lines()), file=sys.stderr)
    if outcome.interrupted:
        name = outcome.front.search
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{what} — `pareto-search resume {name}` continues it", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return EXIT_FAILED if outcome.failures else 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from pareto_search.locations import find_search

    plan, _, _ = find_search(args.storage, args.name)  # run_search resolves its locations (and says any note)
    return _drive(plan, args.address, resume=True, verbose=args.verbose)


def _say_note(command: str, locations: Locations) -> None:
    if locations.note:
        print(f"pareto-search {command}: {locations.note}", file=sys.stderr)


def _cmd_front(args: argparse.Namespace) -> int:
    front = _load_front(args.name, args.storage)
    if args.format == "json":
        print(json.dumps(front.to_json(), indent=2))
    elif args.format == "csv":
        print(front.to_csv(), end="")
    else:
        print(front.to_table())
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from pareto_search.front.compare import compare_data, format_report, log_comparison
    from pareto_search.locations import find_search

    fronts = {name: _load_front(name, args.storage) for name in args.names}
    data = compare_data(fronts, args.reference_point)
    print(format_report(data), flush=True)  # the comparison itself needs no server: it is shown first
    if args.no_mlflow:
        return 0
    from pareto_search.timeouts import WaitTimeout, bounded_call, redact_uri, tracking_open_timeout_s
    from pareto_search.tracking.connection import fail_fast_http, is_outage

    first, _, locations = find_search(args.storage, args.names[0])  # the first search's MLflow
    _say_note("compare", locations)
    tracking, uri = first.config.tracking, locations.tracking_uri
    bound = tracking_open_timeout_s(uri)

    def log() -> str:
        with fail_fast_http():  # one try per request: a server that does not answer is one line, not minutes
            return log_comparison(fronts, data, uri, tracking.experiment)

    try:
        run_id = bounded_call(log, bound, f"tracking store {redact_uri(uri)}")
    except WaitTimeout:
        reason = f"did not answer within {bound:g} s"
    except Exception as exc:
        if not is_outage(exc):
            raise
        reason = f"did not answer ({(str(exc).splitlines() or [type(exc).__name__])[0][:200]})"
    else:
        print(f"overlay plot and numbers logged to MLflow run {run_id}")
        return 0
    print(
        f"pareto-search compare: the comparison above was not logged: `tracking.uri` {redact_uri(uri)} {reason}; "
        "--no-mlflow skips logging",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _selection_rule(args: argparse.Namespace) -> Rule:
    from pareto_search.front.selection.request import selection_rule

    return selection_rule(
        weights=args.weights,
        knee=args.knee,
        constraints=args.constraint or (),
        optimize=args.optimize,
        point=args.point,
        exact=args.exact,
    )


def _cmd_select(args: argparse.Namespace) -> int:
    from pareto_search.front.selection import SelectionError, WeightsRule
    from pareto_search.front.selection.request import select_on_front
    from pareto_search.locations import find_search

    # `is not None`: an empty name is a mistake to refuse, not a request to register nothing.
    model_name = args.register if args.register is not None else args.register_front
    flag = "--register" if args.register is not None else "--register-front"
    if model_name is None and args.alias is not None:
        raise ConfigError(
            f"--alias {args.alias!r} goes with --register or --register-front (it names the registered version), "
            "found neither: nothing would be registered"
        )
    alias = DEFAULT_ALIAS if args.alias is None else args.alias
    if model_name is not None:
        from pareto_search.serving.registry import check_names

        check_names(flag, model_name, alias)  # what MLflow would refuse, before anything is read or written
    try:
        rule = _selection_rule(args)
        front = _load_front(args.name, args.storage)
        rule, selection = select_on_front(front, rule, args.name, args.weights)
    except SelectionError as exc:
        raise ConfigError(str(exc)) from None
    if args.exact:
        from pareto_search.serving.exact import exact_selection

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the point's weights are read
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        assert isinstance(rule, WeightsRule)  # selection_rule refused --exact without --weights
        exact_plan, _, exact_locations = find_search(args.storage, args.name)
        _say_note("select", exact_locations)
        selection = exact_selection(exact_plan, selection, rule.weights, tracking_uri=exact_locations.tracking_uri)
    payload = selection.to_json()
    text = selection.to_text()
    if model_name is not None:
        # MLflow's download progress bars and INFO lines would bury the answer (read when mlflow is imported).
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        # A server that went away is waited for, boundedly: a restart (seconds) is ridden through by MLflow's
        # retries, ~1 min of backoff per request (2+4+8+16+32 s), 30 s per try; then one line, not a hang.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(REGISTER_HTTP_RETRIES))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REGISTER_HTTP_TIMEOUT_S))
        from pareto_search.serving.publish import register
        from pareto_search.serving.registry import RegistryUnavailable

        plan, parent_run_id, locations = find_search(args.storage, args.name)
        if not args.exact:  # said once
            _say_note("select", locations)
        try:
            published = register(
                plan,
                parent_run_id,
                front,
                selection,
                model_name=model_name,
                alias=alias,
                whole_front=args.register_front is not None,
                tracking_uri=locations.tracking_uri,
            )
        except RegistryUnavailable as exc:
            from pareto_search.timeouts import redact_uri

            uri = redact_uri(locations.tracking_uri)
            print(
                f"pareto-search select: error: MLflow at {uri} stopped answering while registering: {exc}; "
                "the same command again completes it (one version, the alias on it)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        version = published.version
        payload["registered"] = {
            **version.to_json(),
            "seconds": round(published.seconds, 3),
            "tracking_uri": published.tracking_uri,
            "ui_link": published.ui_link,
        }
        what = "the whole front" if args.register_front else selection.point
        verb = "registered as" if version.created else "already registered as"
        text += (
            f"\n{what} {verb} '{version.name}' version {version.version}"
            + (f", alias @{version.alias}" if version.alias else "")
            + f" ({published.seconds:.1f} s)"
            + "\nserve it:  pareto-search serve "
            + (f"{version.name}@{version.alias}" if version.alias else f"{version.name}/{version.version}")
            + f" --tracking-uri {published.tracking_uri} --port 5001"
            + f"\nMLflow UI: {published.ui_link}"
        )
    print(json.dumps(payload, indent=2) if args.format == "json" else text)
    return 0


def _cluster_locations(config: SearchConfig) -> None:
    """On a cluster the job's working directory is temporary and per node: a search's storage and tracking
    store must be places every node (and the user, later) can reach."""
    storage = config.storage
    if "://" not in storage and not Path(storage).expanduser().is_absolute():
        raise ConfigError(
            f"`storage` is {storage!r}, a relative path: on a cluster it would land in the job's temporary working "
            "directory; give an absolute path on shared storage (or set PARETO_SEARCH_STORAGE)"
        )
    from pareto_search.locations import resolve_locations

    if resolve_locations(config).tracking.source == "default":
        raise ConfigError(
            "`tracking.uri` is not set: on a cluster the default sqlite file would land in the job's temporary "
            "working directory; set it (or MLFLOW_TRACKING_URI) to the team's MLflow server"
        )


def _cmd_submit(args: argparse.Namespace) -> int:
    from pareto_search.config import load_config
    from pareto_search.search import jobs as client

    config = load_config(args.config)  # every schema error here, in one line, before anything is sent
    if args.name:
        from pareto_search.config import parse_config

        config = parse_config({**config.model_dump(mode="json"), "name": args.name})
    _cluster_locations(config)
    job = client.submit(args.address, Path(args.config), config.name, Path.cwd())
    print(job.job_id)
    print(
        f"submitted search '{job.name}' to {job.address} as job {job.job_id}\n"
        f"travelled:  {job.files} files, {job.bytes / 2**20:.1f} MiB of {Path.cwd()} (not: "
        f"{', '.join(client.EXCLUDES)})\n"
        f"follow it:  pareto-search logs {job.job_id} --follow --address {job.address}\n"
        f"its state:  pareto-search status {job.job_id} --address {job.address}\n"
        f"stop it:    pareto-search stop {job.job_id} --address {job.address}",
        file=sys.stderr,
    )
    return 0


def _job_exit(state: str) -> int:
    from pareto_search.search.jobs import EXIT_BY_STATUS

    return EXIT_BY_STATUS.get(state, 0)


def _unreachable(command: str, exc: Exception) -> int:
    """The job server did not answer: the job's state is unknown, which is neither success nor a usage error."""
    print(f"pareto-search {command}: error: {exc}", file=sys.stderr)
    return EXIT_UNREACHABLE


def _cmd_status(args: argparse.Namespace) -> int:
    from pareto_search.search import jobs as client

    try:
        state = client.status(args.address, args.job_id)
        print(state)
        if state == "FAILED":  # what failed, in the job's own last line (a missing torch says what to fix)
            print(f"job {args.job_id}: {client.last_line(args.address, args.job_id)}", file=sys.stderr)
    except client.JobServerUnreachable as exc:
        return _unreachable("status", exc)
    return _job_exit(state)


def _cmd_logs(args: argparse.Namespace) -> int:
    from pareto_search.search import jobs as client

    try:
        state = client.logs(args.address, args.job_id, args.follow, args.timeout)
    except client.JobServerUnreachable as exc:
        return _unreachable("logs", exc)
    if state is None:
        return 0
    from pareto_search.search.jobs import EXIT_BY_STATUS

    if state not in EXIT_BY_STATUS:  # the log stream ended but the job did not (within SETTLE_S)
        print(f"job {args.job_id}: still {state} after its log stream ended", file=sys.stderr)
        return EXIT_FAILED
    print(f"job {args.job_id}: {state}", file=sys.stderr)
    return _job_exit(state)


def _cmd_stop(args: argparse.Namespace) -> int:
    from pareto_search.search import jobs as client

    try:
        stopped = client.stop(args.address, args.job_id)
    except client.JobServerUnreachable as exc:
        return _unreachable("stop", exc)
    print(f"job {args.job_id}: {'stop requested' if stopped else 'already ended'}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from pareto_search.search import jobs as client

    rows = client.list_jobs(args.address)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    header = ["job_id", "search", "status", "start_time", "message"]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) if rows else len(h) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
    return 0


def _cmd_groups(args: argparse.Namespace) -> int:
    from pareto_search.front.groups import check_budget, search_groups
    from pareto_search.locations import find_search

    budget = check_budget(args.budget)  # refused before the search is looked for, as every bad flag is
    plan, _, _ = find_search(args.storage, args.name)
    report = search_groups(args.name, plan.front_path, plan.config.diagnostics.affinity_every, budget, args.trial)
    print(json.dumps(report.to_json(), indent=2) if args.format == "json" else report.to_text())
    return 0


def _cmd_solvers(args: argparse.Namespace) -> int:
    from pareto_search.solver_catalog import catalog, format_methods, format_text, methods

    presets, infos = methods(), catalog()
    if args.format == "json":
        print(json.dumps([*(p.to_json() for p in presets), *(i.to_json() for i in infos)], indent=2))
    else:
        print(f"{format_methods(presets)}\n\n{format_text(infos)}")
    return 0


def _cmd_problems(args: argparse.Namespace) -> int:
    from trials.names import PROBLEMS  # names only: nothing imports torch or opens a dataset

    if args.format == "json":
        print(json.dumps([{"name": name, "factory": factory} for name, factory in PROBLEMS.items()], indent=2))
    else:
        width = max(map(len, PROBLEMS))
        for name, factory in PROBLEMS.items():
            print(f"{name:<{width}}  {factory}")
        print("\nor a plug-in 'package.module:factory'; each problem's arguments: its factory's docstring")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from pareto_search.serving.serve import StoreUnreachable, serve

    try:
        return serve(args.model, host=args.host, port=args.port, tracking_uri=args.tracking_uri, workers=args.workers)
    except StoreUnreachable as exc:
        print(f"pareto-search serve: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


COMMANDS = {
    "run": _cmd_run,
    "resume": _cmd_resume,
    "front": _cmd_front,
    "compare": _cmd_compare,
    "groups": _cmd_groups,
    "select": _cmd_select,
    "submit": _cmd_submit,
    "status": _cmd_status,
    "logs": _cmd_logs,
    "stop": _cmd_stop,
    "list": _cmd_list,
    "solvers": _cmd_solvers,
    "problems": _cmd_problems,
    "serve": _cmd_serve,
}


def _config_notes_as_one_line(command: str) -> None:
    """A config in an old form that still loads gets one `note:` line on stderr (Python's own warning display is
    two lines with a file and a source line of ours, which says nothing to the user); other warnings as before."""
    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, ConfigDeprecation):
            print(f"pareto-search {command}: note: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    # Plug-in problems ('package.module:factory') are found from the working directory, as with
    # `python -m` (a console script alone would not look there); Ray's workers get the same path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    args = build_parser().parse_args(argv)
    _config_notes_as_one_line(args.command)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"pareto-search {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SearchStopped as exc:
        from pareto_search.search.runner import release_ray

        release_ray()
        print(f"pareto-search {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
