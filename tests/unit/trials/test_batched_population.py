"""The batched population (trials/batched.py) makes the same updates as the sequential one.

Run on the CPU with `execution: batched` forced (a GPU picks it by itself under `auto`): the losses of
every step, the parameters and the optimizer moments after training agree with the member-by-member
path to float tolerance, transfer included; the members' own parameters stay the stack's memory; a
checkpoint moves between the two paths; and what cannot run batched says why.
"""

from __future__ import annotations

import pytest
import torch

from trials.loop import Trainer
from trials.problems import make_problem
from trials.spec import OptimizerSpec, PopulationSpec, TransferSpec, TrialSpec
from trials.testing.contract import ConflictingRegression

# Float tolerance: a batched convolution or matmul sums in another order than K separate ones, so
# the two paths differ by rounding (~1e-7 relative per step) that a few dozen Adam steps amplify.
RTOL, ATOL = 1e-4, 1e-5
MULTI_MNIST_ARGS = {"n_train": 512, "n_val": 64, "n_test": 64, "batch_size": 64}


def _spec(execution: str, **overrides) -> TrialSpec:
    transfer = overrides.pop("transfer", TransferSpec(eps0=0.3, period=3))
    base = dict(
        problem="contract",
        solver="linear",
        epochs=2,
        seed=5,
        optimizer=OptimizerSpec(name="adam", lr=0.01, schedule="cosine"),
        population=PopulationSpec(size=4, transfer=transfer, execution=execution),
    )
    base.update(overrides)
    return TrialSpec(**base)


def _assert_same_training(sequential: Trainer, batched: Trainer, rtol: float = RTOL, atol: float = ATOL) -> None:
    for seq_report, bat_report in zip(sequential.history, batched.history, strict=True):
        for seq_member, bat_member in zip(seq_report.members, bat_report.members, strict=True):
            assert bat_member.train_losses == pytest.approx(seq_member.train_losses, rel=rtol, abs=atol)
            assert bat_member.metrics == pytest.approx(seq_member.metrics, rel=rtol, abs=atol)
    for seq_member, bat_member in zip(sequential.population.members, batched.population.members, strict=True):
        for (name, p_seq), p_bat in zip(
            seq_member.model.named_parameters(), bat_member.model.parameters(), strict=True
        ):
            torch.testing.assert_close(p_bat, p_seq, rtol=rtol, atol=atol, msg=f"member {seq_member.index} {name}")
        seq_state = seq_member.optimizer.state_dict()["state"]
        bat_state = bat_member.optimizer.state_dict()["state"]
        assert seq_state.keys() == bat_state.keys()
        for index, moments in seq_state.items():
            for key, value in moments.items():  # Adam's moments and step, SGD's momentum buffer
                torch.testing.assert_close(bat_state[index][key], value, rtol=rtol, atol=atol)


@pytest.mark.parametrize("solver", ["linear", "tchebycheff", "dwa", "uncertainty"])
def test_every_losses_only_solver_trains_the_same_batched(solver: str) -> None:
    problem = ConflictingRegression()
    sequential = Trainer(_spec("sequential", solver=solver, epochs=3), problem=problem)
    batched = Trainer(_spec("batched", solver=solver, epochs=3), problem=problem)
    assert not sequential.population.batched and batched.population.batched
    sequential.run()
    batched.run()
    _assert_same_training(sequential, batched)
    for seq_member, bat_member in zip(sequential.population.members, batched.population.members, strict=True):
        # The solvers' own state (DWA's loss history, uncertainty's log-variances, Tchebycheff's ideal
        # point) moved the same way from the proxies' losses.
        for key, value in seq_member.solver.state_dict().items():
            torch.testing.assert_close(bat_member.solver.state_dict()[key], value, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "transfer", [TransferSpec(eps0=0.3, period=2), TransferSpec(rule="mtgd", alpha=1.0)], ids=["periodic", "mtgd"]
)
def test_lenet_population_with_transfer_trains_the_same_batched(transfer: TransferSpec) -> None:
    """MT2O on Multi-MNIST's LeNets: convolutions batched by vmap, transfer mixing the members in place.

    SGD with momentum, not Adam: Adam's first step is ±lr wherever a gradient is near its ε, so the
    ~1e-7 rounding of a batched convolution moves such weights by up to 4e-4 (measured). With SGD the
    parameters differ by ~1e-8 for the first steps and by ~2e-6 after one epoch (weights ~0.1); a ReLU
    that flips on a rounding difference moves single momentum entries by up to ~4e-5, hence atol 1e-4
    here and the tight first-step gradients in the next test. Adam's moments are compared on the
    regression problem above."""
    problem = make_problem("multi_mnist", MULTI_MNIST_ARGS)
    spec = dict(
        problem="multi_mnist",
        problem_args=MULTI_MNIST_ARGS,
        transfer=transfer,
        epochs=1,
        optimizer=OptimizerSpec(name="sgd", lr=0.05, momentum=0.9),
    )
    sequential = Trainer(_spec("sequential", **spec), problem=problem)
    batched = Trainer(_spec("batched", **spec), problem=problem)
    sequential.run()
    batched.run()
    _assert_same_training(sequential, batched, atol=1e-4)


def test_lenet_first_step_gradients_equal_the_sequential_ones() -> None:
    """The defining invariant: from the same parameters, the batched backward gives every member the
    gradient of its own scalarized loss (rounding aside)."""
    problem = make_problem("multi_mnist", MULTI_MNIST_ARGS)
    spec = dict(problem="multi_mnist", problem_args=MULTI_MNIST_ARGS, optimizer=OptimizerSpec(name="sgd", lr=1e-6))
    sequential = Trainer(_spec("sequential", **spec), problem=problem)
    batched = Trainer(_spec("batched", **spec), problem=problem)
    batch = next(iter(problem.train_batches(torch.Generator().manual_seed(0))))
    losses_seq = sequential.population.train_step(batch)
    losses_bat = batched.population.train_step(batch)
    torch.testing.assert_close(losses_bat, losses_seq, rtol=1e-6, atol=1e-6)
    for seq_member, bat_member in zip(sequential.population.members, batched.population.members, strict=True):
        for (name, p_seq), p_bat in zip(
            seq_member.model.named_parameters(), bat_member.model.parameters(), strict=True
        ):
            assert p_bat.grad is not None and p_seq.grad is not None
            torch.testing.assert_close(p_bat.grad, p_seq.grad, rtol=1e-5, atol=1e-7, msg=f"{name}")


def test_members_parameters_are_the_stacks_memory() -> None:
    """The optimizers step the members' own parameters; the stack must see every step without a copy."""
    trainer = Trainer(_spec("batched"), problem=ConflictingRegression())
    trainer.run()
    stacked = trainer.population.stacked
    assert stacked is not None
    for k, member in enumerate(trainer.population.members):
        for name, p in member.model.named_parameters():
            assert p.data_ptr() == stacked.stacked[name][k].data_ptr()
            assert torch.equal(p, stacked.stacked[name][k])


def test_a_replaced_parameter_is_relinked_with_its_value() -> None:
    trainer = Trainer(_spec("batched", epochs=1), problem=ConflictingRegression())
    member = trainer.population.members[2]
    name, p = next(iter(member.model.named_parameters()))
    p.data = torch.full_like(p.data, 0.25)  # someone swapped the tensor instead of writing in place
    stacked = trainer.population.stacked
    assert stacked is not None
    stacked.relink()
    assert p.data_ptr() == stacked.stacked[name][2].data_ptr()
    assert bool((stacked.stacked[name][2] == 0.25).all())


@pytest.mark.parametrize(("first", "second"), [("batched", "sequential"), ("sequential", "batched")])
def test_a_checkpoint_moves_between_the_paths(tmp_path, first: str, second: str) -> None:
    """A search checkpointed on a GPU (batched) resumes on a CPU (sequential) and back."""
    problem = ConflictingRegression()
    straight = Trainer(_spec(first, epochs=4), problem=problem)
    straight.run()
    half = Trainer(_spec(first, epochs=4), problem=problem)
    half.train_epoch()
    half.train_epoch()
    half.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = Trainer(_spec(second, epochs=4), problem=problem)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    resumed.run()
    _assert_same_training(straight, resumed)


def test_batched_resume_is_bit_identical(tmp_path) -> None:
    problem = ConflictingRegression()
    straight = Trainer(_spec("batched", epochs=4), problem=problem)
    straight.run()
    half = Trainer(_spec("batched", epochs=4), problem=problem)
    half.train_epoch()
    half.train_epoch()
    half.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = Trainer(_spec("batched", epochs=4), problem=problem)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    resumed.run()
    assert [[m.metrics for m in r.members] for r in resumed.history] == [
        [m.metrics for m in r.members] for r in straight.history
    ]


def test_auto_stays_sequential_on_the_cpu() -> None:
    trainer = Trainer(_spec("auto"), problem=ConflictingRegression())
    assert not trainer.population.batched


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"solver": "pcgrad"}, "solver 'pcgrad' reads more than its losses"),
        ({"solver": "gradnorm"}, "solver 'gradnorm' reads more than its losses"),
        (
            {"population": PopulationSpec(size=1, execution="batched")},
            "a population of one member has nothing to batch",
        ),
    ],
)
def test_what_cannot_run_batched_says_why(overrides: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=f"`population.execution` is batched, but {reason}"):
        Trainer(_spec("batched", **overrides), problem=ConflictingRegression())


def test_execution_is_validated_in_the_spec() -> None:
    with pytest.raises(ValueError, match=r"`population.execution` must be auto, sequential or batched, found 'gpu'"):
        PopulationSpec(size=2, execution="gpu")  # type: ignore[arg-type]


def test_a_checkpoint_from_before_execution_existed_still_resumes(tmp_path) -> None:
    """Checkpoints written before `population.execution` was added hold a spec without it."""
    problem = ConflictingRegression()
    first = Trainer(_spec("auto", epochs=2), problem=problem)
    first.train_epoch()
    state = first.state_dict()
    del state["spec"]["population"]["execution"]
    resumed = Trainer(_spec("auto", epochs=2), problem=problem)
    resumed.load_state_dict(state)
    assert resumed.epoch == 1
    other = Trainer(_spec("auto", epochs=2, seed=6), problem=problem)
    with pytest.raises(ValueError, match="different trial spec"):
        other.load_state_dict(state)


class _ItemLosses(ConflictingRegression):
    """A plug-in problem whose losses branch on a tensor's value in Python: vmap cannot trace that."""

    def task_losses(self, outputs, batch):
        losses = super().task_losses(outputs, batch)
        return losses * 2.0 if float(losses.detach().sum()) > 1e9 else losses


def test_auto_falls_back_to_sequential_when_the_problem_cannot_run_batched(monkeypatch) -> None:
    """Under `auto` on a GPU a plug-in problem vmap cannot trace trains one member after the other, with a
    warning that says why, rather than failing its trials; forcing `batched` fails loudly instead."""
    import trials.population

    monkeypatch.setattr(trials.population, "batches_by_default", lambda device: True)  # as on a GPU
    problem = _ItemLosses()
    auto = Trainer(_spec("auto"), problem=problem)
    assert auto.population.batched
    with pytest.warns(RuntimeWarning, match=r"cannot run batched \(.*\); its members run one after the other"):
        auto.run()
    assert not auto.population.batched
    sequential = Trainer(_spec("sequential"), problem=problem)
    sequential.run()
    assert [[m.metrics for m in r.members] for r in auto.history] == [
        [m.metrics for m in r.members] for r in sequential.history
    ]
    forced = Trainer(_spec("batched"), problem=problem)
    with pytest.raises(RuntimeError):
        forced.run()
