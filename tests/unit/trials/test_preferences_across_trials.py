"""`population.across_trials: fill`: later trials of an entry take the directions farthest from earlier trials'."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pareto_search.config import parse_config
from pareto_search.search.space import param_space, unpack
from trials.loop import Trainer
from trials.preferences import make_preferences, trial_preferences
from trials.spec import PopulationSpec, SpecError, TrialSpec
from trials.testing.contract import ConflictingRegression


def _angles(prefs: torch.Tensor) -> list[float]:
    return [round(math.degrees(math.atan2(b, a)), 6) for a, b in prefs.tolist()]


def _min_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """For each row of ``a``, the angle (radians) to the nearest row of ``b``."""
    ua, ub = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    return torch.arccos((ua @ ub.T).clamp(-1, 1)).min(dim=1).values


def test_trial_zero_is_the_usual_grid_and_trial_one_takes_the_midpoints() -> None:
    assert torch.equal(trial_preferences(2, 5, 0), make_preferences(2, 5))
    # Trial 0 sits every 22.5°: the four gaps' middles first, then (all gaps now 11.25° wide) the middle of a
    # gap next to equal weights, the lower one (39.375° rather than 50.625°: task 0 first on a mirror tie).
    assert _angles(trial_preferences(2, 5, 1)) == [11.25, 33.75, 39.375, 56.25, 78.75]
    for r in range(3):
        assert torch.allclose(trial_preferences(2, 5, r).sum(dim=1), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize(("num_tasks", "size"), [(2, 3), (2, 5), (3, 6), (3, 5)])
def test_each_trial_is_new_and_the_gaps_shrink(num_tasks: int, size: int) -> None:
    """The defining property of a maximin fill: no direction repeats an earlier trial's, and the widest gap (the
    largest angle from any candidate direction to the nearest trained one) never grows as trials are added."""
    taken = [trial_preferences(num_tasks, size, 0)]
    probe = trial_preferences(num_tasks, 200, 0)  # directions all over the simplex
    widest = [float(_min_angle(probe, taken[0]).max())]
    for r in range(1, 4):
        prefs = trial_preferences(num_tasks, size, r)
        assert prefs.shape == (size, num_tasks)
        assert bool((prefs >= 0).all()) and torch.allclose(prefs.sum(dim=1), torch.ones(size, dtype=torch.float64))
        assert float(_min_angle(prefs, torch.cat(taken)).min()) > 0.01  # ~0.6°: none repeats a trained one
        taken.append(prefs)
        widest.append(float(_min_angle(probe, torch.cat(taken)).max()))
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(widest))
    assert widest[-1] < widest[0]


def test_a_trial_depends_only_on_the_trials_before_it() -> None:
    """Deterministic and nested: trials 1-3 asked for last-first in a fresh process (cache cleared) equal the same
    trials asked for in order (a resumed or extended search keeps the preferences its trials started with)."""
    from trials import preferences

    preferences._FILLS.clear()
    backwards = {r: trial_preferences(3, 6, r) for r in (3, 2, 1)}
    preferences._FILLS.clear()
    in_order = {r: trial_preferences(3, 6, r) for r in (1, 2, 3)}
    assert all(torch.equal(backwards[r], in_order[r]) for r in (1, 2, 3))
    assert not torch.equal(in_order[1], in_order[2])


def test_the_population_trains_its_repeats_preferences_only_under_fill() -> None:
    def prefs(across: str, repeat: int) -> torch.Tensor:
        spec = TrialSpec(
            problem="toy2d", epochs=1, repeat=repeat, population=PopulationSpec(size=5, across_trials=across)
        )
        return Trainer(spec, problem=ConflictingRegression()).population.preferences

    assert torch.equal(prefs("same", 2), make_preferences(2, 5))
    assert torch.equal(prefs("fill", 0), make_preferences(2, 5))
    assert torch.equal(prefs("fill", 2), trial_preferences(2, 5, 2))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"across_trials": "gaps"}, "`population.across_trials` must be same or fill, found 'gaps'"),
        ({"size": 2}, None),
    ],
)
def test_across_trials_is_checked(data: dict, message: str | None) -> None:
    if message is None:
        PopulationSpec(**data)
        return
    with pytest.raises(SpecError) as error:
        PopulationSpec(**data)
    assert str(error.value) == message


def test_the_search_numbers_each_entrys_trials() -> None:
    config = parse_config(
        {
            "name": "repeats",
            "problem": {"name": "toy2d"},
            "solvers": [{"method": "mt2o"}, {"solver": "linear"}],
            "search": {"algorithm": "random", "num_samples": 3},
        }
    )
    grid = param_space(config)["entry"]["grid_search"]
    # Every entry's repeat 0 first, then every entry's repeat 1, ...: the order Tune made trials in before.
    assert [(g["variant"], g["repeat"]) for g in grid] == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    trial = unpack({"entry": grid[4], "seed": 7})
    assert (trial.variant, trial.repeat, trial.seed) == (0, 2, 7)
    assert config.trial_spec(trial.variant, {}, trial.seed, trial.repeat).repeat == 2
    # A search started before repeats were in the grid resumes with its params as they were: repeat 0.
    assert unpack({"entry": {"variant": 1, "values": {}}, "seed": 7}).repeat == 0


@pytest.mark.parametrize(("num_tasks", "size"), [(3, 2), (4, 3), (5, 2)])
def test_fewer_members_than_tasks_get_distinct_corners(num_tasks: int, size: int) -> None:
    """K < T (two members on a 3-task problem) is a valid population: its members take K corners of the simplex,
    as far apart as K points can be (pymoo's energy directions fail there)."""
    prefs = make_preferences(num_tasks, size)
    assert prefs.shape == (size, num_tasks)
    assert torch.allclose(prefs.sum(dim=1), torch.ones(size, dtype=torch.float64))
    assert len({tuple(row.tolist()) for row in prefs}) == size
    assert all(sorted(row.tolist())[-1] == 1.0 for row in prefs)
