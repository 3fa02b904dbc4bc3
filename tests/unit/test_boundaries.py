"""Import boundaries: the layers of the tree import downwards only, each heavy library has one adapter, the data
plane stays pure PyTorch, and benchmarks never borrow from the test suite."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# library -> the only files (relative to the repository root) allowed to import it
ALLOWED = {
    "ray": {"pareto_search/search"},
    # serving: MLflow's model format, registry and pyfunc are what a served model is made of
    "mlflow": {"pareto_search/tracking", "pareto_search/serving"},
    # selection/mcdm: pymoo's decision making; preferences: Das–Dennis directions
    "pymoo": {"pareto_search/front/pareto.py", "pareto_search/front/selection/mcdm.py", "trials/preferences.py"},
    "moocore": {"pareto_search/front/pareto.py"},
    "matplotlib": {"pareto_search/front/plots.py"},
    "plotly": {"pareto_search/front/plots.py"},
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


# The layers of pareto_search, lowest first. A module may import its own layer and those below, never one above:
# the tree reads as the architecture (docs/architecture.md). Longest prefix wins (pareto_search.front before
# pareto_search).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # what every layer uses: errors, bounded waits, storage paths (local or s3), the terminal
    ("base", ("pareto_search.errors", "pareto_search.timeouts", "pareto_search.storage", "pareto_search.console")),
    ("tracking", ("pareto_search.tracking",)),  # the MLflow adapter
    ("front", ("pareto_search.front",)),  # the Pareto domain: math, the persisted front, compare, plots, selection
    # a search as configured and planned: the schema, where things live, which device
    (
        "plan",
        (
            "pareto_search.config",
            "pareto_search.devices",
            "pareto_search.locations",
            "pareto_search.plan",
            "pareto_search.solver_catalog",
        ),
    ),
    ("runtime", ("pareto_search.search", "pareto_search.serving")),  # Ray Tune and MLflow models at work
    ("entry", ("pareto_search.api", "pareto_search.cli", "pareto_search.__init__")),  # what users call
    ("testing", ("pareto_search.testing",)),  # helpers for tests and benchmarks, over everything
)


def _layer(module: str) -> int | None:
    found = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(found)[1] if found else None


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts if parts[-1] != "__init__" else (*parts[:-1], "__init__"))


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import, at any depth (a lazy import is an arrow too); for
    ``from package import name`` the name counts as a submodule when it is one."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [
                (node.lineno, f"{node.module}.{alias.name}")
                for alias in node.names
                if (ROOT / node.module.replace(".", "/") / f"{alias.name}.py").is_file()
                or (ROOT / node.module.replace(".", "/") / alias.name / "__init__.py").is_file()
            ]
    return found


def test_every_module_of_the_service_has_a_layer() -> None:
    unplaced = [_module_name(p) for p in (ROOT / "pareto_search").rglob("*.py") if _layer(_module_name(p)) is None]
    assert unplaced == [], f"modules outside every layer (add them to LAYERS): {unplaced}"


def test_no_import_runs_up_the_layers() -> None:
    upward = []
    for path in sorted((ROOT / "pareto_search").rglob("*.py")):
        mine = _layer(_module_name(path))
        assert mine is not None
        for line, module in _imported_modules(path):
            theirs = _layer(module) if module.startswith("pareto_search.") else None
            if theirs is not None and theirs > mine:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} ({LAYERS[mine][0]}) imports {module} ({LAYERS[theirs][0]})"
                )
    assert upward == []


def test_the_front_never_imports_the_search_or_ray() -> None:
    """Reading, comparing and selecting from a front works without a Ray installation or a running search."""
    offenders = [
        f"{p.relative_to(ROOT)}: {module}"
        for p in (ROOT / "pareto_search" / "front").rglob("*.py")
        for _, module in _imported_modules(p)
        if module.split(".")[0] == "ray" or module.startswith(("pareto_search.search", "pareto_search.serving"))
    ]
    assert offenders == []


def test_benchmarks_never_import_the_tests() -> None:
    """What benchmarks and tests share lives in pareto_search/testing: a benchmark runs without the test suite."""
    offenders = [
        f"{p.relative_to(ROOT)}: {module}"
        for p in (ROOT / "benchmarks").rglob("*.py")
        for _, module in _imported_modules(p)
        if module.split(".")[0] == "tests"
    ]
    assert offenders == []


def test_the_shipped_code_never_imports_the_tests() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {module}"
        for p in _sources()
        for _, module in _imported_modules(p)
        if module.split(".")[0] == "tests" or (module == "pytest" and "testing" not in p.parts)
    ]
    assert offenders == []


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
        if {"pareto_search", "ray", "mlflow", "tests"} & _imports(p)
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
