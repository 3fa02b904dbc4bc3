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
