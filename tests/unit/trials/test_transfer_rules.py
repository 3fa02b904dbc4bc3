"""MT2O's transfer rules: the MTGD code's rule against an explicit two-member computation, the scope of what is
mixed, and ε0 = 0 as K independent runs bit for bit under every rule."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from trials.loop import Trainer, epoch_generator
from trials.population import Population
from trials.spec import OptimizerSpec, PopulationSpec, SpecError, TransferSpec, TrialSpec
from trials.testing.contract import ConflictingRegression
from trials.transfer import PeriodicTransfer, mtgd_relatedness

PREFS = ((0.8, 0.2), (0.3, 0.7))
SGD = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9)


def _population(transfer: TransferSpec, optimizer: OptimizerSpec = SGD, prefs=PREFS) -> tuple[Population, list]:
    problem = ConflictingRegression()
    spec = TrialSpec(
        problem="contract",
        solver="linear",
        population=PopulationSpec(size=len(prefs), preferences=prefs, transfer=transfer),
        optimizer=optimizer,
        epochs=3,
        seed=1,
    )
    torch.manual_seed(spec.seed)
    population = Population(problem, spec, torch.device("cpu"))
    batches = list(itertools.islice(itertools.cycle(problem.train_batches(epoch_generator(spec.seed, 0))), 6))
    return population, batches


def _trunk_names(model: torch.nn.Module) -> set[str]:
    shared = {id(p) for p in model.shared_parameters()}
    return {n for n, p in model.named_parameters() if id(p) in shared}


@pytest.mark.parametrize("scope", ["trunk", "all"])
def test_mtgd_step_equals_an_explicit_two_member_computation(scope: str) -> None:
    alpha = 2.0
    population, batches = _population(TransferSpec(rule="mtgd", alpha=alpha, scope=scope))
    for batch in batches[:3]:  # the members differ and carry momentum before the checked step
        population.train_step(batch)
    batch = batches[3]
    members = population.members
    lam = population.preferences.to(torch.float64)
    cosine = float(lam[0] @ lam[1] / (lam[0].norm() * lam[1].norm()))
    w = alpha * SGD.lr * cosine / (1 + cosine)  # w_kj = α·η0·r, r = c⁺/(1+c⁺)
    assert float(mtgd_relatedness(lam)[0, 1]) == pytest.approx(cosine / (1 + cosine), abs=1e-12)

    pre = [{n: p.detach().clone() for n, p in m.model.named_parameters()} for m in members]
    expected_params, expected_buffers = [], []
    for k, member in enumerate(members):
        # the member's own momentum-SGD step, from the gradient at its pre-mix parameters
        model = copy.deepcopy(member.model)
        losses = population.problem.task_losses(model(batch.inputs), batch)
        (population.preferences[k].to(losses.dtype) @ losses).backward()
        params, buffers = {}, {}
        for name, p in model.named_parameters():
            momentum = member.optimizer.state[dict(member.model.named_parameters())[name]]["momentum_buffer"]
            buffer = SGD.momentum * momentum + p.grad
            params[name] = pre[k][name] - SGD.lr * buffer
            buffers[name] = buffer
        mixed = _trunk_names(member.model) if scope == "trunk" else set(pre[k])
        for name in mixed:  # plus the pull toward the other member, from the pre-step parameters
            params[name] = params[name] + w * (pre[1 - k][name] - pre[k][name])
        expected_params.append(params)
        expected_buffers.append(buffers)

    population.train_step(batch)
    for k, member in enumerate(members):
        for name, p in member.model.named_parameters():
            assert torch.allclose(p, expected_params[k][name], atol=1e-6, rtol=0), (k, name)
            buffer = member.optimizer.state[p]["momentum_buffer"]
            assert torch.allclose(buffer, expected_buffers[k][name], atol=1e-6, rtol=0), (k, name)


def test_trunk_scope_leaves_the_heads_unmixed_under_either_rule() -> None:
    population, batches = _population(TransferSpec(rule="mtgd", alpha=2.0))  # mtgd's default scope: trunk
    for batch in batches[:3]:
        population.train_step(batch)
    models = [m.model for m in population.members]
    heads = [{n: p.detach().clone() for n, p in m.named_parameters() if n not in _trunk_names(m)} for m in models]
    trunks = [{n: p.detach().clone() for n, p in m.named_parameters() if n in _trunk_names(m)} for m in models]
    periodic = PeriodicTransfer(TransferSpec(eps0=0.5, period=1, scope="trunk"), population.preferences, 100)
    periodic.apply(models, step=1)
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            if name in heads[k]:
                assert torch.equal(p, heads[k][name]), name
            else:
                assert not torch.equal(p, trunks[k][name]), name
    assert population.transfer.spec.mixed_scope == "trunk"


@pytest.mark.parametrize(
    "transfer",
    [
        TransferSpec(eps0=0.0),
        TransferSpec(eps0=0.0, mode="beneficial"),
        TransferSpec(alpha=0.0, rule="mtgd"),
        TransferSpec(alpha=0.0, rule="mtgd", mode="beneficial", scope="all", lr_tied=True),
    ],
    ids=["periodic", "periodic-beneficial", "mtgd", "mtgd-beneficial-all"],
)
def test_eps0_zero_is_k_independent_runs_bit_for_bit_under_every_rule(transfer: TransferSpec) -> None:
    optimizer = OptimizerSpec(name="adam", lr=0.01, schedule="cosine")
    common = dict(problem="contract", solver="linear", epochs=3, seed=5, optimizer=optimizer)
    problem = ConflictingRegression()
    population = Trainer(TrialSpec(**common, population=PopulationSpec(2, PREFS, transfer)), problem=problem)
    population.run()
    for k in range(2):
        single = Trainer(TrialSpec(**common, population=PopulationSpec(1, (PREFS[k],))), problem=problem)
        single.run()
        for p_pop, p_single in zip(
            population.population.members[k].model.parameters(),
            single.population.members[0].model.parameters(),
            strict=True,
        ):
            assert torch.equal(p_pop, p_single)


def test_mtgd_transfer_changes_the_members_and_beneficial_may_refuse() -> None:
    plain, batches = _population(TransferSpec(eps0=0.0))
    mixed, _ = _population(TransferSpec(rule="mtgd", alpha=2.0))
    for batch in batches:
        plain.train_step(batch)
        mixed.train_step(batch)
    trunk = next(iter(_trunk_names(plain.members[0].model)))
    assert not torch.equal(
        dict(plain.members[0].model.named_parameters())[trunk], dict(mixed.members[0].model.named_parameters())[trunk]
    )
    beneficial, _ = _population(TransferSpec(rule="mtgd", alpha=2.0, mode="beneficial", period=2))
    for batch in batches:
        beneficial.train_step(batch)
    assert set(beneficial.transfer.mask.flatten().tolist()) <= {0.0, 1.0}


def test_mtgd_lr_tied_follows_the_schedule() -> None:
    population, batches = _population(
        TransferSpec(rule="mtgd", alpha=1.0, lr_tied=True), OptimizerSpec(name="sgd", lr=0.1, schedule="cosine")
    )
    population.train_step(batches[0])
    tied = population.transfer.weights([0.05, 0.05])
    untied = population.transfer.weights([0.1, 0.1])
    assert torch.allclose(tied * 2, untied)


def test_mtgd_refuses_a_pull_that_overshoots() -> None:
    with pytest.raises(ValueError, match=r"pulls a member by Σ_j w_kj = .* >= 1 per step; make α·lr smaller"):
        _population(TransferSpec(rule="mtgd", alpha=100.0), OptimizerSpec(name="sgd", lr=0.1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rule": "gossip"}, r"`population.transfer.rule` must be periodic or mtgd, found 'gossip'"),
        ({"rule": "periodic", "eps0": 2.0}, r"`population.transfer.eps0` must be in \[0, 1\], found 2.0"),
        ({"rule": "mtgd", "alpha": -1.0}, r"`population.transfer.alpha` must be a float >= 0, found -1.0"),
        ({"rule": "mtgd", "eps0": -1.0}, r"`population.transfer.alpha` must be a float >= 0, found -1.0"),
        ({"rule": "periodic", "alpha": 1.0}, r"`population.transfer.alpha` must be unset under rule periodic"),
        ({"rule": "mtgd", "eps0": 1.0, "alpha": 1.0}, r"`population.transfer.eps0` must be unset under rule mtgd"),
        ({"scope": "heads"}, r"`population.transfer.scope` must be trunk or all"),
    ],
)
def test_invalid_transfer_names_the_field(data, message) -> None:
    with pytest.raises(SpecError, match=message):
        TransferSpec(**data)


def test_unset_eps0_under_mtgd_is_the_codes_alpha() -> None:
    population, _ = _population(TransferSpec(rule="mtgd"))
    assert population.transfer.alpha == 1.0


def test_eps0_under_mtgd_is_the_old_spelling_of_alpha_and_trains_the_same() -> None:
    """Configs and checkpoints written before α had a field of its own gave it as eps0: they load as that α."""
    old, new = TransferSpec(rule="mtgd", eps0=2.0), TransferSpec(rule="mtgd", alpha=2.0)
    assert old == new and (old.eps0, old.alpha, old.strength) == (None, 2.0, 2.0)
    before, batches = _population(old)
    after, _ = _population(new)
    for batch in batches[:4]:
        before.train_step(batch)
        after.train_step(batch)
    for a, b in zip(before.members, after.members, strict=True):
        for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
            assert torch.equal(pa, pb)
