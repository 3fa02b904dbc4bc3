"""What a population costs when its members live on Ray actors (`population.placement: actors`) against one process.

    .venv/bin/python benchmarks/population_actors.py                 # K = 4 on the CPU, both problems
    .venv/bin/python benchmarks/population_actors.py --steps 30 --members 4 --period 10
    .venv/bin/python benchmarks/population_actors.py --device cuda --members 8   # the GPU check: K = 8 on one GPU

For Multi-MNIST's LeNet and the 3-task MLP (related3) it times MT2O's training step (linear scalarizations, periodic
transfer ε0 = 0.3 every `--period` steps, Adam) with the K members in the trial's process and on K actors, side by
side in one run, and per transfer: the bytes each member publishes, the bytes read across members (K·(K−1)
objects: every member reads every other's), and the time the members spent reading and mixing, as a share of the
step. Then, on paper, the same for a ResNet-18-sized shared trunk with K = 16 members on 4 GPU nodes, from the
object-store bandwidth measured here, and which transfer period keeps transfer under 10 % of the step time.

Timing: warm-up steps first, then the median of `--repeats` rounds of `--steps` steps. The numbers depend on the
machine's load: read the ratios of a run, not its absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402
import torch  # noqa: E402

from pareto_search.search.member_actors import ActorPopulation, MemberPlacement  # noqa: E402
from trials.population import Population  # noqa: E402
from trials.problems import make_problem  # noqa: E402
from trials.spec import TrialSpec  # noqa: E402
from trials.transfer import mixed_names  # noqa: E402

PROBLEMS = {
    "multi_mnist": {"n_train": 2048, "n_val": 256, "n_test": 256, "batch_size": 256},
    "related3": {"n_train": 4096, "n_val": 256, "n_test": 256, "batch_size": 256},
}
# ResNet-18 without its classifier: 11.2 M parameters (torchvision's resnet18 less its 512x1000 fc layer).
RESNET18_TRUNK_PARAMS = 11_176_512
# A ResNet-18 step of batch 128 at 224 px on one A100-class GPU, forward and backward: ~0.1 s (a round figure from
# public training throughputs, ~1,300 images/s). The paper estimate below scales with it.
RESNET18_STEP_S = 0.1


def _spec(problem: str, members: int, period: int, placement: str, device: str = "cpu") -> TrialSpec:
    return TrialSpec.from_dict(
        {
            "problem": problem,
            "problem_args": PROBLEMS[problem],
            "epochs": 1000,  # keeps ε from decaying over the timed steps
            "seed": 0,
            "solver": "linear",
            "optimizer": {"name": "adam", "lr": 1e-3},
            "device": device,
            "population": {
                "size": members,
                # On a GPU the in-process members run batched (one vmapped step), what `auto` does there.
                "execution": "batched" if device == "cuda" and placement == "process" else "sequential",
                "placement": placement,
                "transfer": {"eps0": 0.3, "period": period, "mode": "symmetric"},
            },
        }
    )


def _time(population: Any, batch: Any, steps: int, repeats: int) -> list[float]:
    """Seconds per step; a GPU is synchronized around each round (its kernels run asynchronously)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(3):
        population.train_step(batch)
    rounds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            population.train_step(batch)
        sync()
        rounds.append((time.perf_counter() - start) / steps)
    return rounds


def measure(problem_name: str, members: int, period: int, steps: int, repeats: int, device: str) -> dict[str, Any]:
    problem = make_problem(problem_name, PROBLEMS[problem_name])
    batch = next(iter(problem.train_batches(torch.Generator().manual_seed(0))))
    here = torch.device(device)
    torch.manual_seed(0)
    one_model = Population(problem, _spec(problem_name, 1, period, "process", device), here)
    one_s = statistics.median(_time(one_model, batch, steps, repeats))
    torch.manual_seed(0)
    in_process = Population(problem, _spec(problem_name, members, period, "process", device), here)
    process_s = statistics.median(_time(in_process, batch, steps, repeats))
    # On a GPU each member's worker gets 1/K of it: K members share the one device, as the batched population does.
    placement = MemberPlacement(cpus=1, gpus=1 / members if device == "cuda" else 0.0, device=device)
    actors = ActorPopulation(problem, _spec(problem_name, members, period, "actors", device), here, placement)
    actors.transfer_seconds = 0.0
    before = actors.step
    actor_rounds = _time(actors, batch, steps, repeats)
    timed_steps = actors.step - before
    transfers = sum(1 for s in range(before, actors.step) if s > 0 and s % period == 0)
    names = mixed_names(in_process.members[0].model, "trunk")
    published = sum(
        p.numel() * p.element_size() for n, p in in_process.members[0].model.named_parameters() if n in names
    )
    actors.close()
    return {
        "problem": problem_name,
        "members": members,
        "one_ms": 1000 * one_s,
        "process_ms": 1000 * process_s,
        "actors_ms": 1000 * statistics.median(actor_rounds),
        "published_bytes": published,
        "read_bytes": published * members * (members - 1),
        # The members' summed seconds in reading + mixing, per transfer and per member (they run side by side).
        "transfer_ms": 1000 * actors.transfer_seconds / max(transfers, 1) / members,
        "timed_steps": timed_steps,
        "transfers": transfers,
    }


def object_store_bandwidth(megabytes: int = 64, repeats: int = 5) -> float:
    """Bytes per second at which another worker of this node reads a tensor from the object store (the
    shared-memory store plus deserialization), timed inside that worker: the median of ``repeats`` reads."""

    @ray.remote
    def read(ref_list: list[ray.ObjectRef], times: int) -> list[float]:
        seconds = []
        for _ in range(times):
            start = time.perf_counter()
            ray.get(ref_list[0]).sum()  # touch it: a lazy view would otherwise look free
            seconds.append(time.perf_counter() - start)
        return seconds

    payload = torch.ones(megabytes * 2**20 // 4)
    seconds = ray.get(read.remote([ray.put(payload)], repeats))
    return payload.numel() * 4 / statistics.median(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--period", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", default="multi_mnist,related3")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: K members on one GPU")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: this torch sees no CUDA device", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    ray.init(address="local", num_cpus=args.members + 1, include_dashboard=False, configure_logging=False)
    try:
        rows = [
            measure(p, args.members, args.period, args.steps, args.repeats, args.device)
            for p in args.problems.split(",")
        ]
        bandwidth = object_store_bandwidth()
    finally:
        ray.shutdown()
    where = "one GPU (1/K of it per member's worker)" if args.device == "cuda" else "CPU, one thread per member"
    print(f"K = {args.members}, transfer every {args.period} steps, {where}\n")
    print(
        "| problem | one model ms/step | process ms/step | actors ms/step | actors / process | published per member "
        "| read per transfer | transfer ms (per member) | transfer / step at this period |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = r["transfer_ms"] / args.period / r["actors_ms"]
        print(
            f"| {r['problem']} | {r['one_ms']:.1f} | {r['process_ms']:.1f} | {r['actors_ms']:.1f} "
            f"| {r['actors_ms'] / r['process_ms']:.2f}x "
            f"| {r['published_bytes'] / 1e6:.3f} MB | {r['read_bytes'] / 1e6:.3f} MB | {r['transfer_ms']:.2f} "
            f"| {100 * share:.1f} % |"
        )
    trunk = RESNET18_TRUNK_PARAMS * 4
    members, nodes = 16, 4
    # Every member reads the 15 others' trunks; 12 of them live on other nodes. Each node's 4 members read
    # 4 x 12 remote trunks through its network link; the same object is fetched to a node once and then shared.
    remote_per_node = (members - members // nodes) * trunk
    print(
        f"\nobject store, measured here: {bandwidth / 1e9:.2f} GB/s (one node, shared memory)\n"
        f"on paper, ResNet-18 trunk ({trunk / 1e6:.1f} MB fp32), K = {members} on {nodes} GPU nodes: each node fetches "
        f"{remote_per_node / 1e9:.2f} GB per transfer (12 remote trunks, once per node)"
    )
    for link_gbit in (10, 25, 100):
        # The node's link brings the 12 remote trunks once; then each member reads the 15 others' from its node's
        # store, the members of a node side by side (each in its own process), at the bandwidth measured here.
        seconds = remote_per_node / (link_gbit / 8 * 1e9) + (members - 1) * trunk / bandwidth
        period = seconds / (0.1 * RESNET18_STEP_S)
        print(
            f"  {link_gbit:>3} Gbit/s link: {seconds:.2f} s per transfer; under 10 % of a {RESNET18_STEP_S:.1f} s step "
            f"needs a period of >= {max(1, round(period + 0.5))} steps"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
