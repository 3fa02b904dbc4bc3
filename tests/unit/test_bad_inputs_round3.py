"""Inputs that would do nothing or could not fit, each refused in one line before anything starts: a YAML key
given twice (the later one would silently win), a population or a model too large for a trial's memory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pareto_search.cli import main
from pareto_search.config import ConfigError, load_config
from pareto_search.plan import MAX_TRIAL_MEMORY_BYTES, make_plan

HEAD = "name: dup\nproblem: {name: toy2d}\nreference_point: [1.0, 1.0]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            HEAD + "solvers:\n  - solver: linear\nepochs: 1\nsolvers:\n  - solver: tchebycheff\n",
            "key `solvers` is given twice (lines 4 and 7)",
        ),
        (
            HEAD + "solvers:\n  - solver: linear\n    optimizer:\n      lr: 0.01\n      name: adam\n      lr: 0.1\n",
            "key `solvers[0].optimizer.lr` is given twice (lines 7 and 9)",
        ),
        (HEAD + "epochs: 1\nsolvers: [{solver: linear}]\nepochs: 2\n", "key `epochs` is given twice (lines 4 and 6)"),
        (  # a flow mapping, and keys that are the same number written differently
            HEAD + "solvers: [{solver: linear, population: {size: 2, size: 3}}]\n",
            "key `solvers[0].population.size` is given twice (lines 4 and 4)",
        ),
        (HEAD + "seed: 1\nseed: 0x1\nsolvers: [{solver: linear}]\n", "key `seed` is given twice (lines 4 and 5)"),
    ],
    ids=["top-level block", "nested", "scalar", "flow mapping", "same value written differently"],
)
def test_a_key_given_twice_is_refused_naming_the_key_and_lines(tmp_path, capsys, text, message) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    assert yaml.safe_load(text) is not None  # the fault: plain YAML takes it silently, the later value winning
    assert main(["run", str(path), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "give it once" in err, err
    assert not (tmp_path / "searches").exists()


def test_merge_keys_may_still_be_overridden(tmp_path) -> None:
    """`<<: *defaults` then a key of its own is YAML's way of overriding, not a duplicate."""
    path = tmp_path / "merge.yaml"
    path.write_text(
        HEAD + "solvers:\n  - &base {solver: linear, optimizer: {lr: 0.01}}\n  - <<: *base\n    label: second\n"
        "    optimizer: {lr: 0.1}\n"
    )
    config = load_config(path)
    assert [s.optimizer.lr for s in config.solvers] == [0.01, 0.1]


def _config(tmp_path: Path, **solver: object) -> Path:
    path = tmp_path / "pop.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "pop", "problem": {"name": "toy2d"}, "reference_point": [1.0, 1.0], "solvers": [solver]}
        )
    )
    return path


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        (
            {"solver": "linear", "population": {"size": 1_000_000}},
            r"`solvers\[0\].population.size` must be at most ([\d,]+) for problem 'toy2d' \(a trial holds its members "
            r"in memory: 1,000,000 x 20 parameters x 4 bytes x 4 \(weights, gradients, 2 adam states\) .* = "
            r"[\d.]+ GiB, the most is 16.0 GiB\), found 1,000,000",
        ),
        (  # a sampled size: its largest option decides
            {"solver": "linear", "population": {"size": {"choice": [2, 200_000]}}, "optimizer": {"name": "sgd"}},
            r"`solvers\[0\].population.size` must be at most [\d,]+ .*x 2 \(weights, gradients\).*found 200,000",
        ),
    ],
    ids=["a million members", "a choice of sizes"],
)
def test_a_population_that_cannot_fit_is_refused_with_the_memory_it_needs(tmp_path, capsys, solver, message) -> None:
    path = _config(tmp_path, **solver)
    assert main(["run", str(path), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "searches").exists()


def test_the_largest_population_allowed_is_accepted_and_one_more_is_not(tmp_path) -> None:
    path = _config(tmp_path, solver="linear", population={"size": 1_000_000})
    with pytest.raises(ConfigError) as info:
        make_plan(load_config(path))
    most = int(re.search(r"at most ([\d,]+)", str(info.value)).group(1).replace(",", ""))
    assert 1_000 < most < 1_000_000
    need = most * (20 * 4 * 4 + 200 * 1024) + 8 * most * most
    assert need <= MAX_TRIAL_MEMORY_BYTES < need + (20 * 4 * 4 + 200 * 1024) + 8 * (2 * most + 1)
    with pytest.raises(ConfigError, match=f"found {most + 1:,}"):
        make_plan(load_config(_config(tmp_path, solver="linear", population={"size": most + 1})))


def test_a_model_too_large_for_one_trial_is_refused_naming_the_problem_args(tmp_path, capsys) -> None:
    path = tmp_path / "big.yaml"
    config = {
        "name": "big",
        "problem": {"name": "related3", "args": {"hidden": 10**9}},
        "solvers": [{"solver": "linear"}],
    }
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "`problem.args`: one model of problem 'related3' has 10,000,000,007 parameters" in err
    assert "the most is 16.0 GiB), found {'hidden': 1000000000}" in err


@pytest.mark.parametrize(
    ("population", "why"),
    [({"psl": {}}, "0 with population.psl"), ({"placement": "actors"}, "0 with population.placement actors")],
    ids=["conditioned model", "members on actors"],
)
def test_an_affinity_no_trial_could_measure_is_refused_before_anything_starts(tmp_path, capsys, population, why):
    path = tmp_path / "affinity.yaml"
    config = {
        "name": "affinity",
        "problem": {"name": "toy2d"},
        "reference_point": [1.0, 1.0],
        "diagnostics": {"affinity_every": 5},
        "solvers": [{"solver": "linear", "population": population}],
    }
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"`diagnostics.affinity_every` must be {why}" in err and "found 5 (in solvers[0])" in err, err
    assert not (tmp_path / "searches").exists()
