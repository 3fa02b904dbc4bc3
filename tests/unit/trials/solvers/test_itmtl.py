"""IT-MTL: applies the candidate with the largest lookahead transference, measured independently
here, and leaves the parameters exactly as they were (the lookahead is undone bitwise)."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch.func import functional_call

from trials.gradients import task_gradients
from trials.solvers import StepContext, build_solver
from trials.solvers.itmtl import ITMTL
from trials.solvers.pcgrad import project_conflicting
from trials.spec import OptimizerSpec
from trials.testing.contract import ConflictingRegression, SolverContract


class TestITMTLContract(SolverContract):
    solver = "itmtl"
    valid_params: ClassVar = {"candidates": ["mean", "pcgrad", "task:0"], "lookahead_lr": 0.01, "seed": 3}
    invalid_params: ClassVar = [
        ({"candidates": []}, "candidates"),
        ({"candidates": ["mean", "median"]}, "candidates"),
        ({"candidates": ["mean", "mean"]}, "candidates"),
        ({"candidates": ["task:2"]}, "candidates"),  # only 2 tasks
        ({"candidates": "mean"}, "candidates"),
        ({"lookahead_lr": 0.0}, "lookahead_lr"),
        ({"lookahead_lr": -1.0}, "lookahead_lr"),
        ({"lookahead": "adam"}, "lookahead"),
        ({"lookahead": "optimizer", "lookahead_lr": 0.1}, "lookahead_lr"),
        ({"seed": -1}, "seed"),
    ]


class TestITMTLOptimizerLookaheadContract(SolverContract):
    solver = "itmtl"
    valid_params: ClassVar = {"lookahead": "optimizer"}
    num_tasks = 3
    optimizer = OptimizerSpec(name="adam", lr=0.01)
    steps = 24


CANDIDATES = ("mean", "pcgrad", "equal", "task:0", "task:1", "task:2")


def _independent_transference(model, problem, batch, direction: torch.Tensor, lr: float) -> float:
    """Σ_j (1 − L_j(θ_s − η·c)/L_j(θ_s)) with functional_call: no in-place changes, no shared code."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    shared_names = [name for name, p in model.named_parameters() if any(p is q for q in model.shared_parameters())]
    stepped, offset = dict(params), 0
    for name in shared_names:
        n = params[name].numel()
        stepped[name] = params[name] - lr * direction[offset : offset + n].view_as(params[name])
        offset += n
    with torch.no_grad():
        before = problem.task_losses(functional_call(model, params, (batch.inputs,)), batch)
        after = problem.task_losses(functional_call(model, stepped, (batch.inputs,)), batch)
    return float((1 - after / before).sum())


def test_applies_the_candidate_with_the_largest_transference_and_restores_parameters() -> None:
    problem = ConflictingRegression(num_tasks=3, seed=2)
    torch.manual_seed(0)
    model = problem.make_model()
    lr = 0.05
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    preference = torch.tensor([0.5, 0.3, 0.2])
    solver = build_solver("itmtl", 3, preference, {"candidates": list(CANDIDATES)})
    assert isinstance(solver, ITMTL)
    winners = set()
    for step, batch in enumerate(problem.train_batches(torch.Generator().manual_seed(0))):
        for _ in range(6):  # several steps on each batch, so the winner changes over training
            optimizer.zero_grad(set_to_none=True)
            losses = problem.task_losses(model(batch.inputs), batch)
            shared = model.shared_parameters()
            g = task_gradients(losses, shared).detach()
            # the candidates, built here from their definitions
            order = solver.order(step)
            weights = preference.to(g)
            directions = {
                "mean": weights @ g,
                "pcgrad": weights @ project_conflicting(g, order),
                "equal": g.mean(0),
                "task:0": g[0],
                "task:1": g[1],
                "task:2": g[2],
            }
            scores = {n: _independent_transference(model, problem, batch, d, lr) for n, d in directions.items()}
            expected = max(scores, key=scores.__getitem__)
            before = [p.detach().clone() for p in model.parameters()]
            ctx = StepContext(
                losses=losses,
                model=model,
                optimizer=optimizer,
                step=step,
                task_gradients=g,
                closure=lambda batch=batch: problem.task_losses(model(batch.inputs), batch),
            )
            solver.backward(ctx)
            assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
            applied = torch.cat([p.grad.reshape(-1) for p in shared])
            assert torch.equal(applied, directions[expected].to(applied)), (step, scores)
            for t in range(3):  # heads: the preference-weighted task gradient
                (head_grad,) = torch.autograd.grad(
                    problem.task_losses(model(batch.inputs), batch)[t], model.task_parameters(t)[0]
                )
                assert torch.allclose(model.task_parameters(t)[0].grad, preference[t].float() * head_grad)
            winners.add(expected)
            optimizer.step()
    assert len(winners) >= 2, winners  # the choice is a real one on this problem
    diagnostics = solver.diagnostics()
    assert sum(diagnostics.values()) == pytest.approx(1.0) and "chosen/task_0" in diagnostics
