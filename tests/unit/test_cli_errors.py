"""Bad configs and CLI uses: each refused in one line naming the field, before Ray starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pareto_search.cli import main

GOOD: dict[str, Any] = {
    "name": "bad",
    "problem": {"name": "toy2d"},
    "reference_point": [1.0, 1.0],
    "epochs": 2,
    "solvers": [{"solver": "linear", "optimizer": {"lr": 0.01}}],
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


CASES: list[tuple[str, Any, str]] = [
    ("unknown top-level key", _with(epoch=3), r"unknown key `epoch`; allowed: name, problem"),
    ("unknown problem", _with(problem={"name": "mnist3"}), r"`problem.name`: must be one of .*toy2d.*found 'mnist3'"),
    ("bad plug-in path", _with(problem={"name": "no_such_pkg.mod:make"}), r"`problem`: .*cannot import module"),
    ("bad problem argument", _with(problem={"name": "toy2d", "args": {"n": -3}}), r"`problem`: .*`n`.*found -3"),
    ("unknown solver", _with(solvers=[{"solver": "mgdaa"}]), r"`solvers\[0\].solver`: solver 'mgdaa' is unknown"),
    (
        "unknown hyperparameter",
        _with(solvers=[{"solver": "tchebycheff", "solver_args": {"marg": 1}}]),
        r"unknown hyperparameter `marg`; allowed: margin, ideal",
    ),
    (
        "invalid hyperparameter in a choice",
        _with(solvers=[{"solver": "tchebycheff", "solver_args": {"margin": {"choice": [0.1, -2]}}}]),
        r"`margin` must be a float >= 0, found -2",
    ),
    (
        "negative learning rate",
        _with(solvers=[{"solver": "linear", "optimizer": {"lr": -0.1}}]),
        r"`solvers\[0\].optimizer.lr` must be a float > 0, found -0.1",
    ),
    (
        "loguniform from zero",
        _with(solvers=[{"solver": "linear", "optimizer": {"lr": {"loguniform": [0, 1]}}}]),
        r"`solvers\[0\].optimizer.lr`: loguniform needs low > 0",
    ),
    (
        "unknown transfer key",
        _with(solvers=[{"solver": "linear", "population": {"transfer": {"epsilon": 1}}}]),
        r"unknown key `solvers\[0\].population.transfer.epsilon`; allowed: eps0",
    ),
    (
        "eps0 above one",
        _with(solvers=[{"solver": "linear", "population": {"size": 3, "transfer": {"eps0": 2}}}]),
        r"`solvers\[0\].population.transfer.eps0` must be in \[0, 1\], found 2",
    ),
    (
        "empty population",
        _with(
            problem={"name": "tests.support.fault_problems:diverging"},
            reference_point=[1, 1],
            solvers=[{"solver": "linear", "population": {"size": 0}}],
        ),
        r"`solvers\[0\].population.size` must be an integer >= 1, found 0",
    ),
    ("unknown algorithm", _with(search={"algorithm": "bayesopt"}), r"`search.algorithm`: .*found 'bayesopt'"),
    (
        "probe of another value",
        _with(solvers=[{"solver": "linear", "optimizer": {"lr": 0.01, "weight_decay": {"probe": [0.0, 1.0]}}}]),
        r"`solvers\[0\].optimizer.weight_decay`: probe finds a learning rate only; allowed here: choice",
    ),
    (
        "probe range reversed",
        _with(solvers=[{"solver": "linear", "optimizer": {"lr": {"probe": [0.01, 0.001]}}}]),
        r"`solvers\[0\].optimizer.lr`: probe needs \[lo, hi\] or \[lo, hi, candidates\].*found \[0.01, 0.001\]",
    ),
    (
        "probe of one candidate",
        _with(solvers=[{"solver": "linear", "optimizer": {"lr": {"probe": [0.001, 0.01, 1]}}}]),
        r"`solvers\[0\].optimizer.lr`: probe needs .*2 <= candidates <= 16, found \[0.001, 0.01, 1\]",
    ),
    ("unknown scheduler", _with(search={"scheduler": {"name": "pbt"}}), r"`search.scheduler.name`: .*found 'pbt'"),
    (
        "grid with optuna",
        _with(
            search={"algorithm": "optuna"}, solvers=[{"solver": "linear", "optimizer": {"lr": {"grid": [0.1, 0.01]}}}]
        ),
        r"`solvers\[0\].optimizer.lr`: grid is not supported with search.algorithm optuna",
    ),
    ("zero samples", _with(search={"num_samples": 0}), r"`search.num_samples`: .*found 0"),
    ("no CPUs", _with(resources={"cpus_per_trial": 0}), r"`resources.cpus_per_trial`: .*found 0"),
    ("reference point length", _with(reference_point=[1.0]), r"`reference_point`: needs 2 values"),
    (
        "reference point missing",
        {
            k: v
            for k, v in _with(
                objectives=[{"name": "f1", "direction": "min"}, {"name": "f2", "direction": "min"}]
            ).items()
            if k != "reference_point"
        }
        | {
            "problem": {"name": "tests.support.fault_problems:diverging"},
            "objectives": [{"name": "f2", "direction": "min"}, {"name": "f1", "direction": "min"}],
        },
        r"`reference_point` is required for objectives \['f2', 'f1'\]",
    ),
    (
        "unknown objective",
        _with(objectives=[{"name": "f1", "direction": "min"}, {"name": "acc", "direction": "max"}]),
        r"`objectives\[1\].name`: problem 'toy2d' has no metric 'acc'; allowed: f1 \(min\), f2 \(min\)",
    ),
    (
        "wrong objective direction",
        _with(objectives=[{"name": "f1", "direction": "max"}, {"name": "f2", "direction": "min"}]),
        r"`objectives\[0\].direction`: f1 is better when smaller: it must be 'min', found 'max'",
    ),
    ("bad name", _with(name="my search"), r"`name`: String should match pattern"),
    ("cuda without GPUs", _with(device="cuda"), r"`device` is 'cuda' but `resources.gpus_per_trial` is 0"),
    (
        "duplicate labels",
        _with(solvers=[{"solver": "linear"}, {"solver": "linear"}]),
        r"`solvers`: labels must be unique, found 'linear' twice",
    ),
    ("not a mapping", ["a", "list"], r"a config must be a mapping of keys to values, found list"),
    (
        "unsupported tracking URI scheme",
        _with(tracking={"uri": "foo://bar"}),
        r"`tracking.uri`: foo://bar cannot be used: .*unsupported URI 'foo://bar'.*Supported URI schemes are",
    ),
    (
        "tracking server that does not answer",
        _with(tracking={"uri": "http://127.0.0.1:9"}),  # the discard port: nothing listens there
        r"`tracking.uri`: http://127.0.0.1:9 did not answer: API request to http://127.0.0.1:9",
    ),
    (
        "more composites than memory holds",
        _with(problem={"name": "multi_mnist", "args": {"n_train": 100_000_000}}, reference_point=None),
        r"`problem`: problem 'multi_mnist': argument `n_train` must be at most 1,000,000 \(composites are held in "
        r"memory: 100,000,000 would take 129.6 GB\), found 100000000",
    ),
    ("unknown device", _with(device="gpu0"), r"`device`: must be auto, cpu, cuda or cuda:N, found 'gpu0'"),
    ("name longer than a folder name", _with(name="n" * 101), r"`name`: String should have at most 100 characters"),
    (
        "more CPUs per trial than the machine has",
        _with(resources={"cpus_per_trial": 4096}),
        r"`resources.cpus_per_trial` is 4096 but this machine has \d+ CPUs: no trial could ever start",
    ),
    (
        "more GPUs per trial than the machine has",
        _with(resources={"gpus_per_trial": 64}),
        r"`resources.gpus_per_trial` is 64 but this machine has (no GPU|\d+ GPUs): no trial could ever start",
    ),
    ("no epochs", _with(epochs=0), r"`epochs`: Input should be greater than or equal to 1, found 0"),
    ("epochs as text", _with(epochs="ten"), r"`epochs`: Input should be a valid integer.*found 'ten'"),
    ("seed as text", _with(seed="abc"), r"`seed`: Input should be a valid integer.*found 'abc'"),
    ("no solvers", _with(solvers=[]), r"`solvers`: List should have at least 1 item.*found \[\]"),
    ("unknown method", _with(solvers=[{"method": "mt3o"}]), r"`method`: method 'mt3o' is unknown; allowed: mt2o"),
    (
        "transfer period zero",
        _with(solvers=[{"solver": "linear", "population": {"size": 3, "transfer": {"eps0": 0.3, "period": 0}}}]),
        r"`solvers\[0\].population.transfer.period` must be an integer >= 1, found 0",
    ),
    (
        "unknown population execution",
        _with(solvers=[{"solver": "linear", "population": {"size": 3, "execution": "gpu"}}]),
        r"`solvers\[0\].population.execution` must be auto, sequential or batched, found 'gpu'",
    ),
    (
        "batched execution of a solver that needs task gradients",
        _with(solvers=[{"solver": "pcgrad", "population": {"size": 3, "execution": "batched"}}]),
        r"`solvers\[0\].population.execution` is batched, but solver 'pcgrad' reads more than its losses "
        r"\(per-task gradients or the model itself\); allowed here: auto, sequential",
    ),
    (
        "unknown transfer rule",
        _with(solvers=[{"solver": "linear", "population": {"size": 3, "transfer": {"eps0": 0.3, "rule": "foo"}}}]),
        r"`solvers\[0\].population.transfer.rule` must be periodic or mtgd, found 'foo'",
    ),
    (
        "unknown transfer scope",
        _with(
            solvers=[
                {
                    "solver": "linear",
                    "population": {"size": 3, "transfer": {"alpha": 0.3, "rule": "mtgd", "scope": "x"}},
                }
            ]
        ),
        r"`solvers\[0\].population.transfer.scope` must be trunk or all \(or unset\), found 'x'",
    ),
    (
        "unknown transfer mode",
        _with(solvers=[{"solver": "linear", "population": {"size": 3, "transfer": {"eps0": 0.3, "mode": "greedy"}}}]),
        r"`solvers\[0\].population.transfer.mode` must be symmetric or beneficial, found 'greedy'",
    ),
    (
        "population size as text",
        _with(solvers=[{"solver": "linear", "population": {"size": "five"}}]),
        r"`solvers\[0\].population.size` must be an integer >= 1, found 'five'",
    ),
    (
        "unknown optimizer",
        _with(solvers=[{"solver": "linear", "optimizer": {"name": "rmsprop2", "lr": 0.01}}]),
        r"`solvers\[0\].optimizer.name` must be one of sgd, adam, adamw, found 'rmsprop2'",
    ),
    (
        "empty choice",
        _with(solvers=[{"solver": "linear", "optimizer": {"lr": {"choice": []}}}]),
        r"`solvers\[0\].optimizer.lr`: choice needs a non-empty list of values, found \[\]",
    ),
    (
        "uniform range reversed",
        _with(solvers=[{"solver": "linear", "optimizer": {"lr": {"uniform": [0.1, 0.01]}}}]),
        r"`solvers\[0\].optimizer.lr`: uniform needs low < high, found \[0.1, 0.01\]",
    ),
    ("no concurrent trials", _with(search={"max_concurrent_trials": 0}), r"`search.max_concurrent_trials`: .*found 0"),
    ("negative retries", _with(search={"max_failures": -1}), r"`search.max_failures`: .*found -1"),
    ("samples as text", _with(search={"num_samples": "many"}), r"`search.num_samples`: .*found 'many'"),
    (
        "grace period zero",
        _with(search={"scheduler": {"name": "pareto_asha", "grace_period": 0}}),
        r"`search.scheduler.grace_period`: .*found 0",
    ),
    (
        "reduction factor one",
        _with(search={"scheduler": {"name": "pareto_asha", "reduction_factor": 1}}),
        r"`search.scheduler.reduction_factor`: Input should be greater than 1, found 1",
    ),
    ("negative GPUs", _with(resources={"gpus_per_trial": -1}), r"`resources.gpus_per_trial`: .*found -1"),
    ("outage bound negative", _with(tracking={"outage_timeout_s": -5}), r"`tracking.outage_timeout_s`: .*found -5"),
    ("empty experiment name", _with(tracking={"experiment": ""}), r"`tracking.experiment`: String should have at"),
    (
        "reference point as text",
        _with(reference_point=["a", 1]),
        r"`reference_point\[0\]`: Input should be a valid number.*found 'a'",
    ),
    (
        "duplicate objectives",
        _with(objectives=[{"name": "f1", "direction": "min"}, {"name": "f1", "direction": "min"}]),
        r"`objectives`: each name once, found \['f1', 'f1'\]",
    ),
    (
        "problem argument of the wrong type",
        _with(problem={"name": "toy2d", "args": {"steps_per_epoch": "many"}}),
        r"`problem`: problem 'toy2d': argument `steps_per_epoch` must be an integer >= 1, found 'many'",
    ),
    ("CUDA index not a number", _with(device="cuda:x"), r"`device`: must be auto, cpu, cuda or cuda:N, found 'cuda:x'"),
    (
        "storage scheme not supported",
        _with(storage="ftp://host/x"),
        r"`storage`: scheme 'ftp://' of 'ftp://host/x' is not supported; allowed: a local path",
    ),
    (
        "negative affinity frequency",
        _with(diagnostics={"affinity_every": -1}),
        r"`diagnostics.affinity_every`: .*greater than or equal to 0, found -1",
    ),
]


@pytest.fixture(autouse=True)
def _no_ray_started():
    import ray

    assert not ray.is_initialized()
    yield
    assert not ray.is_initialized(), "an invalid input started Ray"


@pytest.mark.parametrize(("what", "config", "message"), CASES, ids=[c[0] for c in CASES])
def test_invalid_config_is_refused_in_one_line(tmp_path, monkeypatch, capsys, what, config, message) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the fault plug-in lives in tests/
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("pareto-search run: error: ")
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "searches").exists(), "nothing may be written for an invalid config"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "does/not/exist.yaml"], r"config file 'does/not/exist.yaml' not found"),
        (["front", "nope"], r"search 'nope' not found"),
        (["resume", "nope"], r"search 'nope' not found"),
        (["compare", "nope", "other"], r"search 'nope' not found"),
        (["front", "x", "--format", "xml"], r"argument --format: invalid choice: 'xml'"),
        (["frontier"], r"invalid choice: 'frontier'"),
    ],
)
def test_invalid_cli_use_is_refused_in_one_line(tmp_path, monkeypatch, capsys, argv, message) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0, err
    import re

    assert re.search(message, err), err


def test_invalid_yaml_names_the_line(tmp_path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nproblem: [unclosed\n")
    assert main(["run", str(path)]) == 2
    assert "is not valid YAML at line 3" in capsys.readouterr().err


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not UTF-8 text (byte 0xe9 at offset 9)" in err


def test_a_storage_path_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "searches").write_text("not a folder")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    assert main(["run", str(config), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"`storage`: {tmp_path / 'searches'} exists and is not a folder" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_damaged_sqlite_tracking_store_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.db").write_bytes(b"garbage" * 200)  # what a half-copied file looks like
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_with(tracking={"uri": f"sqlite:///{tmp_path}/mlflow.db"})))
    assert main(["run", str(config), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be used: (sqlite3.DatabaseError) file is not a database" in err
    assert not (tmp_path / "searches").exists()


def test_a_search_with_failed_trials_exits_1_and_names_them(tmp_path, monkeypatch, capsys) -> None:
    """The CLI's contract on a finished search (the search itself: test_search_service.py): the front on stdout,
    then each failed trial with its error line and where the full error is, exit 1."""
    from pareto_search.front.global_front import GlobalFront
    from pareto_search.front.pareto import Objective
    from pareto_search.search import runner

    front = GlobalFront("s", [Objective("f1", "min"), Objective("f2", "min")], [1.0, 1.0])
    front.update("t1", [{"member": 0, "values": [0.2, 0.3]}])
    failure = runner.TrialFailure("t2", "NonFiniteLossError: member 0 at step 3", "/s/t2/error.txt")
    monkeypatch.setattr(runner, "run_search", lambda plan, **kw: runner.SearchOutcome(front, 2, (failure,)))
    monkeypatch.setattr(runner, "release_ray", lambda: None)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    assert main(["run", str(config)]) == 1
    out, err = capsys.readouterr()
    assert "1 points on the front of 1 evaluated" in out
    assert err.splitlines()[-2:] == [
        "1 of 2 trials ended in error (their points found so far are kept):",
        "  t2: NonFiniteLossError: member 0 at step 3  (full error: /s/t2/error.txt)",
    ]


def test_the_solver_names_the_schema_checks_are_the_solver_registry() -> None:
    from trials.names import SOLVER_NAMES
    from trials.solvers import SOLVERS

    assert sorted(SOLVER_NAMES) == sorted(SOLVERS)


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["frontier"], ["run", "{bad}"]],
    ids=["help", "usage error", "schema error"],
)
def test_the_cli_answers_help_and_schema_errors_without_loading_torch_ray_or_mlflow(tmp_path, argv) -> None:
    """What keeps `--help` and a misspelt config under a second (benchmarks/cli_startup.py measures it): the
    answer comes before torch, Ray or MLflow is imported."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(solvers=[{"solver": "mgdaa"}])))
    probe = (
        "import sys\nfrom pareto_search.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    )
    args = [a.replace("{bad}", str(bad)) for a in argv]
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "LOADED []", done.stdout + done.stderr
    if argv[0] == "run":
        assert "`solvers[0].solver`: solver 'mgdaa' is unknown" in done.stderr, done.stderr


def test_eps0_under_mtgd_loads_as_alpha_with_a_one_line_note(tmp_path: Path) -> None:
    """The spelling of α before it had a field of its own still loads, as α, and the user is told in one line."""
    import subprocess
    import sys
    import warnings

    from pareto_search.config import parse_config
    from pareto_search.errors import ConfigDeprecation

    entry = {"solver": "linear", "population": {"size": 3, "transfer": {"rule": "mtgd", "eps0": 2.0}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = parse_config(_with(solvers=[entry]))
    notes = [w for w in caught if issubclass(w.category, ConfigDeprecation)]
    assert len(notes) == 1 and "write `alpha: 2.0`" in str(notes[0].message)
    assert config.solvers[0].population.transfer.model_dump() == {"rule": "mtgd", "alpha": 2.0}

    # Through the CLI: the note is one line before the run's own (here: a refusal of another field, so that nothing
    # starts), not Python's two-line warning with a file and a source line.
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(_with(solvers=[entry], epochs=0)))
    done = subprocess.run(
        [sys.executable, "-m", "pareto_search.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("pareto-search run: note: `population.transfer.eps0` under rule mtgd is the rule's α")
    assert lines[1].startswith("pareto-search run: error: ") and "epochs" in lines[1]


def test_a_preset_strength_stays_with_its_rule() -> None:
    """`method: mt2o` mixes by the periodic rule's ε0 = 0.3; an entry that picks rule mtgd gets mtgd's own α (unset:
    1, the authors' code), never that ε0 read as α."""
    from pareto_search.config import parse_config

    entry = {"method": "mt2o", "solver": "linear", "population": {"transfer": {"rule": "mtgd"}}}
    transfer = parse_config(_with(solvers=[entry])).solvers[0].population.transfer
    assert transfer.rule == "mtgd" and transfer.model_dump() == {"rule": "mtgd", "period": 10, "mode": "beneficial"}
    assert transfer.effective("alpha") is None  # unset: the trial resolves mtgd's own default (population.py)
    periodic = parse_config(_with(solvers=[{"method": "mt2o", "solver": "linear"}])).solvers[0].population
    assert periodic.transfer.eps0 == 0.3


def test_the_config_sections_name_the_fields_of_the_trial_they_configure() -> None:
    """`population`, its `transfer` and `psl`, and `optimizer` are typed sections whose fields are the trial
    dataclasses' (trials/spec.py, where each default and check is defined once): no field is known to one and
    unknown to the other, and a field left unset reads as the trial's default."""
    import dataclasses

    from pareto_search.config import OptimizerConfig, PopulationConfig, PSLConfig, TransferConfig, parse_config
    from trials.spec import PopulationSpec

    for section in (OptimizerConfig, PopulationConfig, PSLConfig, TransferConfig):
        assert list(section.model_fields) == [f.name for f in dataclasses.fields(section.spec_class)], section
    unset = PopulationConfig()
    assert unset.model_dump() == {} and unset.effective("size") == PopulationSpec().size
    assert unset.transfer.effective("period") == PopulationSpec().transfer.period
    config = parse_config(_with(solvers=[{"solver": "linear", "population": {"size": 4}}]))
    assert config.solvers[0].population.size == 4 and config.model_dump()["solvers"][0]["population"] == {"size": 4}
