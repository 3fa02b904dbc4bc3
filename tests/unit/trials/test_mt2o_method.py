"""`mt2o` as a first-class method: listed by `solvers` with its paper and defaults, and `method: mt2o` in a
config expands to the preset (what the entry sets itself wins) and runs."""

from __future__ import annotations

import json

import pytest
import yaml

from pareto_search.cli import main
from pareto_search.config import ConfigError, parse_config
from trials.loop import Trainer
from trials.presets import MT2O, merge

BASE = {"name": "m", "problem": {"name": "toy2d", "args": {"steps_per_epoch": 5}}, "epochs": 2}


def test_solvers_lists_mt2o_with_its_paper_and_defaults(capsys) -> None:
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mt2o (method: `method: mt2o` in a solver entry): K scalarized subproblems")
    assert "arXiv 2403.16162" in out and "MTGD" in out
    for key, value in (("population.size", MT2O.population["size"]),):
        assert f"    {key} = {value!r}" in out
    assert main(["solvers", "--format", "json"]) == 0
    (entry,) = [e for e in json.loads(capsys.readouterr().out) if e["kind"] == "method" and e["name"] == "mt2o"]
    defaults = {d["name"]: d["default"] for d in entry["defaults"]}
    assert defaults["population.transfer.rule"] == MT2O.population["transfer"]["rule"]
    assert entry["solver"] == "linear" and entry["why"]


def test_method_mt2o_expands_to_the_preset_and_the_entry_wins() -> None:
    config = parse_config(
        {
            **BASE,
            "solvers": [
                {"method": "mt2o"},
                {
                    "method": "mt2o",
                    "label": "wide",
                    "population": {"size": 3, "transfer": {"eps0": {"choice": [0, 1]}}},
                },
            ],
        }
    )
    preset, custom = config.solvers
    assert preset.solver == MT2O.solver and preset.population.model_dump() == MT2O.population
    assert preset.display_label() == "mt2o-k3"
    assert preset.population.interior == 0.3  # no member trains one task alone (presets.py: why)
    assert preset.population.across_trials == "fill"  # later trials fill the gaps (presets.py: why)
    assert custom.population.size == 3 and custom.population.transfer.eps0 == {"choice": [0, 1]}
    assert custom.population.transfer.rule == MT2O.population["transfer"]["rule"]  # kept from the preset
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": {"grid": [3]}}}) == {"a": {"b": 1, "c": {"grid": [3]}}}


def test_a_conditioned_model_is_labelled_by_its_method_not_by_its_one_member() -> None:
    config = parse_config({**BASE, "solvers": [{"method": "psl"}, {"solver": "linear", "population": {"psl": {}}}]})
    assert [entry.display_label() for entry in config.solvers] == ["psl", "psl-linear"]  # not "psl-k1"


def test_a_method_mt2o_config_validates_and_runs(tmp_path) -> None:
    config = parse_config({**BASE, "solvers": [{"method": "mt2o", "optimizer": {"lr": 0.05}}]})
    spec = config.trial_spec(0, config.solvers[0].space(), seed=0)
    assert spec.population.size == MT2O.population["size"]
    assert spec.population.transfer.rule == MT2O.population["transfer"]["rule"]
    trainer = Trainer(spec)
    trainer.run()
    assert len(trainer.history) == 2 and len(trainer.history[-1].members) == MT2O.population["size"]
    path = tmp_path / "c.yaml"  # and the same from a file, as users write it
    path.write_text(yaml.safe_dump({**BASE, "solvers": [{"method": "mt2o"}]}))
    from pareto_search.config import load_config

    assert load_config(path).solvers[0].population.model_dump() == MT2O.population


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"method": "mt3o"}, r"`method`: method 'mt3o' is unknown; allowed: mt2o"),
        (
            {"method": "mt2o", "population": {"transfer": {"rule": "gossip"}}},
            r"`solvers\[0\].population.transfer.rule` must be periodic or mtgd",
        ),
    ],
)
def test_a_bad_method_entry_is_one_line(entry, message) -> None:
    import re

    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "solvers": [entry]})
    assert re.search(message, str(caught.value)) and "\n" not in str(caught.value)


def test_the_untuned_preset_runs_on_a_three_task_problem() -> None:
    """`method: mt2o` with K = 5 on 3 tasks: 5 is no Das–Dennis count, so the members get 5 Riesz-energy preference
    vectors instead of a refusal (vs_peers.py found the then-untuned default, K = 5, refused on every 3-task
    problem)."""
    from pareto_search.plan import make_plan

    config = parse_config(
        {
            "name": "three",
            "problem": {"name": "related3", "args": {"n_train": 64, "n_val": 32, "n_test": 32}},
            "epochs": 1,
            "solvers": [{"method": "mt2o", "population": {"size": 5}}],
        }
    )
    plan = make_plan(config)
    trainer = Trainer(plan.config.trial_spec(0, {"population": plan.config.solvers[0].population.model_dump()}, seed=0))
    preferences = trainer.population.preferences
    assert preferences.shape == (5, 3) and len({tuple(row) for row in preferences.tolist()}) == 5
    trainer.run()
    assert len(trainer.history[-1].members) == 5


def test_every_preset_is_an_entry_of_the_typed_sections() -> None:
    """A preset's population, transfer and optimizer name only fields of the typed sections (a typo in a preset
    would otherwise reach users as a refusal of a key they never wrote)."""
    from pareto_search.config import SolverEntry
    from trials.presets import PRESETS

    for name, preset in PRESETS.items():
        entry = SolverEntry.model_validate(preset.entry())
        assert entry.population.model_dump() == preset.entry()["population"], name
