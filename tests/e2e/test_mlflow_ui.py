"""End to end: what a person sees in the MLflow UI for a search, rendered by headless Chromium.

The content is written the way the service writes it (`pareto_search.tracking.SearchTracker`: a search's
parent run, trial child runs with metrics, `front.json` and a real `front.png` on the parent run) into a
throwaway sqlite store; a real `mlflow server` serves it and Chromium renders the UI's pages (see
`tests/support/browser.py` for why a browser). One store, one server and one browser install serve the whole module.

What MLflow 3.17's UI does with an experiment's view, found by rendering (and asserted below so that an MLflow
upgrade that changes it is noticed): the GenAI view (an "Overview" of traces: "Observability" in the sidebar,
"Token Usage", "Tokens per Trace" charts) or the model-training view (title "Runs - Experiment <id>", the runs
table with "<n> matching runs") is chosen by one global switch, the `workflowType` query parameter, else the
browser's local storage, else GenAI. The experiment tag `mlflow.experimentKind` that the tracker sets is *not*
read for that choice: a plain experiment link opens the GenAI overview with or without the tag, and
`?workflowType=machine_learning` opens the runs table with or without it (`browser.experiment_url`).
"""

from __future__ import annotations

import html
import os
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import mlflow
import pytest
from mlflow import MlflowClient
from packaging.version import Version

from pareto_search.cli import main
from pareto_search.front.global_front import GlobalFront
from pareto_search.testing.stored_search import stored_search
from pareto_search.tracking.client import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND, SearchTracker
from tests.support.browser import ensure_chromium, experiment_url, mlflow_ui, page_title, render_dom, visible_text

pytestmark = pytest.mark.slow

SEARCH_NAME = "ui-demo"
PLAIN_EXPERIMENT_NAME = "plain-untagged"
MODEL_NAME = "ui-demo-model"
POINTS = [(0.12, 0.81), (0.35, 0.40), (0.78, 0.15), (0.70, 0.72)]
ROOT = Path(__file__).resolve().parents[2]

# Strings only the GenAI view shows (its sidebar section), found by rendering an experiment in both views.
# "GenAI", "Model training" (the switch) and "Traces" (a tab in both views) are on every page and distinguish
# nothing.
GENAI_VIEW_MARKERS = ("Observability",)
# What the GenAI overview of an experiment without traces shows below its sidebar once it has rendered: 3.17's
# (empty) trace charts, 3.18's first-trace onboarding.
GENAI_OVERVIEW_CONTENT = (
    ("Token Usage", "Tokens per Trace")
    if Version(mlflow.__version__) < Version("3.18")
    else ("Send your first trace to MLflow in just a minute",)
)
# What the model-training view's runs table shows under it: "<n> matching runs".
RUNS_TABLE_MARKER = "matching run"


@dataclass(frozen=True)
class UiStore:
    """The store the UI serves: ids and names the pages are expected to show."""

    tracking_uri: str
    root: Path
    experiment_id: str
    parent_run_id: str
    front_png: Path
    plain_experiment_id: str
    plain_run_name: str
    model_name: str
    model_version: str
    model_run_id: str  # the run the registered version came from (the selected member's trial)
    model_run_name: str


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> UiStore:
    """A search stored the way the service stores it, its front published and a member selected and
    registered through `pareto-search select --knee --register` (which redraws the parent run's front plot
    with the selection starred)."""
    root = tmp_path_factory.mktemp("mlflow_ui")
    search = stored_search(root, POINTS, name=SEARCH_NAME)
    tracker = SearchTracker(search.tracking_uri, "serving-tests")
    front = GlobalFront.load(search.plan.front_path)
    tracker.log_json(search.parent_run_id, front.to_json(), "front.json")
    cwd = os.getcwd()
    os.chdir(ROOT)  # the plug-in problem is imported from the repository root, as users run it
    try:
        assert main(["select", SEARCH_NAME, "--storage", str(search.storage), "--knee", "--register", MODEL_NAME]) == 0
    finally:
        os.chdir(cwd)
    client = MlflowClient(tracking_uri=search.tracking_uri)
    version = client.get_model_version_by_alias(MODEL_NAME, "champion")

    # The contrast: an experiment made the way any other tool makes one, with no experiment-kind tag.
    plain_id = client.create_experiment(PLAIN_EXPERIMENT_NAME, artifact_location=(root / "plain").as_uri())
    plain_run = client.create_run(plain_id, run_name="plain-run")
    client.set_terminated(plain_run.info.run_id)
    png = root / "front_selected.png"
    tracker.download_artifact(search.parent_run_id, "front.png", root / "downloaded")
    (root / "downloaded" / "front.png").replace(png)
    return UiStore(
        tracking_uri=search.tracking_uri,
        root=root,
        experiment_id=tracker.experiment_id,
        parent_run_id=search.parent_run_id,
        front_png=png,
        plain_experiment_id=plain_id,
        plain_run_name="plain-run",
        model_name=MODEL_NAME,
        model_version=str(version.version),
        model_run_id=version.run_id,
        model_run_name=client.get_run(version.run_id).info.run_name,
    )


@pytest.fixture(scope="module")
def ui(store: UiStore) -> Iterator[str]:
    with mlflow_ui(store.tracking_uri, store.root / "served_artifacts") as base_url:
        yield base_url


def _lines(dom: str) -> list[str]:
    return visible_text(dom).splitlines()


# --------------------------------------------------------------------------------------------------------
# Reusable check
# --------------------------------------------------------------------------------------------------------


def assert_model_version_page_links_run(
    chromium: str,
    base_url: str,
    model_name: str,
    version: str | int,
    run_id: str,
    run_name: str | None = None,
    experiment_id: str | None = None,
) -> str:
    """Render `#/models/<name>/versions/<v>` and assert its "Source Run" links back to run `run_id`.

    Passes when the page has a link into `/runs/<run_id>` (under `/experiments/<experiment_id>` when given)
    and, when `run_name` is given, that link's text is the run's name (what the page shows as "Source Run").
    Returns the rendered DOM for further checks. For reuse by tests of the model registry: a registered front
    or member model should lead a person back to the search that produced it.
    """
    url = f"{base_url.rstrip('/')}/#/models/{quote(model_name, safe='')}/versions/{quote(str(version), safe='')}"
    dom = render_dom(chromium, url, expect=(f"Version {version}", "Source Run", run_id))
    target = f"/runs/{run_id}" if experiment_id is None else f"/experiments/{experiment_id}/runs/{run_id}"
    links = [
        (href, html.unescape(re.sub(r"<[^>]+>", "", inner)).strip())
        for href, inner in re.findall(r'<a\b[^>]*\bhref="([^"]*)"[^>]*>(.*?)</a>', dom, flags=re.S)
        if target in href
    ]
    assert links, f"Model version page {url} has no link into {target}. Visible text: {visible_text(dom)[:3000]!r}"
    if run_name is not None:
        assert any(text == run_name for _, text in links), (
            f"Model version page {url} links into {target} but no link reads {run_name!r}: {links}"
        )
    return dom


# --------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------


def test_search_link_opens_the_runs_table_not_the_genai_view(chromium: str, ui: str, store: UiStore) -> None:
    url = experiment_url(ui, store.experiment_id)
    dom = render_dom(chromium, url, expect=(SEARCH_NAME, RUNS_TABLE_MARKER))
    lines = _lines(dom)
    assert page_title(dom) == f"Runs - Experiment {store.experiment_id} - MLflow"
    assert SEARCH_NAME in lines, f"The search's parent run is not in the runs table of {url}: {lines}"
    assert any(RUNS_TABLE_MARKER in line for line in lines)
    shown = [m for m in GENAI_VIEW_MARKERS if m in lines]
    assert not shown, f"{url} shows the GenAI view ({shown}), not the model-training runs table."


def test_plain_experiment_link_opens_the_genai_view_with_or_without_the_kind_tag(
    chromium: str, ui: str, store: UiStore
) -> None:
    """The contrast that proves the markers above tell the views apart, and what the kind tag does (nothing).

    If this fails on the tagged experiment only, MLflow's UI honours `mlflow.experimentKind` again: links
    then no longer need `?workflowType=machine_learning`, and this test should say so instead.
    """
    client = MlflowClient(tracking_uri=store.tracking_uri)
    assert client.get_experiment(store.experiment_id).tags.get(TAG_EXPERIMENT_KIND) == EXPERIMENT_KIND_TRAINING
    assert TAG_EXPERIMENT_KIND not in client.get_experiment(store.plain_experiment_id).tags

    for experiment_id in (store.plain_experiment_id, store.experiment_id):
        url = experiment_url(ui, experiment_id, workflow=None)
        dom = render_dom(chromium, url, expect=GENAI_VIEW_MARKERS + GENAI_OVERVIEW_CONTENT)
        lines = _lines(dom)
        assert page_title(dom) == f"Overview - Experiment {experiment_id} - MLflow"
        assert all(m in lines for m in GENAI_VIEW_MARKERS + GENAI_OVERVIEW_CONTENT), f"{url} is not the GenAI overview"
        assert not any(RUNS_TABLE_MARKER in line for line in lines)

    # The same untagged experiment in the model-training view: the switch, not the tag, picks the view.
    url = experiment_url(ui, store.plain_experiment_id)
    lines = _lines(render_dom(chromium, url, expect=(store.plain_run_name, RUNS_TABLE_MARKER)))
    assert store.plain_run_name in lines
    assert not [m for m in GENAI_VIEW_MARKERS if m in lines]


def test_search_run_artifacts_page_lists_and_shows_the_front(chromium: str, ui: str, store: UiStore) -> None:
    run_page = f"{ui}/#/experiments/{store.experiment_id}/runs/{store.parent_run_id}/artifacts"
    lines = _lines(render_dom(chromium, run_page, expect=("front.png", "front.json")))
    for name in ("front.png", "front.html", "front.json", "selection.json", "config.yaml"):
        assert name in lines, f"The artifacts page {run_page} does not list {name}: {lines}"

    # Opening front.png previews the image: the UI fetched its bytes through the server into a blob URL.
    dom = render_dom(chromium, f"{run_page}/front.png", expect=('alt="front.png"',))
    image = re.search(r'<img\b[^>]*\balt="front\.png"[^>]*>', dom)
    assert image is not None and 'src="blob:' in image.group(0), f"No previewed front.png image: {image}"

    # The server hands out the exact bytes of the plot `select` drew (the endpoint the UI's preview reads);
    # that the plot stars the selected point is tested in test_plots.py.
    query = urlencode({"path": "front.png", "run_uuid": store.parent_run_id})
    with urllib.request.urlopen(f"{ui}/get-artifact?{query}", timeout=10) as response:
        assert response.read() == store.front_png.read_bytes()


def test_registered_version_page_links_to_the_members_trial_run(chromium: str, ui: str, store: UiStore) -> None:
    assert store.model_run_name == "trial_00001"  # the knee of POINTS
    assert_model_version_page_links_run(
        chromium,
        ui,
        store.model_name,
        store.model_version,
        store.model_run_id,
        run_name=store.model_run_name,
        experiment_id=store.experiment_id,
    )
