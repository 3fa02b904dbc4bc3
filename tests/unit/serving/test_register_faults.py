"""`select --register` refusals and faults: names MLflow would refuse and flags that would do nothing are one
line before anything is written; a registration killed at any step, or cut by its tracking server going away,
ends (after the same command again) with one version and the alias on it, nothing half-written."""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
import textwrap
from contextlib import ExitStack
from pathlib import Path

import mlflow
import pytest
from mlflow.entities.logged_model_status import LoggedModelStatus

from pareto_search.cli import main
from pareto_search.serving.registry import TAG_IDENTITY
from pareto_search.testing.processes import free_port
from pareto_search.testing.stored_search import stored_search
from tests.support.mlflow_server import ADMIN_PASSWORD_ENV, ADMIN_USERNAME_ENV, mlflow_server

ROOT = Path(__file__).resolve().parents[3]
VALUES = [(0.2, 1.5), (0.5, 0.5), (1.5, 0.2)]  # the knee is trial_00001/0


def _select(search, *args: str) -> list[str]:
    return ["select", search.plan.name, "--storage", str(search.storage), "--knee", *args]


def _client(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(uri, registry_uri=uri)


@pytest.fixture(scope="module")
def _shared(tmp_path_factory):
    return stored_search(tmp_path_factory.mktemp("names"), VALUES)


@pytest.fixture
def readonly(_shared, monkeypatch):
    monkeypatch.chdir(ROOT)  # the plug-in problem is imported from the repository root
    return _shared


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--register", ""], "--register: a model name must be non-empty and have no quotes, found ''"),
        (["--register-front", " "], "--register-front: a model name must be non-empty and have no quotes, found ' '"),
        (["--alias", "prod"], "--alias 'prod' goes with --register or --register-front"),
        (["--register", "a/b"], "--register: the registry refuses the model name 'a/b': a name cannot contain"),
        (["--register-front", "x:y"], "--register-front: the registry refuses the model name 'x:y'"),
        (["--register", "m" * 300], "--register: a model name has at most 256 characters"),
        (["--register", "m", "--alias", "bad alias!"], "--alias: the registry refuses the alias 'bad alias!'"),
        (["--register", "m", "--alias", "latest"], "refuses the alias 'latest': 'latest' and version names"),
        (["--register", "m", "--alias", "v2"], "--alias: the registry refuses the alias 'v2'"),
        (["--register", "m", "--alias", ""], "--alias: the registry refuses the alias '': an alias is"),
    ],
    ids=["empty name", "blank front name", "alias alone", "slash", "colon", "too long", "bad alias", "latest",
         "version alias", "empty alias"],
)  # fmt: skip
def test_names_mlflow_refuses_and_flags_that_do_nothing_are_one_line(readonly, capsys, args, message) -> None:
    client = _client(readonly.tracking_uri)
    before = {a.path for a in client.list_artifacts(readonly.parent_run_id)}
    assert main(_select(readonly, *args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert client.search_registered_models() == []  # nothing registered, no logged model, the run untouched
    assert client.search_logged_models([client.get_experiment_by_name("serving-tests").experiment_id]) == []
    assert {a.path for a in client.list_artifacts(readonly.parent_run_id)} == before


# Names and aliases on both sides of each rule: check_names must refuse exactly what a real registry refuses
# (the rules are written in registry.py, not imported from MLflow's private helpers, which it renames).
NAMES = ["m", "a/b", "x:y", "a/../b", "./m", "..", "m" * 256, "Model-1.2 final", "modèle"]
ALIASES = ["champion", "a_b-c", "bad alias!", "latest", "LATEST", "v2", "V10", "v2a", "x" * 255, "x" * 256, "été", ""]


def test_the_name_and_alias_rules_agree_with_a_real_registry(tmp_path) -> None:
    from pareto_search.errors import ConfigError
    from pareto_search.serving.registry import check_names

    client = _client(f"sqlite:///{tmp_path / 'registry.db'}")
    version_of: dict[str, str] = {}
    for name in NAMES:
        try:
            check_names("--register", name, "champion")
            ours = True
        except ConfigError:
            ours = False
        try:
            client.create_registered_model(name)
            version_of[name] = client.create_model_version(name, str(tmp_path), run_id=None).version
            theirs = True
        except mlflow.exceptions.MlflowException:
            theirs = False
        assert ours == theirs, name
    for alias in ALIASES:
        try:
            check_names("--register", "m", alias)
            ours = True
        except ConfigError:
            ours = False
        try:
            client.set_registered_model_alias("m", alias, version_of["m"])
            theirs = True
        except mlflow.exceptions.MlflowException:
            theirs = False
        assert ours == theirs, alias


# Runs `pareto-search` with MlflowClient.<method> replaced by a SIGKILL of the process (after the real call when
# `after` is given): the registration dies exactly there, as it would from `kill -9` or a lost machine.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from mlflow import MlflowClient
    method, when = sys.argv[1], sys.argv[2]
    real = getattr(MlflowClient, method)
    def killed(self, *args, **kwargs):
        if when == "after":
            real(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(MlflowClient, method, killed)
    from pareto_search.cli import main
    sys.exit(main(sys.argv[3:]))
    """
)


def _killed_at(tmp_path: Path, search, method: str, when: str) -> None:
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    done = subprocess.run(
        [sys.executable, str(script), method, when, *_select(search, "--register", "m")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr[-3000:]  # the fault happened: killed there, not finished


def _logged_models(client: mlflow.MlflowClient) -> list:
    experiment = client.get_experiment_by_name("serving-tests").experiment_id
    return [m for m in client.search_logged_models([experiment]) if m.tags.get(TAG_IDENTITY)]


def test_a_registration_killed_at_each_step_and_repeated_ends_with_one_version_and_its_alias(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(ROOT)
    search = stored_search(tmp_path, VALUES)
    client = _client(search.tracking_uri)

    _killed_at(tmp_path, search, "log_model_artifacts", "after")  # files uploaded, the logged model unfinished
    assert client.search_registered_models() == []
    assert [m.status for m in _logged_models(client)] == [LoggedModelStatus.PENDING]

    _killed_at(tmp_path, search, "create_model_version", "before")  # a finished logged model, no version yet
    assert client.search_model_versions("name = 'm'") == []
    statuses = sorted(str(m.status) for m in _logged_models(client))
    assert statuses == [str(LoggedModelStatus.FAILED), str(LoggedModelStatus.READY)]  # the unfinished one marked

    _killed_at(tmp_path, search, "set_registered_model_alias", "before")  # the version, not its alias
    versions = client.search_model_versions("name = 'm'")
    assert len(versions) == 1 and not client.get_registered_model("m").aliases
    assert len(_logged_models(client)) == 2  # the finished logged model was used again, not uploaded again

    assert main(_select(search, "--register", "m", "--format", "json")) == 0
    registered = json.loads(capsys.readouterr().out)["registered"]
    assert registered["version"] == "1" and registered["created"] is False and registered["alias"] == "champion"
    assert len(client.search_model_versions("name = 'm'")) == 1
    version = client.get_model_version_by_alias("m", "champion")
    assert str(version.version) == "1" and version.tags["pareto_search.point"] == "trial_00001/0"
    ready = [m for m in _logged_models(client) if m.status == LoggedModelStatus.READY]
    assert [m.artifact_location for m in ready] == [version.source]  # the version serves the finished upload


def test_a_tracking_server_gone_mid_registration_is_one_line_and_the_repeat_completes_it(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(ROOT)
    search = stored_search(tmp_path, VALUES)
    password = secrets.token_urlsafe(18)
    for name, value in {
        ADMIN_USERNAME_ENV: "admin",
        ADMIN_PASSWORD_ENV: password,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": password,
        # MLflow's retries, short for the test (the command's own default rides through ~1 min per request)
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stores = {
        "backend_store_uri": search.tracking_uri,  # the stored search's own store, now behind a server
        "artifacts_destination": tmp_path / "served-artifacts",
        "auth_database_uri": f"sqlite:///{tmp_path}/auth.db",
        "port": port,
        "workers": 1,
    }
    plan_file = search.plan.files / "search.json"
    plan = json.loads(plan_file.read_text())
    plan["config"]["tracking"]["uri"] = url
    plan["locations"] = {"tracking": {"source": "explicit", "uri": url}}  # what every command reads the store from
    plan_file.write_text(json.dumps(plan))

    server = ExitStack()
    server.enter_context(mlflow_server(**stores))
    real = mlflow.MlflowClient.create_model_version

    def server_goes_away(self, *args, **kwargs):
        server.close()  # the server stops between the upload and the version
        return real(self, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "create_model_version", server_goes_away)
    capsys.readouterr()  # the stored search's own set-up output
    # The command sets MLflow's log level before it imports mlflow; this process imported it already.
    mlflow_logger = logging.getLogger("mlflow")
    monkeypatch.setattr(mlflow_logger, "level", mlflow_logger.level)  # restored after the test
    mlflow_logger.setLevel(logging.WARNING)
    try:
        code = main(_select(search, "--register", "m"))
        assert not _answers(url)  # the fault happened: the server is gone
        err = capsys.readouterr().err
        assert code == 1, err
        assert err.count("\n") == 1, repr(err)
        assert f"MLflow at {url} stopped answering while registering: no version of 'm' was created" in err
        assert "([Errno 111] Connection refused); the same command again completes it" in err
    finally:
        server.close()
    monkeypatch.setattr(mlflow.MlflowClient, "create_model_version", real)
    with mlflow_server(**stores):
        client = _client(url)
        assert client.search_model_versions("name = 'm'") == []  # nothing half-written
        assert main(_select(search, "--register", "m", "--format", "json")) == 0
        assert json.loads(capsys.readouterr().out)["registered"]["version"] == "1"
        assert len(client.search_model_versions("name = 'm'")) == 1
        assert str(client.get_model_version_by_alias("m", "champion").version) == "1"
        assert len(_logged_models(client)) == 1  # the upload before the outage was used, not repeated


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return True
    except OSError:
        return False
