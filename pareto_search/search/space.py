"""Config distributions → Ray Tune sampling primitives, and the param space of a search."""

from __future__ import annotations

from typing import Any

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


def param_space(config: SearchConfig) -> dict[str, Any]:
    """grid/random: one grid over the solver entries, each with its own (nested) space, so a
    trial of entry i samples only entry i's hyperparameters; ``num_samples`` repeats it.
    optuna: the entry is a categorical and every entry's space is present (Optuna needs a
    flat, fixed space; the trial reads only its own entry's values)."""
    spaces = [_convert(entry.space()) for entry in config.solvers]
    if config.search.algorithm == "optuna":
        space: dict[str, Any] = {"variant": tune.choice(list(range(len(spaces))))}
        space.update({f"v{i}": s for i, s in enumerate(spaces)})
        # Optuna would try to optimize a sampled seed: use the config's seed for every trial.
        space["seed"] = config.seed
        return space
    entries = [{"variant": i, "values": s} for i, s in enumerate(spaces)]
    return {"entry": tune.grid_search(entries), "seed": tune.randint(0, SEED_RANGE)}


def unpack(params: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
    """(variant, sampled values of that entry, trial seed) from a trial's resolved params."""
    if "entry" in params:
        return int(params["entry"]["variant"]), params["entry"]["values"], int(params["seed"])
    variant = int(params["variant"])
    return variant, params[f"v{variant}"], int(params["seed"])
