"""What a GPU user meets first, checked on one GPU in under 3 minutes: a PASS/FAIL line per check, exit 1 if any fails.

    benchmarks/gpu_smoke.sh                  # on a machine with a CUDA build of torch and one GPU
    benchmarks/gpu_smoke.sh --device cpu     # a dry run of the same checks on the CPU (no GPU bounds)

The checks, in order (each says what it measured on its line):

- ``bit-identity``: two trainers of one seed (Multi-MNIST, MT2O K = 4, batched under ``auto`` on a GPU) end with the
  same weights bit for bit, and a run checkpointed after epoch 1 and resumed ends with them too (trials/loop.py's
  deterministic cuDNN/cuBLAS settings). A warning that an op has no deterministic implementation fails it.
- ``batched``: a population's step on Multi-MNIST's LeNet (batch 256), K = 8 batched against one model, ms/step
  (benchmarks/population_device.py's timing); on a GPU K = 8 batched must cost at most ``--max-ratio`` (2) one-model
  steps, the goal the batched path was built for. The CPU dry run reports the numbers without a bound.
- ``search``: ``pareto-search run`` of a 2-trial Multi-MNIST search at ``gpus_per_trial: 0.5`` (the two trials share
  the GPU), through the CLI with its own embedded Ray and MLflow store; its front has points and both trials'
  checkpoints say they trained on ``cuda``.
- ``cpu-restore``: a trial checkpoint the GPU search wrote loads into a CPU trainer (what `resume` on a CPU machine
  does): weights equal to the GPU's, bit for bit, and it evaluates.
- ``serve``: ``select --weights 0.5,0.5 --register`` then ``mlflow models serve`` and one POST: the served model's
  predictions equal the stored member's own on the CPU.

Everything is written under a temporary folder (``--keep DIR`` to keep it: logs of the CLI and the server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per check, no progress bars

import torch  # noqa: E402

PROBLEM = "multi_mnist"
ARGS = {"n_train": 1024, "n_val": 256, "n_test": 256, "batch_size": 128}  # seconds per epoch, not minutes
NAME = "gpu-smoke"
SEARCH_TIMEOUT_S = 150.0  # Ray's start and two 1-epoch trials; a GPU machine does it in well under a minute


class CheckFailed(Exception):
    """A check's own failure: its line says why."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cuda (default) or a cpu dry run")
    parser.add_argument("--max-ratio", type=float, default=2.0, help="K=8 batched step / one model's, on a GPU")
    parser.add_argument("--keep", type=Path, help="write everything here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "without a usable CUDA device or driver here"
        print(
            f"FAIL cuda: torch {torch.__version__} is {build}; this smoke test needs one GPU and a CUDA build of torch "
            f"(`benchmarks/gpu_smoke.sh --device cpu` runs its checks on the CPU)",
            flush=True,
        )
        return 1
    if args.device == "cuda":
        from trials.loop import deterministic_cuda

        deterministic_cuda()  # first, before any cuBLAS call of this process: the timings then are the trials'
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_smoke_")))
        else:
            work = args.keep.resolve()
            work.mkdir(parents=True, exist_ok=True)
        return Smoke(args.device, args.max_ratio, work).run()


class Smoke:
    def __init__(self, device: str, max_ratio: float, work: Path) -> None:
        self.device, self.max_ratio, self.work = device, max_ratio, work
        self.gpu = device == "cuda"
        self.results: list[bool] = []
        self.problem: Any = None
        self.searched = False

    def run(self) -> int:
        started = time.monotonic()
        checks: list[tuple[str, Callable[[], str]]] = [
            ("data", self.data),
            ("bit-identity", self.bit_identity),
            ("batched", self.batched),
            ("search", self.search),
            ("cpu-restore", self.cpu_restore),
            ("serve", self.serve),
        ]
        for name, check in checks:
            if name == "data" or self.results[0]:  # without the data nothing else can run
                self._line(name, check)
        total = time.monotonic() - started
        device = torch.cuda.get_device_name(0) if self.gpu else "the CPU (dry run: no GPU bounds)"
        print(
            f"{'PASS' if all(self.results) else 'FAIL'} all: {sum(self.results)}/{len(self.results)} checks "
            f"in {total:.0f} s on {device}",
            flush=True,
        )
        return 0 if all(self.results) else 1

    def _line(self, name: str, check: Callable[[], str]) -> None:
        start = time.monotonic()
        try:
            detail, ok = check(), True
        except CheckFailed as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # any other error is this check's failure, in one line
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
            detail, ok = f"{type(exc).__name__}: {first[:300]}", False
        self.results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail} ({time.monotonic() - start:.1f} s)", flush=True)

    # -- the checks ---------------------------------------------------------------------------------------------

    def data(self) -> str:
        from trials.problems import make_problem

        self.problem = make_problem(PROBLEM, ARGS)
        return f"Multi-MNIST {ARGS['n_train']} training composites loaded"

    def _spec(self, epochs: int, size: int = 4) -> Any:
        from trials.spec import OptimizerSpec, PopulationSpec, TransferSpec, TrialSpec

        return TrialSpec(
            problem=PROBLEM,
            problem_args=ARGS,
            solver="linear",
            epochs=epochs,
            seed=3,
            optimizer=OptimizerSpec(name="adam", lr=1e-3),
            population=PopulationSpec(size=size, transfer=TransferSpec(eps0=0.3, period=2)),
            device=self.device,
        )

    def bit_identity(self) -> str:
        from trials.loop import Trainer

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = Trainer(self._spec(2), problem=self.problem)
            first.run()
            second = Trainer(self._spec(2), problem=self.problem)
            second.run()
            half = Trainer(self._spec(2), problem=self.problem)
            half.train_epoch()
            half.save_checkpoint(self.work / "half.pt")
            resumed = Trainer(self._spec(2), problem=self.problem)
            resumed.load_checkpoint(self.work / "half.pt")
            resumed.run()
        nondeterministic = [str(w.message) for w in caught if "determinis" in str(w.message)]
        if nondeterministic:
            raise CheckFailed(f"an op without a deterministic implementation: {nondeterministic[0].splitlines()[0]}")
        reference = first.member_weights()
        for label, other in (("a second run of the seed", second), ("the resumed run", resumed)):
            for k, (ours, theirs) in enumerate(zip(reference, other.member_weights(), strict=True)):
                for key, value in ours.items():
                    if not torch.equal(value, theirs[key]):
                        diff = float((value - theirs[key]).abs().max())
                        raise CheckFailed(f"{label} differs from the first: member {k} {key} by up to {diff:.3g}")
        mode = "batched" if first.population.batched else "sequential"
        return f"2 epochs, K=4 ({mode}) on {self.device}: a second run and a resumed run equal the first bit for bit"

    def batched(self) -> str:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from population_device import BATCH, PROBLEM_ARGS, _population, time_steps

        from trials.problems import make_problem

        device = torch.device(self.device)
        problem = make_problem(PROBLEM, PROBLEM_ARGS)
        batch = next(iter(problem.train_batches(torch.Generator().manual_seed(0)))).to(device)
        # A GPU step takes milliseconds: 3 rounds of 10 after warm-up. The CPU dry run only shows the numbers (a K=8
        # LeNet step there takes about a second).
        rounds = {"steps": 10, "repeats": 3, "warmup": 3} if self.gpu else {"steps": 2, "repeats": 1, "warmup": 1}
        one = time_steps(_population(problem, 1, "sequential", device), batch, **rounds)
        k8 = time_steps(_population(problem, 8, "batched", device), batch, **rounds)
        ratio = k8 / one
        numbers = f"K=8 batched {k8 * 1e3:.2f} ms/step, one model {one * 1e3:.2f} ms/step: {ratio:.2f}x (batch {BATCH})"
        if self.gpu and ratio > self.max_ratio:
            raise CheckFailed(f"{numbers}, above the bound {self.max_ratio:g}x")
        return numbers + (f", bound {self.max_ratio:g}x" if self.gpu else "")

    def _cli(self, args: list[str], timeout_s: float, log: str) -> str:
        env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{self.work}/mlflow.db"}
        command = [sys.executable, "-m", "pareto_search.cli", *args]
        try:
            done = subprocess.run(command, cwd=self.work, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise CheckFailed(f"`pareto-search {args[0]}` took over {timeout_s:g} s") from exc
        (self.work / log).write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            last = next((x for x in reversed(done.stderr.splitlines()) if x.strip()), "")
            raise CheckFailed(f"`pareto-search {args[0]}` exited {done.returncode}: {last[:300]} ({self.work / log})")
        return done.stdout

    def search(self) -> str:
        import yaml

        config = {
            "name": NAME,
            "problem": {"name": PROBLEM, "args": ARGS},
            "epochs": 1,
            "seed": 0,
            "solvers": [
                {
                    "label": "mt2o",
                    "method": "mt2o",
                    "population": {"size": 4},
                    "optimizer": {"name": "adam", "lr": 2e-3},
                },
                {"label": "equal-weights", "solver": "linear", "optimizer": {"name": "adam", "lr": 3e-3}},
            ],
            "search": {"algorithm": "random", "num_samples": 1, "scheduler": {"name": "fifo"}},
            "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0.5 if self.gpu else 0},
            "storage": str(self.work / "searches"),
        }
        (self.work / "search.yaml").write_text(yaml.safe_dump(config))
        started = time.monotonic()
        self._cli(["run", "search.yaml"], SEARCH_TIMEOUT_S, "search.log")
        seconds = time.monotonic() - started
        front = json.loads(
            self._cli(["front", NAME, "--format", "json", "--storage", str(self.work / "searches")], 60, "front.log")
        )
        if not front.get("points"):
            raise CheckFailed("the search's front is empty")
        devices = sorted({self._load(path)["spec"]["device"] for path in self._trainer_files()})
        if len(self._trials()) != 2:
            raise CheckFailed(f"{len(self._trials())} trials wrote checkpoints, expected 2")
        if devices != [self.device]:
            raise CheckFailed(f"the trials trained on {devices}, expected {self.device}")
        self.searched = True
        share = "gpus_per_trial 0.5" if self.gpu else "gpus_per_trial 0"
        return f"2 trials ({share}) trained on {self.device} in {seconds:.0f} s, front of {len(front['points'])} points"

    def _trials(self) -> set[Path]:
        return {path.parents[1] for path in self._trainer_files()}

    def _trainer_files(self) -> list[Path]:
        return sorted((self.work / "searches" / NAME).glob("**/checkpoint_*/trainer.pt"))

    @staticmethod
    def _load(path: Path) -> dict[str, Any]:
        return torch.load(path, map_location="cpu", weights_only=True)

    def cpu_restore(self) -> str:
        import dataclasses

        from trials.loop import Trainer
        from trials.spec import TrialSpec

        if not self.searched:
            raise CheckFailed("needs the search's checkpoints (the search check failed)")
        # The trial with the most members (the MT2O population): the most a checkpoint carries.
        path = max(self._trainer_files(), key=lambda p: len(self._load(p)["population"]["members"]))
        state = self._load(path)
        spec = dataclasses.replace(TrialSpec.from_dict(state["spec"]), device="cpu")
        trainer = Trainer(spec, problem=self.problem)
        trainer.load_checkpoint(path)
        members = len(trainer.population.members)
        stored = [torch.load(path.with_name(f"member_{k}.pt"), weights_only=True) for k in range(members)]
        for k, (weights, member) in enumerate(zip(stored, trainer.member_weights(), strict=True)):
            for key, value in weights.items():
                if not torch.equal(value, member[key]):
                    where = state["spec"]["device"]
                    raise CheckFailed(f"member {k} {key} differs from the weights the {where} trial stored")
        metrics = trainer.evaluate("val")
        if not all(torch.isfinite(torch.tensor(list(m.values()))).all() for m in metrics):
            raise CheckFailed(f"the restored members evaluate to non-finite metrics: {metrics}")
        accuracy = ", ".join(f"{m['left_acc']:.3f}/{m['right_acc']:.3f}" for m in metrics)
        return f"a {state['spec']['device']} checkpoint ({len(metrics)} members) loaded on the CPU, val acc {accuracy}"

    def serve(self) -> str:
        import numpy as np

        from pareto_search.serving.network import NetworkSpec
        from pareto_search.testing.model_server import invoke, model_server

        if not self.searched:
            raise CheckFailed("needs the search's front (the search check failed)")
        tracking_uri = f"sqlite:///{self.work}/mlflow.db"
        chosen = json.loads(
            self._cli(
                [
                    "select",
                    NAME,
                    "--weights",
                    "0.5,0.5",
                    "--register",
                    "gpu-smoke-model",
                    "--format",
                    "json",
                    "--storage",
                    str(self.work / "searches"),
                ],
                120,
                "select.log",
            )
        )
        inputs = self.problem.example_inputs(4).numpy()
        run_id, _, artifact = chosen["chosen"]["model_uri"].removeprefix("runs:/").partition("/")
        import mlflow

        weights = mlflow.MlflowClient(tracking_uri).download_artifacts(run_id, artifact, str(self.work))
        model = NetworkSpec.of(self.problem, PROBLEM, ARGS).load(weights)
        with torch.no_grad():
            expected = [o.numpy() for o in model(torch.as_tensor(inputs))]
        with model_server("models:/gpu-smoke-model@champion", tracking_uri, cwd=self.work) as server:
            startup = server.startup_seconds
            status, answer = invoke(server.url, {"inputs": inputs.tolist()})
        if status != 200:
            raise CheckFailed(f"POST /invocations answered {status}: {str(answer)[:300]}")
        for task, values in zip(self.problem.task_names, expected, strict=True):
            got = np.asarray(answer["predictions"][task], dtype=np.float32)
            if got.shape != values.shape or not np.allclose(got, values, rtol=1e-5, atol=1e-6):
                raise CheckFailed(f"the served {task} predictions differ from the stored member's own")
        return (
            f"member {chosen['chosen']['point']} served (started in {startup:.0f} s): 4 predictions per task "
            "equal the stored member's own on the CPU"
        )


if __name__ == "__main__":
    sys.exit(main())
