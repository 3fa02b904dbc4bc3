"""Import boundaries: each heavy library has one adapter; the data plane stays pure PyTorch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# library -> the only files (relative to the repository root) allowed to import it
ALLOWED = {
    "ray": {"pareto_search/search", "pareto_search/scheduler.py", "pareto_search/jobs"},
    # serving: MLflow's model format, registry and pyfunc are what a served model is made of
    "mlflow": {"pareto_search/tracking.py", "pareto_search/serving"},
    # selection/mcdm: pymoo's decision making; preferences: Das–Dennis directions
    "pymoo": {"pareto_search/pareto.py", "pareto_search/selection/mcdm.py", "trials/preferences.py"},
    "moocore": {"pareto_search/pareto.py"},
    "matplotlib": {"pareto_search/plots.py"},
    "plotly": {"pareto_search/plots.py"},
    "optuna": {"pareto_search/search"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sources() -> list[Path]:
    return sorted(p for package in ("pareto_search", "trials") for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("library", sorted(ALLOWED))
def test_only_the_adapter_imports(library: str) -> None:
    offenders = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        if library in _imports(path) and not any(
            relative == allowed or relative.startswith(allowed + "/") for allowed in ALLOWED[library]
        ):
            offenders.append(relative)
    assert offenders == [], f"{library} imported outside its adapter: {offenders}"


def test_trials_never_imports_the_control_plane() -> None:
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "trials").rglob("*.py")
        if {"pareto_search", "ray", "mlflow"} & _imports(p)
    ]
    assert offenders == []


def test_model_files_are_loaded_weights_only() -> None:
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                keywords = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in keywords and getattr(keywords["weights_only"], "value", None) is True, (
                    f"{path.relative_to(ROOT)}:{node.lineno} calls torch.load without weights_only=True"
                )


def _from_imports(path: Path) -> list[tuple[str, set[str]]]:
    """(module, names) of every absolute `from module import names` in `path`, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, {alias.name for alias in node.names}))
    return found


def test_errors_are_imported_from_where_they_are_defined() -> None:
    """ConfigError and SearchStopped live in pareto_search/errors.py: importing them through config.py (which
    re-exports ConfigError for old callers) ties a module to the whole schema for one exception class."""
    offenders = [
        f"{p.relative_to(ROOT)}: from {module} import ..."
        for p in _sources()
        for module, names in _from_imports(p)
        if module.startswith("pareto_search")
        and module != "pareto_search.errors"
        and names & {"ConfigError", "SearchStopped"}
    ]
    assert offenders == []


def test_the_api_is_a_layer_under_the_cli() -> None:
    """The CLI is a thin layer over the Python API, never the other way round (the API imports no cli)."""
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "pareto_search").rglob("*.py")
        if p.name != "cli.py" and any(m == "pareto_search.cli" for m, _ in _from_imports(p))
    ]
    assert offenders == []


def test_importing_the_package_loads_no_heavy_library() -> None:
    """`import pareto_search` (the API) and `pareto-search --help` stay fast: torch, Ray, MLflow and pymoo load
    only in the functions that use them."""
    import subprocess
    import sys

    code = (
        "import sys, pareto_search, pareto_search.cli; "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'pymoo', 'optuna') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
