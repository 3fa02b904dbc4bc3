"""GPU paths checked on a machine without one: what a GPU user meets is refused in one line before anything starts
(a device a Ray trial cannot see, GPUs asked of a torch without CUDA), GPU probe tasks do not leave their worker
behind, the batched population reports out of memory instead of hiding it, and a GPU trainer sets the deterministic
kernels its bit-identical resume needs. benchmarks/gpu_smoke.sh checks the same on a real GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import ray
import torch
import yaml

import trials.loop
import trials.population
from pareto_search.cli import main
from pareto_search.config import ConfigError, ResourcesConfig, parse_config
from pareto_search.devices import (
    NoCudaForAssignedGpu,
    check_assigned_gpus_usable,
    check_torch_has_cuda,
    check_trial_device,
)
from pareto_search.plan import make_plan
from pareto_search.search import lr_probe, resources, runner
from trials.batched import StackedMembers
from trials.loop import Trainer
from trials.spec import OptimizerSpec, PopulationSpec, TransferSpec, TrialSpec
from trials.testing.contract import ConflictingRegression

REPO = Path(__file__).resolve().parents[3]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine's torch has CUDA: nothing to refuse")


# -- `device` under Ray ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "gpus"), [("auto", 0), ("cpu", 0), ("cuda", 0.5), ("cuda:0", 0.25), ("cuda:0", 1), ("cuda:1", 2)]
)
def test_devices_a_trial_can_see_are_accepted(device: str, gpus: float) -> None:
    check_trial_device(device, ResourcesConfig(gpus_per_trial=gpus))


@pytest.mark.parametrize(
    ("device", "gpus", "message"),
    [
        (
            "cuda:1",
            1,
            r"`device` is 'cuda:1' but under Ray a trial sees only the GPU it was given .*allowed: auto, "
            r"cuda, cuda:0 \(Ray chooses",
        ),
        ("cuda:1", 0.5, r"`resources.gpus_per_trial` is 0.5\), numbered from cuda:0; allowed: auto, cuda, cuda:0 "),
        ("cuda:3", 2, r"sees only the 2 GPUs it was given .*allowed: auto, cuda, cuda:0 … cuda:1 "),
        ("cuda:0", 0, r"`device` is 'cuda:0' but `resources.gpus_per_trial` is 0; give trials a GPU"),
    ],
)
def test_a_device_no_trial_could_see_is_refused(device: str, gpus: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        check_trial_device(device, ResourcesConfig(gpus_per_trial=gpus))
    assert "\n" not in str(refused.value)


def _config(tmp_path: Path, **changes: Any) -> Path:
    config = {
        "name": "gpu",
        "problem": {"name": "toy2d"},
        "reference_point": [1.0, 1.0],
        "epochs": 1,
        "solvers": [{"solver": "linear", "optimizer": {"lr": 0.01}}],
        "tracking": {"uri": f"sqlite:///{tmp_path}/m.db"},
        **changes,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _refused_before_anything(tmp_path: Path, capsys, path: Path) -> str:
    assert not ray.is_initialized()
    assert main(["run", str(path), "--storage", str(tmp_path / "searches")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pareto-search run: error: "), err
    assert not ray.is_initialized(), "a refused config started Ray"
    assert not (tmp_path / "searches").exists(), "a refused config wrote its search"
    return err


def test_run_refuses_a_gpu_index_the_trial_cannot_see(tmp_path, capsys) -> None:
    path = _config(tmp_path, device="cuda:1", resources={"gpus_per_trial": 1})
    err = _refused_before_anything(tmp_path, capsys, path)
    assert "`device` is 'cuda:1' but under Ray a trial sees only the GPU it was given" in err
    with pytest.raises(ConfigError, match="under Ray a trial sees only"):  # where the search is planned
        make_plan(parse_config(yaml.safe_load(path.read_text())))


# -- GPUs asked of a torch without CUDA -----------------------------------------------------------------------------


@no_cuda
def test_gpus_asked_of_a_torch_without_cuda_are_refused_by_name() -> None:
    """A GPU machine (Ray counts its GPUs from the driver, not from torch) whose torch is the CPU build: every trial
    would be given a GPU and train on the CPU without a word."""
    gpu_node = [{"CPU": 4.0, "GPU": 1.0}]
    with pytest.raises(ConfigError) as refused:
        resources.check_requests_fit(ResourcesConfig(gpus_per_trial=0.5), gpu_node)
    message = str(refused.value)
    assert message.startswith("`resources.gpus_per_trial` is 0.5 but the installed torch ")
    assert torch.__version__ in message and "built without CUDA: its trials would train on the CPU" in message
    assert "or set it to 0" in message and "\n" not in message
    resources.check_requests_fit(ResourcesConfig(gpus_per_trial=0), gpu_node)  # CPU trials: nothing to say


@no_cuda
def test_a_cuda_build_without_a_usable_device_says_so(monkeypatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    with pytest.raises(ConfigError, match=r"finds no usable CUDA device or driver here: its trials would train"):
        check_torch_has_cuda(ResourcesConfig(gpus_per_trial=1))


@no_cuda
def test_run_refuses_gpu_trials_on_a_torch_without_cuda(tmp_path, capsys, monkeypatch) -> None:
    """Through the CLI, on a machine whose Ray finds a GPU: one line, exit 2, before Ray starts."""
    monkeypatch.setattr(runner, "node_resources", lambda: [{"CPU": 2.0, "GPU": 1.0}])
    err = _refused_before_anything(tmp_path, capsys, _config(tmp_path, resources={"gpus_per_trial": 0.5}))
    assert "`resources.gpus_per_trial` is 0.5 but the installed torch" in err and "built without CUDA" in err


# -- the probe's GPU tasks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gpus", "max_calls"), [(0.5, 1), (1, 1), (0, 0)])
def test_gpu_probe_tasks_do_not_leave_their_worker_behind(gpus: float, max_calls: int) -> None:
    """A GPU candidate's worker exits after its task (its CUDA context with it); a CPU one stays for reuse."""
    options = lr_probe.candidate_task_options(ResourcesConfig(cpus_per_trial=2, gpus_per_trial=gpus))
    assert options == {
        "num_cpus": 2.0,
        "num_gpus": float(gpus),
        "num_returns": "streaming",
        "max_retries": 0,
        "max_calls": max_calls,
    }
    task = ray.remote(**options)(lr_probe._train_candidate)  # what Ray takes from them (no Ray needed to build it)
    assert task._default_options["max_calls"] == max_calls and task._max_calls == max_calls


def test_the_probe_submits_its_candidates_with_those_options(tmp_path, monkeypatch) -> None:
    seen: dict[str, Any] = {}

    class Submitted(Exception):
        pass

    def remote(**options: Any):
        seen.update(options)
        raise Submitted

    monkeypatch.setattr(lr_probe.ray, "remote", remote)
    config = parse_config(yaml.safe_load(_config(tmp_path, resources={"gpus_per_trial": 1}).read_text()))
    plan = make_plan(config)
    with pytest.raises(Submitted):
        lr_probe._run_candidates(plan, [], lambda line: None)
    assert seen["num_gpus"] == 1.0 and seen["max_calls"] == 1


@no_cuda
def test_a_gpu_probe_task_on_a_torch_without_cuda_fails_instead_of_training_on_the_cpu(tmp_path, monkeypatch) -> None:
    """On a cluster the driver cannot see the workers' torch: the candidate itself says so (the probe then stops the
    search: every candidate failed), before it trains anything."""
    monkeypatch.setattr(lr_probe.ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(lr_probe, "_train", lambda *args: pytest.fail("trained on the CPU"))
    config = parse_config(yaml.safe_load(_config(tmp_path, resources={"gpus_per_trial": 1}).read_text()))
    candidate = lr_probe._train_candidate(lr_probe.probe_spec(config, 0, 0.01), 1, ("f1", "f2"), 1)
    assert next(candidate) == "started"
    with pytest.raises(NoCudaForAssignedGpu, match=r"Ray gave this worker GPU 0 but its torch .* built without CUDA"):
        next(candidate)
    check_assigned_gpus_usable([])  # a CPU task: nothing to say


# -- the batched population's fallback ----------------------------------------------------------------------------


def _spec(execution: str = "auto", epochs: int = 1) -> TrialSpec:
    return TrialSpec(
        problem="contract",
        solver="linear",
        epochs=epochs,
        seed=5,
        optimizer=OptimizerSpec(name="adam", lr=0.01),
        population=PopulationSpec(size=3, transfer=TransferSpec(eps0=0.3, period=3), execution=execution),
    )


@pytest.fixture
def as_on_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(trials.population, "batches_by_default", lambda device: True)  # `auto` batches


OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)"


def _out_of_memory(*args: Any, **kwargs: Any) -> None:
    raise torch.OutOfMemoryError(OOM)


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_out_of_memory_in_the_batched_step_is_reported_not_hidden(as_on_a_gpu, monkeypatch, where: str) -> None:
    """At the first step, where `auto` may still fall back: out of memory propagates with what to change."""
    if where == "forward":
        monkeypatch.setattr(StackedMembers, "losses", _out_of_memory)
    else:
        monkeypatch.setattr(trials.population, "batched_backward", _out_of_memory)
    trainer = Trainer(_spec(), problem=ConflictingRegression())
    assert trainer.population.batched and trainer.population._may_fall_back
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning either
        with pytest.raises(torch.OutOfMemoryError) as raised:
            trainer.train_epoch()
    message = str(raised.value)
    assert OOM in message  # the fault happened, and its own words are kept
    assert message.startswith("population: the batched step of 3 members ran out of memory on cpu (")
    assert "`population.execution: sequential`" in message and "\n" not in message
    assert trainer.population.batched, "out of memory must not switch the population to the sequential path"


class _BrokenLosses(ConflictingRegression):
    """A plug-in problem with a bug of its own: its losses fail however the members run."""

    def task_losses(self, outputs, batch):
        raise KeyError("target 'y3'")


def test_a_problems_own_error_is_not_taken_for_a_vmap_limit(as_on_a_gpu) -> None:
    trainer = Trainer(_spec(), problem=_BrokenLosses())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyError, match="target 'y3'"):
            trainer.train_epoch()


class _NumpyLosses(ConflictingRegression):
    """Losses through NumPy: fine one member at a time; vmap's batched tensors have no storage to hand NumPy (its
    error does not say "vmap")."""

    def task_losses(self, outputs, batch):
        losses = super().task_losses(outputs, batch)
        scale = float(torch.as_tensor(losses.detach().numpy()).sum() > -1)  # 1.0
        return losses * scale


class _ItemLosses(ConflictingRegression):
    def task_losses(self, outputs, batch):
        losses = super().task_losses(outputs, batch)
        return losses * 2.0 if float(losses.detach().sum()) > 1e9 else losses


@pytest.mark.parametrize(
    ("problem", "reason"),
    [(_ItemLosses, r"calling \.item\(\)"), (_NumpyLosses, r"Cannot access data pointer")],
    ids=["item", "numpy"],
)
def test_what_vmap_cannot_trace_falls_back_once_with_the_reason(as_on_a_gpu, problem, reason: str) -> None:
    auto = Trainer(_spec(epochs=2), problem=problem())
    assert auto.population.batched
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning counted, not only the first of its place
        auto.run()
    fallbacks = [w for w in caught if "cannot run batched" in str(w.message)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    assert fallbacks[0].category is RuntimeWarning
    assert __import__("re").search(reason, str(fallbacks[0].message))
    assert str(fallbacks[0].message).endswith("its members run one after the other")
    assert not auto.population.batched
    sequential = Trainer(_spec("sequential", epochs=2), problem=problem())
    sequential.run()  # the trial the user gets equals the sequential one
    assert [[m.metrics for m in r.members] for r in auto.history] == [
        [m.metrics for m in r.members] for r in sequential.history
    ]


# -- deterministic kernels on a GPU ---------------------------------------------------------------------------------


@pytest.fixture
def global_torch_flags(monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


def test_deterministic_cuda_sets_what_repeatable_gpu_kernels_need(global_torch_flags) -> None:
    trials.loop.deterministic_cuda()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_a_gpu_trainer_sets_them_before_its_first_kernel_and_a_cpu_one_not(global_torch_flags, monkeypatch) -> None:
    Trainer(_spec(), problem=ConflictingRegression())
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    order: list[str] = []

    def built(*args: Any) -> None:
        order.append("problem")
        raise RuntimeError("stop: nothing to train on")

    monkeypatch.setattr(trials.loop, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(trials.loop, "deterministic_cuda", lambda: order.append("deterministic"))
    monkeypatch.setattr(trials.loop, "make_problem", built)
    with pytest.raises(RuntimeError, match="stop"):
        Trainer(_spec())
    assert order == ["deterministic", "problem"]


# -- benchmarks/gpu_smoke.sh ----------------------------------------------------------------------------------------


@no_cuda
def test_gpu_smoke_says_in_one_line_that_there_is_no_cuda() -> None:
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_smoke.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 1, done
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL cuda: "), lines
    assert "--device cpu" in lines[0]


def test_a_trial_given_a_gpu_on_a_torch_without_cuda_fails_in_one_line(monkeypatch) -> None:
    """On a cluster worker (where the driver cannot look): the trial's device is never resolved to the CPU silently."""
    import ray

    from pareto_search.devices import NoCudaForAssignedGpu
    from pareto_search.search import trainable

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NoCudaForAssignedGpu, match=r"Ray gave this worker GPU 0 but its torch .*: install a CUDA"):
        trainable.resolve_device("auto")
