"""Lookahead and TAG's inter-task affinity: exact restore, the first-order identity, the probe's
invisibility to training, and the sign pattern on two related tasks and a conflicting one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from trials.affinity import AffinityProbe, measure_affinity
from trials.gradients import task_gradients
from trials.lookahead import flatten, optimizer_lookahead, sgd_lookahead, temporarily
from trials.loop import Trainer
from trials.models import MultiTaskModel
from trials.problems.base import Batch
from trials.problems.related_conflicting import RelatedConflicting
from trials.spec import OptimizerSpec, PopulationSpec, SpecError, TrialSpec
from trials.testing.contract import ConflictingRegression


def _state_copy(optimizer: torch.optim.Optimizer) -> list[dict]:
    return [copy.deepcopy(dict(optimizer.state[p])) for g in optimizer.param_groups for p in g["params"]]


def _same_state(a: list[dict], b: list[dict]) -> bool:
    for sa, sb in zip(a, b, strict=True):
        if sa.keys() != sb.keys():
            return False
        for key in sa:
            x, y = sa[key], sb[key]
            if isinstance(x, torch.Tensor) and not torch.equal(x, y):
                return False
            if not isinstance(x, torch.Tensor) and x != y:
                return False
    return True


# -- lookahead ---------------------------------------------------------------------------------


def test_temporarily_restores_bitwise_even_after_an_exception() -> None:
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(7))]
    before = [p.detach().clone() for p in params]
    values = [p.detach() + 0.1234567 for p in params]  # a step whose undo by subtraction would round
    with temporarily(params, values):
        assert all(torch.equal(p, v) for p, v in zip(params, values, strict=True))
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    with pytest.raises(RuntimeError, match="boom"), temporarily(params, values):
        raise RuntimeError("boom")
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_sgd_lookahead_is_theta_minus_lr_g() -> None:
    params = [nn.Parameter(torch.tensor([1.0, 2.0])), nn.Parameter(torch.tensor([[3.0]]))]
    values = sgd_lookahead(params, torch.tensor([1.0, -1.0, 10.0]), lr=0.5)
    assert torch.equal(flatten(values), torch.tensor([0.5, 2.5, -2.0]))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
        (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        (torch.optim.Adam, {"lr": 0.01}),
        (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    ],
)
def test_optimizer_lookahead_is_the_real_next_step_and_mutates_nothing(cls, kwargs) -> None:
    torch.manual_seed(0)
    shared, head = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))
    optimizer = cls([shared, head], **kwargs)
    for _ in range(3):  # build up momentum / moments
        shared.grad, head.grad = torch.randn(4, 3), torch.randn(3)
        optimizer.step()
    grad = torch.randn(12)
    params_before, state_before = shared.detach().clone(), _state_copy(optimizer)
    lookahead = optimizer_lookahead(optimizer, [shared], grad)
    assert torch.equal(shared, params_before) and _same_state(state_before, _state_copy(optimizer))
    shared.grad, head.grad = grad.view(4, 3).clone(), None
    optimizer.step()  # the real step with the same gradient
    assert torch.equal(lookahead[0], shared.detach())


# -- the affinity itself -----------------------------------------------------------------------


def _double_batch(problem: RelatedConflicting, n: int = 64) -> Batch:
    x, y = problem.data["train"]
    return Batch(x[:n].double(), tuple(y[:n, t].double() for t in range(problem.num_tasks)))


def test_small_step_affinity_is_the_scaled_gradient_inner_product() -> None:
    """Z(i→j) = 1 − L_j(θ − ηg_i)/L_j(θ) = η⟨g_i, g_j⟩/L_j + O(η²): checked in float64 for every pair."""
    problem = RelatedConflicting()
    torch.manual_seed(0)
    model = problem.make_model().double()
    batch = _double_batch(problem)
    lr = 1e-5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    z = measure_affinity(model, optimizer, problem, batch, lookahead="sgd")
    losses = problem.task_losses(model(batch.inputs), batch)
    g = task_gradients(losses, model.shared_parameters()).detach()
    expected = lr * (g @ g.T) / losses.detach()[None, :]
    assert (expected < 0).any() and (expected > 0).any()  # both signs occur: a real check of the sign
    assert torch.allclose(z, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))


def test_measuring_changes_nothing() -> None:
    problem = RelatedConflicting()
    torch.manual_seed(0)
    model = problem.make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = next(problem.train_batches(torch.Generator().manual_seed(0)))
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    for lookahead in ("optimizer", "sgd"):
        measure_affinity(model, optimizer, problem, batch, lookahead=lookahead)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())


class _NoisyModelProblem(ConflictingRegression):
    """The contract problem with batch norm and dropout in the trunk: a probe that ran forward
    passes carelessly would move the running statistics and the dropout RNG."""

    def make_model(self) -> MultiTaskModel:
        trunk = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.3))
        return MultiTaskModel(trunk, [nn.Linear(8, 1) for _ in self.task_names])


def _trainer(every: int, **changes) -> Trainer:
    spec = TrialSpec(
        problem="contract",
        epochs=3,
        population=PopulationSpec(size=3),
        optimizer=OptimizerSpec(name="sgd", lr=0.05, momentum=0.9),
        affinity_every=every,
        **changes,
    )
    return Trainer(spec, problem=_NoisyModelProblem(num_tasks=3))


def test_the_probe_leaves_training_bit_identical() -> None:
    off = _trainer(0)  # each trainer seeds the global RNG when built
    off.run()
    rng_off = torch.get_rng_state()
    on = _trainer(1)
    on.run()
    assert torch.equal(rng_off, torch.get_rng_state())  # same global RNG afterwards
    for a, b in zip(off.history, on.history, strict=True):
        assert [m.metrics for m in a.members] == [m.metrics for m in b.members]
        assert [m.train_losses for m in a.members] == [m.train_losses for m in b.members]
    for wa, wb in zip(off.member_weights(), on.member_weights(), strict=True):
        assert all(torch.equal(wa[k], wb[k]) for k in wa)  # incl. batch-norm running statistics
    assert "affinity" not in off.history[-1].extra and "affinity" in on.history[-1].extra


def test_epoch_means_and_running_total() -> None:
    trainer = _trainer(3)  # 4 steps an epoch: measured at steps 0, 3 | 6 | 9
    trainer.run()
    counts = [r.extra["affinity_measurements"] for r in trainer.history]
    assert counts == [2, 1, 1]
    means = torch.tensor([r.extra["affinity"] for r in trainer.history], dtype=torch.float64)
    assert means.shape == (3, 3, 3) and torch.isfinite(means).all()
    totals = torch.tensor([r.extra["affinity_total"] for r in trainer.history], dtype=torch.float64)
    assert torch.allclose(totals, means.cumsum(0))
    assert trainer.history[-1].extra["affinity_tasks"] == ["t0", "t1", "t2"]


def test_a_resumed_run_continues_the_total(tmp_path) -> None:
    whole = _trainer(1)
    whole.run()
    first = _trainer(1)
    first.train_epoch()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = _trainer(1)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    resumed.run()
    assert resumed.history[-1].extra["affinity_total"] == whole.history[-1].extra["affinity_total"]


def test_invalid_affinity_settings_name_the_field() -> None:
    with pytest.raises(SpecError, match=r"`affinity_every` must be an integer >= 0 \(0 = off\), found -1"):
        TrialSpec(problem="x", affinity_every=-1)
    with pytest.raises(SpecError, match=r"`affinity_lookahead` must be optimizer or sgd, found 'adam'"):
        TrialSpec(problem="x", affinity_lookahead="adam")
    with pytest.raises(ValueError, match="affinity_every"):
        AffinityProbe(0)


# -- the claim on two related tasks and a conflicting one ----------------------------------------


def related3_affinity(optimizer: OptimizerSpec, lookahead: str, seed: int = 0, epochs: int = 20) -> torch.Tensor:
    spec = TrialSpec(
        problem="related3",
        optimizer=optimizer,
        epochs=epochs,
        seed=seed,
        affinity_every=1,
        affinity_lookahead=lookahead,  # type: ignore[arg-type]
    )
    trainer = Trainer(spec, problem=RelatedConflicting(seed=seed))
    trainer.run()
    return torch.tensor(trainer.history[-1].extra["affinity_total"])


@pytest.mark.parametrize(
    ("optimizer", "lookahead"),
    [(OptimizerSpec(name="sgd", lr=0.05), "sgd"), (OptimizerSpec(name="adam", lr=0.01), "optimizer")],
    ids=["sgd", "adam-optimizer-lookahead"],
)
def test_related_pair_helps_each_other_and_the_conflicting_task_hurts(optimizer, lookahead) -> None:
    for seed in (0, 1):
        z = related3_affinity(optimizer, lookahead, seed)
        assert z[0, 1] > 0 and z[1, 0] > 0, z  # related_a <-> related_b
        assert z[0, 2] <= 0 and z[1, 2] <= 0, z  # toward the conflicting task
        assert z[2, 0] <= 0 and z[2, 1] <= 0, z  # and from it
