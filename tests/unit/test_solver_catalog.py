"""The solver catalog and `pareto-search solvers`: every registered solver, its defaults, its paper."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from pareto_search.cli import main
from pareto_search.solver_catalog import catalog
from trials.solvers import SOLVERS


def test_catalog_lists_every_registered_solver_with_its_defaults() -> None:
    infos = {info.name: info for info in catalog()}
    assert set(infos) == set(SOLVERS)
    for name, cls in SOLVERS.items():
        info = infos[name]
        assert info.paper == cls.paper and info.paper.strip()
        assert info.implementation == cls.implementation
        defaults = cls.Params()  # every Params must be constructible from its defaults
        listed = {h.name: h.default for h in info.hyperparameters}
        assert listed == {f.name: getattr(defaults, f.name) for f in dataclasses.fields(cls.Params)}
        assert all(h.type for h in info.hyperparameters)


def test_catalog_says_which_methods_wrap_torchjd() -> None:
    infos = {info.name: info for info in catalog()}
    assert infos["linear"].implementation == "ours"
    assert infos["epo"].implementation == "ours" and infos["pmtl"].implementation == "ours"
    for name in ("upgrad", "imtl_g", "nash_mtl"):
        assert re.fullmatch(r"torchjd \d+\.\d+\.\d+", infos[name].implementation)


def test_catalog_renders_literal_and_optional_types() -> None:
    types = {h.name: h.type for h in {i.name: i for i in catalog()}["tchebycheff"].hyperparameters}
    assert types == {"margin": "float", "ideal": "tuple[float, ...] | None"}


def test_solvers_command_prints_every_solver(capsys) -> None:
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    for name in SOLVERS:
        assert re.search(rf"^{name}: ", out, re.M), name
    assert "    eps = 0.0001  (float)" in out  # epo's default with its type
    assert out.count("    implementation: ") == len(SOLVERS)


def test_solvers_command_json(capsys) -> None:
    assert main(["solvers", "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    listed = {entry["name"]: entry for entry in entries if entry["kind"] == "solver"}
    assert set(listed) == set(SOLVERS)
    assert [e["name"] for e in entries if e["kind"] == "method"] == ["mt2o", "psl"]
    assert {"name": "init_steps", "type": "int", "default": 100} in listed["pmtl"]["hyperparameters"]
    assert listed["tchebycheff"]["hyperparameters"][1]["default"] is None
    assert listed["upgrad"]["implementation"].startswith("torchjd ")


def test_solvers_command_refuses_an_unknown_format(capsys) -> None:
    with pytest.raises(SystemExit) as info:  # argparse's usage error, one line, exit code 2
        main(["solvers", "--format", "xml"])
    assert info.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
