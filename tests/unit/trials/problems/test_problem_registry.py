"""The problem registry: built-in names, plug-in paths, and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trials.problems import PROBLEMS, Problem, make_problem
from trials.problems.synthetic import ZDT1, Toy2D

REPO_ROOT = Path(__file__).resolve().parents[4]
PLUGIN = "examples.plugin_problem:make"


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # `examples` is a top-level package of the repository, not of the installed distribution:
    # importable from the repository root, as when the CLI runs there.
    monkeypatch.syspath_prepend(str(REPO_ROOT))


def test_builtin_names_resolve() -> None:
    assert set(PROBLEMS) == {
        "toy2d",
        "zdt1",
        "zdt2",
        "multi_mnist",
        "multi_fashion",
        "multi_fashion_mnist",
        "related3",  # TAG's related pair + conflicting third task (trials/problems/related_conflicting.py)
        "logic_gates",  # CDTT's XOR×10 + AND toy (trials/problems/logic_gates.py)
        "river_flow",
        "movielens",  # real tabular data (trials/problems/river_flow.py, movielens.py)
    }
    for name in PROBLEMS:  # every registered name builds
        if not name.startswith("multi_") and name not in ("river_flow", "movielens"):  # those need the offline
            # data; tested in their own modules
            assert make_problem(name).name
    problem = make_problem("toy2d", {"n": 5})
    assert isinstance(problem, Toy2D) and problem.n == 5
    assert isinstance(make_problem("zdt1"), ZDT1)


def test_unknown_name_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="'toy3d' is unknown") as info:
        make_problem("toy3d")
    for name in PROBLEMS:
        assert name in str(info.value)
    assert "package.module:factory" in str(info.value)


def test_bad_keyword_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"'toy2d'.*bogus"):
        make_problem("toy2d", {"bogus": 1})


def test_bad_value_names_the_value() -> None:
    with pytest.raises(ValueError, match=r"`n`.*-3"):
        make_problem("zdt2", {"n": -3})


def test_plugin_loads_and_trains(repo_on_path: None) -> None:
    problem = make_problem(PLUGIN, {"n_train": 256, "n_val": 64, "n_test": 64, "correlation": 0.3})
    assert isinstance(problem, Problem) and problem.num_tasks == 2
    assert problem.default_objectives == ("task1_mse", "task2_mse")
    ref = problem.default_reference_point
    assert ref is not None and len(ref) == 2 and all(v > 0 for v in ref)
    torch.manual_seed(0)
    model = problem.make_model()
    before = problem.evaluate(model, "val", torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        batches = list(problem.train_batches(gen))
        assert len(batches) == problem.steps_per_epoch()
        for batch in batches:
            opt.zero_grad()
            problem.task_losses(model(batch.inputs), batch).sum().backward()
            opt.step()
    after = problem.evaluate(model, "val", torch.device("cpu"))
    assert set(after) == {"task1_mse", "task2_mse"}
    assert after["task1_mse"] < ref[0] and after["task2_mse"] < ref[1]  # trained beats the reference
    assert after["task1_mse"] < 0.5 * before["task1_mse"] and after["task2_mse"] < 0.5 * before["task2_mse"]


def test_plugin_data_is_a_function_of_its_seed(repo_on_path: None) -> None:
    a, b, c = (make_problem(PLUGIN, {"seed": s}) for s in (1, 1, 2))
    xa, xb, xc = (p.data["train"][1] for p in (a, b, c))  # type: ignore[attr-defined]
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("examples.no_such_module:make", "cannot import module 'examples.no_such_module'"),
        ("examples.plugin_problem:nope", "has no attribute 'nope'"),
        ("examples.plugin_problem:", "package.module:factory"),
        (":make", "package.module:factory"),
    ],
)
def test_bad_plugin_path_names_the_value(repo_on_path: None, path: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        make_problem(path)
    assert path in str(info.value)


def test_plugin_bad_kwargs_name_the_argument(repo_on_path: None) -> None:
    with pytest.raises(ValueError, match="wrong_arg"):
        make_problem(PLUGIN, {"wrong_arg": 1})
    with pytest.raises(ValueError, match=r"`correlation`.*1\.5"):
        make_problem(PLUGIN, {"correlation": 1.5})


def test_factory_returning_a_non_problem_is_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"'builtins:dict': factory returned dict, expected a trials\.problems\.Problem"
    ):
        make_problem("builtins:dict")  # callable, but not a factory of problems
