"""The names of the built-in problems and solvers, importable without torch.

A config's schema check needs only the names, so a misspelt problem or solver is refused before torch (and
every problem and solver module) loads: `pareto-search run bad.yaml` answers in a fraction of a second. The
registries in ``trials/problems`` and ``trials/solvers`` use these names; a test keeps the solver list equal to
the solver registry.
"""

from __future__ import annotations

# name -> "module:factory"; imported lazily so that listing problems stays cheap.
PROBLEMS: dict[str, str] = {
    "toy2d": "trials.problems.synthetic:Toy2D",
    "zdt1": "trials.problems.synthetic:ZDT1",
    "zdt2": "trials.problems.synthetic:ZDT2",
    "multi_mnist": "trials.problems.multi_mnist:multi_mnist",
    "multi_fashion": "trials.problems.multi_mnist:multi_fashion",
    "multi_fashion_mnist": "trials.problems.multi_mnist:multi_fashion_mnist",
    "related3": "trials.problems.related_conflicting:related3",
    "logic_gates": "trials.problems.logic_gates:LogicGates",
    "river_flow": "trials.problems.river_flow:river_flow",
    "movielens": "trials.problems.movielens:movielens",
}

SOLVER_NAMES: tuple[str, ...] = (
    "adatask",
    "cagrad",
    "cdtt",
    "dwa",
    "epo",
    "gradnorm",
    "imtl_g",
    "itmtl",
    "linear",
    "mgda",
    "nash_mtl",
    "pcgrad",
    "pmtl",
    "tchebycheff",
    "uncertainty",
    "upgrad",
)


def check_solver_name(name: str) -> str:
    """``name`` when it is a built-in solver; otherwise a ValueError naming what is allowed."""
    if name not in SOLVER_NAMES:
        raise ValueError(f"solver '{name}' is unknown; allowed: {', '.join(sorted(SOLVER_NAMES))}")
    return name
