"""The measurements behind the defaults of the tabular problems (trials/problems/river_flow.py and
movielens.py): which rf1 sites conflict, and how far rating and watch pull MovieLens apart.

    .venv/bin/python benchmarks/tabular_conflict.py river-sites   # ~1 min on one thread
    .venv/bin/python benchmarks/tabular_conflict.py river-front   # ~15 s
    .venv/bin/python benchmarks/tabular_conflict.py movielens     # ~25 s

``river-sites``: one model on all 8 sites (hidden 32, equal weights, Adam 1e-3, 20 epochs, data seeds
0-2); from the third epoch on, at every step, the cosine between every two sites' loss gradients on
the trunk. Prints the mean cosine matrix and the triples with the lowest (most conflicting) and
highest mean pairwise cosine.

``river-front`` and ``movielens``: the default problem (seed 0) trained with Adam 3e-3 at one-hot,
near-one-hot and equal weights, val objectives; then, for the one-hot models, the trunk frozen and
every head refit (Adam 1e-2): what a trunk trained for one task offers the others.

Needs the offline data (`make data`). Timings depend on the machine; the problems' docstrings quote
the numbers of a run on 2 shared CPU cores.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from trials.data.tabular import RIVER_FLOW_SITES
from trials.problems.base import Problem
from trials.problems.movielens import MovieLens
from trials.problems.river_flow import RiverFlow

CPU = torch.device("cpu")


def train(problem: Problem, weights: tuple[float, ...], epochs: int, lr: float = 3e-3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = problem.make_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen, w = torch.Generator().manual_seed(0), torch.tensor(weights)
    for _ in range(epochs):
        for batch in problem.train_batches(gen):
            opt.zero_grad()
            (w * problem.task_losses(model(batch.inputs), batch)).sum().backward()
            opt.step()
    return model


def refit_heads(problem: Problem, model: torch.nn.Module, epochs: int) -> dict[str, float]:
    for p in model.trunk.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([p for h in model.heads for p in h.parameters()], lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for batch in problem.train_batches(gen):
            opt.zero_grad()
            problem.task_losses(model(batch.inputs), batch).sum().backward()
            opt.step()
    return problem.evaluate(model, "val", CPU)


def _fmt(result: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in result.items())


def river_sites() -> None:
    sites = RIVER_FLOW_SITES
    cos_sum, count = torch.zeros(8, 8), 0
    for seed in (0, 1, 2):
        problem = RiverFlow(sites=sites, hidden=32, seed=seed)
        torch.manual_seed(seed)
        model = problem.make_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        params, gen = model.shared_parameters(), torch.Generator().manual_seed(seed)
        for epoch in range(20):
            for batch in problem.train_batches(gen):
                losses = problem.task_losses(model(batch.inputs), batch)
                if epoch >= 2:  # zero-initialized heads give the trunk no gradient at first
                    grads = torch.stack(
                        [
                            torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])
                            for loss in losses
                        ]
                    )
                    unit = torch.nn.functional.normalize(grads, dim=1)
                    cos_sum += unit @ unit.T
                    count += 1
                opt.zero_grad()
                losses.mean().backward()
                opt.step()
        print(f"seed {seed}: val {_fmt(problem.evaluate(model, 'val', CPU))}", flush=True)
    cos = cos_sum / count
    print("mean pairwise trunk-gradient cosine\n       " + " ".join(f"{s:>6}" for s in sites))
    for i, s in enumerate(sites):
        print(f"{s:>6} " + " ".join(f"{cos[i, j]:6.3f}" for j in range(8)))
    triples = sorted(
        ((cos[i, j] + cos[i, k] + cos[j, k]).item() / 3, (sites[i], sites[j], sites[k]))
        for i, j, k in itertools.combinations(range(8), 3)
    )
    print("most conflicting triples:", [(round(c, 3), t) for c, t in triples[:5]])
    print("most aligned triples:", [(round(c, 3), t) for c, t in triples[-3:]])


def front(problem: Problem, weightings: list[tuple[float, ...]], epochs: int, refit_epochs: int) -> None:
    print(f"{problem.name}: reference point {problem.default_reference_point}")
    for weights in weightings:
        start = time.process_time()  # CPU time of one thread: what a neighbour's load does not inflate
        model = train(problem, weights, epochs)
        per_epoch = (time.process_time() - start) / epochs
        result = problem.evaluate(model, "val", CPU)
        line = f"{tuple(round(w, 2) for w in weights)} ({per_epoch:.2f} CPU s/epoch): {_fmt(result)}"
        if max(weights) == 1.0:
            line += f" | heads refit on its trunk: {_fmt(refit_heads(problem, model, refit_epochs))}"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["river-sites", "river-front", "movielens"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "river-sites":
        river_sites()
    elif args.what == "river-front":
        weightings = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
        weightings += [(0.9, 0.05, 0.05), (0.05, 0.9, 0.05), (0.05, 0.05, 0.9), (1 / 3, 1 / 3, 1 / 3)]
        front(RiverFlow(), weightings, epochs=10, refit_epochs=2)
    else:
        front(MovieLens(), [(1.0, 0.0), (0.9, 0.1), (0.5, 0.5), (0.1, 0.9), (0.0, 1.0)], epochs=5, refit_epochs=2)


if __name__ == "__main__":
    main()
