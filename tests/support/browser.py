"""Helpers for end-to-end tests of what a person sees in the MLflow UI: a real server, a real headless browser.

Why a browser at all: the MLflow UI is a React single-page app. Its HTML page is an empty shell
(`<div id="root"></div>`); which view an experiment opens in, which artifacts a run lists and where a model
version links to are decided by JavaScript in the browser from REST answers. Only a rendered DOM shows them.

Why Debian's `chromium` driven from the command line (`--headless --dump-dom`) rather than a Python browser
driver: it needs no extra Python package and no browser download from the internet (this project's machines
reach package registries only), and `--virtual-time-budget` lets Chromium run the app's timers and requests to
a quiet state before the DOM is dumped, without a WebDriver or DevTools client.

Every process started here is started in a session of its own and stopped by its process-group id (the pid of
the process we started), with bounded waits: an MLflow server forks uvicorn workers and Chromium forks
renderers, and none of them may outlive a test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

from pareto_search.testing.processes import free_port, stop_process_group, tail
from tests.support.machine_lock import machine_lock

__all__ = [
    "CHROMIUM_PATH",
    "PageNotRendered",
    "ensure_chromium",
    "experiment_url",
    "free_port",
    "mlflow_ui",
    "page_title",
    "render_dom",
    "visible_text",
]

CHROMIUM_PATH = "/usr/bin/chromium"  # Debian's package `chromium` (a wrapper script around the real binary)
APT_TIMEOUT_S = 600
SERVER_START_TIMEOUT_S = 60.0
# Chromium's own flags for a quiet, reproducible headless run: no first-run UI, no sync, no component or
# network chatter (nothing outside 127.0.0.1 is reachable anyway), no GPU, no sandbox (tests run as root).
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--window-size=1440,1000",  # a desktop width: the UI's sidebar and table columns are laid out as a person sees
)
_LOG_TAIL_CHARS = 4000


class PageNotRendered(AssertionError):
    """Chromium returned a DOM without the strings the caller expected, after every retry."""


# --------------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------
# Chromium
# --------------------------------------------------------------------------------------------------------


def ensure_chromium(timeout_s: int = APT_TIMEOUT_S) -> str:
    """Path of Debian's headless-capable Chromium, installed with apt-get first if it is missing.

    The test installs its own browser so that a fresh CI machine needs no setup step; Debian's package comes
    from the distribution's mirror, the one place (with PyPI) these machines can download from. Each apt-get
    command is bounded by `timeout_s`; a failure raises naming the command and showing its output's end.
    """
    if os.access(CHROMIUM_PATH, os.X_OK):
        return CHROMIUM_PATH
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"Chromium is not installed at {CHROMIUM_PATH} and there is no apt-get to install it.")
    if os.geteuid() != 0:
        raise RuntimeError(
            f"Chromium is not installed at {CHROMIUM_PATH}; installing it needs root: "
            "`apt-get update && apt-get install -y chromium`."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait (bounded) for another apt/dpkg run, e.g. a second test process installing at the same moment.
    lock_wait = f"DPkg::Lock::Timeout={timeout_s // 2}"
    with machine_lock("apt", 3 * timeout_s):  # another worker may be installing (this very package, too)
        if not os.access(CHROMIUM_PATH, os.X_OK):
            _apt_install_chromium(env, lock_wait, timeout_s)
    if not os.access(CHROMIUM_PATH, os.X_OK):
        raise RuntimeError(f"`apt-get install -y chromium` succeeded but {CHROMIUM_PATH} is not an executable.")
    return CHROMIUM_PATH


def _apt_install_chromium(env: dict[str, str], lock_wait: str, timeout_s: int) -> None:
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "-o", lock_wait, "chromium"],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"`{' '.join(command)}` did not finish within {timeout_s} s.") from e
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed with exit status {done.returncode}:\n"
                f"{(done.stdout + done.stderr)[-_LOG_TAIL_CHARS:]}"
            )


def _run_chromium(chromium: str, url: str, budget_ms: int, timeout_s: float) -> tuple[int, str, str]:
    """One headless Chromium run with a fresh profile: (exit status, DOM, stderr)."""
    with tempfile.TemporaryDirectory(prefix="chromium_profile_") as profile:
        command = [
            chromium,
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={int(budget_ms)}",
            "--dump-dom",
            url,
        ]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_process_group(proc, timeout_s=5)
            out, err = proc.communicate()
            return (
                -1,
                out.decode("utf-8", "replace"),
                err.decode("utf-8", "replace") + f"\n<timed out after {timeout_s} s>",
            )
        finally:
            # Renderer or zygote processes Chromium left behind (none normally): same group, ours to end.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _app_rendered(dom: str) -> bool:
    """Whether React mounted anything: the served shell has an empty `<div id="root" ...></div>`."""
    match = re.search(r'<div id="root"[^>]*>\s*(\S{0,6})', dom)
    return bool(match and match.group(1) and not match.group(1).startswith("</div"))


def render_dom(
    chromium: str,
    url: str,
    budget_ms: int = 15000,
    *,
    expect: Sequence[str] = (),
    attempts: int = 3,
) -> str:
    """The DOM of `url` after the page's scripts ran, from headless Chromium (`--dump-dom`).

    `--virtual-time-budget` lets the single-page app fetch its data and render before the dump; a slow
    machine can still dump too early (the empty shell, or a table still loading), so the page is rendered
    again with twice the budget, at most `attempts` times, until every string in `expect` is in the DOM (or,
    with no `expect`, until the app mounted at all). Raises `PageNotRendered` with the page's visible text
    and Chromium's stderr otherwise. Each run uses a fresh profile, so nothing (cookies, the UI's local
    storage such as MLflow's GenAI / model-training switch) carries over between renders or from a person.
    """
    budget = int(budget_ms)
    dom, err, status = "", "", 0
    for _ in range(max(1, attempts)):
        # Virtual time runs ahead of the wall clock but stops while requests are in flight: bound the real time.
        status, dom, err = _run_chromium(chromium, url, budget, timeout_s=60 + 2 * budget / 1000)
        if status == 0 and _app_rendered(dom) and all(s in dom for s in expect):
            return dom
        budget *= 2
    missing = [s for s in expect if s not in dom]
    raise PageNotRendered(
        f"Chromium did not render {url} with {list(expect)} (missing {missing}) after {attempts} attempts "
        f"(last exit status {status}, app mounted: {_app_rendered(dom)}).\n"
        f"Visible text: {visible_text(dom)[:_LOG_TAIL_CHARS]!r}\nChromium stderr tail:\n{err[-_LOG_TAIL_CHARS:]}"
    )


class _TextExtractor(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "noscript", "svg", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skip_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skip_depth:
            self._skip_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip_depth and data.strip():
            self.parts.append(data.strip())


def visible_text(dom: str) -> str:
    """The DOM's text nodes, one per line, without scripts, styles, `<noscript>`, SVG and the title.

    Assertions that something is *absent* from a page should look here rather than in the raw DOM, where
    the same word may sit in an attribute, a class name or an inline script a person never sees.
    """
    parser = _TextExtractor()
    parser.feed(dom)
    parser.close()
    return "\n".join(parser.parts)


def page_title(dom: str) -> str:
    """The document's `<title>` (the UI sets it per view, e.g. "Runs - Experiment 1 - MLflow")."""
    head = dom.split("</head>", 1)[0]
    match = re.search(r"<title>(.*?)</title>", head, flags=re.S)
    return match.group(1).strip() if match else ""


# --------------------------------------------------------------------------------------------------------
# MLflow server
# --------------------------------------------------------------------------------------------------------


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def mlflow_ui(
    backend_store_uri: str,
    artifacts_dir: str | os.PathLike[str] | None = None,
    *,
    start_timeout_s: float = SERVER_START_TIMEOUT_S,
) -> Iterator[str]:
    """Run `mlflow server` (this interpreter's MLflow) on 127.0.0.1 and a free port; yields its base URL.

    `backend_store_uri` should be absolute (e.g. `sqlite:////abs/path/mlflow.db`): the server runs in a
    temporary working directory so that nothing it creates (`./mlartifacts`) lands in the repository.
    Runs whose artifact location is an absolute `file://` path (what `MlflowClient` records for a sqlite
    store) are read from there directly; `artifacts_dir` (default: a temporary folder) is where the server
    stores artifacts of runs created *through* it (`--artifacts-destination` for `mlflow-artifacts:/` URIs).

    The server's job runner (huey consumers for GenAI jobs) and telemetry are switched off: a test needs the
    UI and REST API only. Waits at most `start_timeout_s` for `GET /health`; the server's output goes to a
    temporary log whose end is in every error. The server and all its workers are stopped on exit.
    """
    with tempfile.TemporaryDirectory(prefix="mlflow_ui_") as workdir:
        work = Path(workdir)
        log_path = work / "server.log"
        artifacts = Path(artifacts_dir) if artifacts_dir is not None else work / "mlartifacts"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_store_uri,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + start_timeout_s
            while not _answers(f"{base_url}/health"):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"`mlflow server` exited with status {proc.returncode} before answering on {base_url}.\n"
                        f"Command: {' '.join(command)}\nLog tail:\n{tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"`mlflow server` did not answer GET {base_url}/health within {start_timeout_s} s.\n"
                        f"Command: {' '.join(command)}\nLog tail:\n{tail(log_path)}"
                    )
                time.sleep(0.25)
            yield base_url
        finally:
            stop_process_group(proc)


def experiment_url(base_url: str, experiment_id: str, *, workflow: str | None = "machine_learning") -> str:
    """The UI link to an experiment, in the model-training view by default.

    MLflow 3.17's UI picks the GenAI or the model-training view of *every* experiment from one global switch
    (the `workflowType` query parameter, else the browser's local storage, else "genai"); the experiment's
    `mlflow.experimentKind` tag is not read for this. A link that should open on the runs table therefore
    carries `?workflowType=machine_learning`; `workflow=None` gives the plain link a person would type.
    """
    url = f"{base_url.rstrip('/')}/#/experiments/{quote(str(experiment_id), safe='')}"
    return f"{url}?workflowType={quote(workflow, safe='')}" if workflow else url
