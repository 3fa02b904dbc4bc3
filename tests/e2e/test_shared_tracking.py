"""A team's shared tracking server, end to end: `mlflow server --app-name basic-auth` on PostgreSQL with
proxied artifacts in a shared folder, and a real search logging to it (slow: PostgreSQL, MLflow, Ray).

The setup is docs/clusters.md's "Shared tracking" section: runs in PostgreSQL, artifacts under
`--artifacts-destination` (a folder standing for the shared storage), users authenticated by basic-auth, clients
configured only by the standard `MLFLOW_TRACKING_URI` / `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import ray
import sqlalchemy as sa
import torch
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import make_url

from pareto_search.config import parse_config
from pareto_search.plan import make_plan
from pareto_search.search.runner import run_search
from tests.support.mlflow_server import ADMIN_PASSWORD_ENV, ADMIN_USERNAME_ENV, MlflowServer, mlflow_server
from tests.support.postgres import postgres_cluster
from trials.problems import make_problem

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "shared-tracking"
SEARCH = "shared"
EPOCHS = 3
TRIALS = 2
MEMBERS = 2
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway cluster: the runs' database `mlflow`, the auth app's users in `mlflow_auth`."""
    with postgres_cluster(("mlflow", "mlflow_auth")) as url:
        yield url


@pytest.fixture(scope="module")
def shared_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared_artifacts")


@pytest.fixture(scope="module")
def server(postgres_url: str, shared_storage: Path) -> Iterator[MlflowServer]:
    auth_url = make_url(postgres_url).set(database="mlflow_auth").render_as_string(hide_password=False)
    # the admin credentials reach the server through the environment only, never a file
    env = {**os.environ, ADMIN_USERNAME_ENV: "search-admin", ADMIN_PASSWORD_ENV: secrets.token_urlsafe(18)}
    with mlflow_server(postgres_url, shared_storage, auth_url, env=env) as running:
        yield running


def _get(url: str, credentials: tuple[str, str] | None = None, headers: dict[str, str] | None = None) -> int:
    """HTTP status of a GET, with Basic credentials if given."""
    return _request(urllib.request.Request(url, headers=headers or {}), credentials)


def _post(url: str, body: dict[str, Any], credentials: tuple[str, str]) -> int:
    """HTTP status of a JSON POST (what `curl -u user:password -d ...` sends)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    return _request(request, credentials)


def _request(request: urllib.request.Request, credentials: tuple[str, str] | None) -> int:
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_clients_without_valid_credentials_are_refused(server: MlflowServer, monkeypatch) -> None:
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    api = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=10"
    assert _get(api) == 401
    assert _get(api, (server.username, "not-the-password")) == 401
    assert _get(api, ("nobody", server.password)) == 401
    assert _get(api, (server.username, server.password)) == 200
    assert _get(f"{server.url}/health") == 200  # what a load balancer probes stays open
    # a Host header outside --allowed-hosts is refused before authentication (DNS rebinding)
    assert _get(api, (server.username, server.password), {"Host": "mlflow.attacker.example"}) == 403

    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient(server.url).search_experiments()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient(server.url).search_experiments()
    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient(server.url).create_experiment("must-not-exist")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    assert mlflow.MlflowClient(server.url).get_experiment_by_name("must-not-exist") is None


@dataclass(frozen=True)
class SharedSearch:
    parent: Any  # mlflow.entities.Run
    children: list[Any]
    experiment_id: str
    workdir: Path


def _config(tmp_path: Path, tracking_uri: str) -> dict[str, Any]:
    return {
        "name": SEARCH,
        "problem": {"name": "toy2d", "args": {"steps_per_epoch": 20}},
        "reference_point": [1.0, 1.0],
        "epochs": EPOCHS,
        "solvers": [
            {
                "label": "mt2o",
                "solver": "linear",
                "population": {"size": MEMBERS, "transfer": {"eps0": 0.3, "period": 5}},
                "optimizer": {"name": "adam", "lr": {"loguniform": [0.01, 0.05]}},
            }
        ],
        "search": {"algorithm": "random", "num_samples": TRIALS, "max_failures": 0},
        "resources": {"cpus_per_trial": 1},
        "storage": str(tmp_path / "searches"),
        "tracking": {"uri": tracking_uri, "experiment": EXPERIMENT},
    }


@pytest.fixture(scope="module")
def shared_search(server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedSearch]:
    """A real 2-trial search whose only MLflow settings are the server URL and the credential variables."""
    tmp_path = tmp_path_factory.mktemp("shared_search")
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(workdir)  # a local ./mlruns or ./mlflow.db would appear here
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        try:
            run_search(make_plan(parse_config(_config(tmp_path, server.url))))
        finally:
            ray.shutdown()
        client = mlflow.MlflowClient(server.url)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None
        parents = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`pareto_search.search` = '{SEARCH}' and tags.`pareto_search.kind` = 'search'",
        )
        assert len(parents) == 1
        children = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
        )
    yield SharedSearch(parents[0], children, experiment.experiment_id, workdir)


@pytest.fixture
def admin(server: MlflowServer, monkeypatch) -> mlflow.MlflowClient:
    """A client authenticated the way a team member's is: the standard environment variables."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow.MlflowClient(server.url)


def test_search_logs_runs_metrics_and_artifacts_to_the_server(shared_search: SharedSearch, admin) -> None:
    parent, children = shared_search.parent, shared_search.children
    assert parent.info.status == "FINISHED"
    assert len(children) == TRIALS and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["pareto_search.kind"] for c in children} == {"trial"}
    for child in children:  # one point per epoch
        for metric in ("trial_hv", "m0/train_loss_t0", f"m{MEMBERS - 1}/train_loss_t1"):
            history = admin.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), metric
        weights = {a.path for a in admin.list_artifacts(child.info.run_id, "weights")}
        assert weights == {f"weights/member_{k}.pt" for k in range(MEMBERS)}
    assert {"front.json", "front.csv", "config.yaml"} <= {a.path for a in admin.list_artifacts(parent.info.run_id)}
    front = json.loads(
        Path(admin.download_artifacts(parent.info.run_id, "front.json", str(shared_search.workdir / "dl"))).read_text()
    )
    assert front["search"] == SEARCH and front["points"]
    assert {p["trial_id"] for p in front["points"]} <= {c.data.tags["pareto_search.trial_id"] for c in children}


def _stored(shared_storage: Path, run: Any) -> Path:
    """Where the server's artifact proxy keeps a run's artifacts: `mlflow-artifacts:/<exp>/<run>/artifacts`
    resolved under --artifacts-destination."""
    uri = run.info.artifact_uri
    assert uri.startswith("mlflow-artifacts:/"), uri  # proxied: clients never need the storage's credentials
    return shared_storage / uri.removeprefix("mlflow-artifacts:").lstrip("/")


def test_artifacts_land_in_the_shared_storage(
    shared_search: SharedSearch, shared_storage: Path, server: MlflowServer, admin
) -> None:
    parent_dir = _stored(shared_storage, shared_search.parent)
    assert parent_dir.is_relative_to(shared_storage / shared_search.experiment_id)
    downloaded = admin.download_artifacts(shared_search.parent.info.run_id, "front.json", str(shared_search.workdir))
    assert (parent_dir / "front.json").read_bytes() == Path(downloaded).read_bytes()
    model = make_problem("toy2d").make_model()
    for child in shared_search.children:
        for k in range(MEMBERS):
            stored = _stored(shared_storage, child) / "weights" / f"member_{k}.pt"
            model.load_state_dict(torch.load(stored, weights_only=True))
    # nothing fell back to a local store in the working directory
    assert not {"mlruns", "mlartifacts", "mlflow.db"} & {p.name for p in shared_search.workdir.iterdir()}
    # the artifact proxy is behind the same authentication as the tracking API
    artifact = f"{shared_search.experiment_id}/{shared_search.parent.info.run_id}/artifacts/front.json"
    proxy = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{artifact}"
    assert (parent_dir / "front.json").is_file() and _get(proxy) == 401
    assert _get(proxy, (server.username, server.password)) == 200


def test_runs_are_stored_in_postgresql(shared_search: SharedSearch, postgres_url: str, server: MlflowServer) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as db:
            runs = db.execute(
                sa.text(
                    "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                    "WHERE r.experiment_id = :e AND t.key = 'pareto_search.search' AND t.value = :s"
                ),
                {"e": int(shared_search.experiment_id), "s": SEARCH},
            ).all()
            children = db.execute(
                sa.text("SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = :p"),
                {"p": shared_search.parent.info.run_id},
            ).all()
            hv_points = db.execute(
                sa.text("SELECT count(*) FROM metrics WHERE key = 'trial_hv' AND run_uuid = ANY(:runs)"),
                {"runs": [c.info.run_id for c in shared_search.children]},
            ).scalar_one()
    finally:
        engine.dispose()
    assert len(runs) == 1 + TRIALS and {status for _, status in runs} == {"FINISHED"}
    assert {r for (r,) in children} == {c.info.run_id for c in shared_search.children}
    assert hv_points == TRIALS * EPOCHS

    auth = sa.create_engine(make_url(postgres_url).set(database="mlflow_auth"))
    try:
        with auth.connect() as db:
            users = db.execute(sa.text("SELECT username, password_hash, is_admin FROM users")).all()
    finally:
        auth.dispose()
    assert (server.username, True) in [(name, is_admin) for name, _, is_admin in users]
    assert all(server.password not in password_hash for _, password_hash, _ in users)  # only hashes are stored


def test_team_member_reads_the_shared_experiment_and_logs_once_granted_edit(
    shared_search: SharedSearch, server: MlflowServer, monkeypatch
) -> None:
    """`default_permission = READ`: a new member sees every run but cannot log into an experiment another user
    created (the search's, whose creator got MANAGE) until an admin grants EDIT on it."""
    member, member_password = "team-member", secrets.token_urlsafe(18)

    def as_user(username: str, password: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)

    # the admin's REST calls (mlflow.server.auth.client.AuthServiceClient wraps the same; importing it imports
    # the whole server and its deprecation warnings)
    admin = (server.username, server.password)
    new_user = {"username": member, "password": member_password}
    assert _post(f"{server.url}/api/2.0/mlflow/users/create", new_user, admin) == 200
    intruder = {"username": "intruder", "password": secrets.token_urlsafe(18)}
    assert _post(f"{server.url}/api/2.0/mlflow/users/create", intruder, (member, member_password)) == 403
    as_user(member, member_password)
    client = mlflow.MlflowClient(server.url)
    assert client.get_run(shared_search.parent.info.run_id).info.status == "FINISHED"
    with pytest.raises(MlflowException, match=r"403|PERMISSION_DENIED"):
        client.create_run(shared_search.experiment_id)

    grant = {
        "username": member,
        "resource_type": "experiment",
        "resource_id": shared_search.experiment_id,
        "permission": "EDIT",
    }
    assert _post(f"{server.url}/api/3.0/mlflow/users/permissions/grant", grant, admin) == 200
    run = client.create_run(shared_search.experiment_id, tags={"mlflow.user": "claimed-name"})
    client.log_metric(run.info.run_id, "check", 1.0, step=1)
    client.set_terminated(run.info.run_id)
    # a run's user is whatever the client claims, not the authenticated user: no audit trail in `mlflow.user`
    assert run.info.user_id == "claimed-name"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "check")] == [1.0]
    with pytest.raises(MlflowException, match=r"403|PERMISSION_DENIED"):
        client.delete_experiment(shared_search.experiment_id)  # EDIT is not MANAGE
