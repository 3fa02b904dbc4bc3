"""Named methods that are more than one solver: a solver plus the population and transfer that make
the method, with the defaults the evidence supports. ``method: mt2o`` in a search config expands to
the preset; any key the entry sets itself wins (``method: mt2o, population: {size: 8}`` keeps the
preset's transfer)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodPreset:
    name: str
    summary: str
    paper: str
    solver: str
    population: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""  # the reason for these defaults (the measurement they come from)

    def entry(self) -> dict[str, Any]:
        """The solver entry this preset stands for (plain data, a fresh copy)."""
        return {"solver": self.solver, "population": copy.deepcopy(dict(self.population))}


MT2O = MethodPreset(
    name="mt2o",
    summary=(
        "K scalarized subproblems (one per preference vector) trained jointly, with multi-task gradient "
        "descent transferring parameters among them."
    ),
    paper=(
        "Bai, Gupta & Ong, arXiv 2403.16162 (MT2O); its `mtgd` transfer rule from the authors' MTGD code "
        "(Bai, Ong, He & Gupta, Memetic Computing 2020)"
    ),
    solver="linear",
    population={
        "size": 3,
        "transfer": {"rule": "periodic", "eps0": 0.3, "period": 10, "mode": "beneficial"},
        "interior": 0.3,
        "across_trials": "fill",
    },
    why=(
        "benchmarks/mt2o_evidence.py (4 problems x 3 seeds at 6k, 3 Multi-* sets at 60k): periodic eps0 0.3 was, "
        "with one MTGD variant, the only setting to reach 98 % of the best HV on every seed of every problem at 6k; "
        "at 60k eps0 0.1, eps0 0 and PMTL did as well or better (within seed spread); no setting reached the "
        "paper's speed-up (benchmarks/README.md, 'MT2O evidence'). interior 0.3: preferences pulled 30 % toward "
        "equal weights, so no member trains one task alone; benchmarks/vs_peers.py (3 seeds, lr probed): final HV "
        "at equal budget 0.8108 -> 0.8205 on Multi-MNIST, 18.62 -> 18.66 on related3 (19.68 -> 23.61 without "
        "transfer), seed spread smaller on both. mode beneficial: a member takes another's parameters only where "
        "that lowers its own objective; symmetric transfer cost 21 % of the HV on related3, whose third task "
        "conflicts (18.66 against 23.61 without transfer; beneficial 23.5, trials.loop at lr 1e-2, 3 seeds), "
        "and was within 0.005 of beneficial on Multi-MNIST (benchmarks/README.md, 'The headline'). K = 3 with "
        "across_trials fill: a small population gives a first front sooner and later trials fill the gaps between "
        "earlier trials' preferences; against K = 5 (6 on 3 tasks) trained the same in every trial, the model-epochs "
        "to the best peer's final HV fell 0.97 -> 0.61x on Multi-(Fashion+MNIST), never -> 0.67x on Multi-MNIST, "
        "0.55 -> 0.31x on related3 (vs_peers.py, 3 seeds, two trials side by side); with every method on one slot the "
        "preset needs 0.38x / 0.66x / 0.26x"
    ),
)

PSL = MethodPreset(
    name="psl",
    summary=(
        "Pareto set learning: ONE network conditioned on the preference vector, trained on P preferences drawn "
        "every step, gives a continuous front for about the cost of P models; each epoch it is evaluated at N "
        "preferences, each a point of the trial on the front."
    ),
    paper=(
        "conditioning lowrank: Chen & Kwok, Efficient Pareto Manifold Learning with Low-Rank Structure, ICML 2024; "
        "hyper: Navon, Shamsian, Chechik & Fetaya, Learning the Pareto Front with Hypernetworks, ICLR 2021; "
        "film: Ruchte & Grabocka, Scalable Pareto Front Approximation for Deep Multi-Objective Learning (COSMOS), "
        "ICDM 2021, whose cosine penalty is cosmos_penalty"
    ),
    solver="linear",
    population={
        "psl": {
            "conditioning": "auto",
            "rank": 4,
            "hidden": 64,
            "samples": 4,
            "concentration": 0.5,
            "cosmos_penalty": 0.0,
        }
    },
    why=(
        "benchmarks/psl_evidence.py defaults (the table in its docstring; one seed, P = 4, Dirichlet 1, "
        "11 points, toy2d/ZDT1 6 epochs at lr 0.02, Multi-MNIST 2k images 10 epochs at lr 1e-3): conditioning hyper "
        "had the best validation HV on Multi-MNIST (linear 0.739 against lowrank 0.546 and film 0.573) and the widest "
        "ends there (accuracies 0.834-0.860 and 0.826-0.860; lowrank's and film's points nearly coincided, within "
        "0.01), and the smallest errors to ZDT1's optima; so auto = hyper up to 100k parameters of the problem's "
        "model, lowrank (which scales) above. linear: 0.739 against tchebycheff's 0.674 on Multi-MNIST; on a "
        "non-convex front (toy2d) linear finds only the ends (HV 0.07 against tchebycheff's 0.28 of at most 0.298 "
        "for 11 points): set `solver: tchebycheff` there. concentration 0.5: on a convex front uniform draws (1) "
        "left the end points 0.04-0.05 from their optima, 0.5 within 0.01 (tests/unit/trials/test_psl.py)"
    ),
)

PRESETS: dict[str, MethodPreset] = {MT2O.name: MT2O, PSL.name: PSL}


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, mapping by mapping (a distribution such as ``{choice: [...]}`` is a
    value: it replaces, it is not merged into)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping) and not _is_distribution(value):
            merged[key] = merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_distribution(value: Mapping[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)) in {"choice", "grid", "uniform", "loguniform", "quniform", "randint"}
