"""Config distributions → Ray Tune sampling primitives, and the param space of a search."""

from __future__ import annotations

from typing import Any, NamedTuple

from ray import tune

from pareto_search.config import Distribution, SearchConfig

SEED_RANGE = 2**31 - 1  # torch.manual_seed accepts any 64-bit value; 31 bits keep JSON/YAML friendly


def to_tune(dist: Distribution) -> Any:
    args = dist.args
    if dist.kind == "choice":
        return tune.choice(list(args))
    if dist.kind == "grid":
        return tune.grid_search(list(args))
    if dist.kind == "uniform":
        return tune.uniform(float(args[0]), float(args[1]))
    if dist.kind == "loguniform":
        return tune.loguniform(float(args[0]), float(args[1]))
    if dist.kind == "quniform":
        return tune.quniform(float(args[0]), float(args[1]), float(args[2]))
    return tune.randint(int(args[0]), int(args[1]))


def _convert(tree: Any) -> Any:
    if isinstance(tree, Distribution):
        return to_tune(tree)
    if isinstance(tree, dict):
        return {k: _convert(v) for k, v in tree.items()}
    return tree


class TrialParams(NamedTuple):
    variant: int  # the solver entry
    values: dict[str, Any]  # that entry's sampled hyperparameters
    seed: int
    repeat: int  # which of the entry's trials this is (0-based); 0 under optuna, which picks entries itself


def param_space(config: SearchConfig) -> dict[str, Any]:
    """grid/random: one grid over (repeat, solver entry), each entry with its own (nested) space, so a
    trial of entry i samples only entry i's hyperparameters, and knows which of entry i's trials it is
    (``population.across_trials: fill`` gives later trials other preferences). The grid lists every entry's
    repeat 0, then every entry's repeat 1, …, ``num_samples`` repeats in all: Tune makes the trials in that
    order, as it did when ``num_samples`` repeated a grid of the entries; each grid point samples its own seed.
    optuna: the entry is a categorical and every entry's space is present (Optuna needs a
    flat, fixed space; the trial reads only its own entry's values)."""
    spaces = [_convert(entry.space()) for entry in config.solvers]
    if config.search.algorithm == "optuna":
        space: dict[str, Any] = {"variant": tune.choice(list(range(len(spaces))))}
        space.update({f"v{i}": s for i, s in enumerate(spaces)})
        # Optuna would try to optimize a sampled seed: use the config's seed for every trial.
        space["seed"] = config.seed
        return space
    entries = [
        {"variant": i, "repeat": r, "values": s} for r in range(config.search.num_samples) for i, s in enumerate(spaces)
    ]
    return {"entry": tune.grid_search(entries), "seed": tune.randint(0, SEED_RANGE)}


def tune_num_samples(config: SearchConfig) -> int:
    """Tune's ``num_samples``: optuna draws that many trials; grid/random have the repeats in the grid already."""
    return config.search.num_samples if config.search.algorithm == "optuna" else 1


def unpack(params: dict[str, Any]) -> TrialParams:
    """A trial's resolved params, as its entry, values, seed and repeat. A search started before repeats were
    in the grid (its param space is restored with it) has none: its trials count as repeat 0, as they ran."""
    if "entry" in params:
        entry = params["entry"]
        return TrialParams(int(entry["variant"]), entry["values"], int(params["seed"]), int(entry.get("repeat", 0)))
    variant = int(params["variant"])
    return TrialParams(variant, params[f"v{variant}"], int(params["seed"]), 0)
