"""Per-trial resource requests that no node could ever meet are refused before anything starts.

Without this, Tune waits forever for a placement ("no trial is running" every minute). On this machine
(the embedded local Ray) the node is this machine, measured the way Ray measures it; on a Ray that is
already running here (a library user's, the tests'), its live nodes. A cluster behind an autoscaler may
still grow a node that fits: there the search waits at most `search.pending_timeout_s` (PendingWatch).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

from pareto_search.config import ResourcesConfig
from pareto_search.devices import check_torch_has_cuda
from pareto_search.errors import ConfigError


def _this_machine() -> dict[str, float]:
    try:  # Ray's own count (cgroup quotas and cpusets included), so the answer matches what Ray would start with
        from ray._private.utils import get_num_cpus

        cpus = float(get_num_cpus())
    except Exception:  # a Ray without the helper: the plain count
        cpus = float(os.cpu_count() or 1)
    return {"CPU": cpus, "GPU": float(_gpus_here())}


def _gpus_here() -> int:
    """The GPUs Ray would find on this machine (it asks the NVIDIA driver, not torch): a CPU build of torch on a GPU
    machine still gets its trials a GPU, which :func:`check_torch_has_cuda` then refuses by name."""
    import torch

    try:
        from ray._private.accelerators import NvidiaGPUAcceleratorManager

        return max(int(NvidiaGPUAcceleratorManager.get_current_node_num_accelerators()), torch.cuda.device_count())
    except Exception:  # a Ray without the helper: what torch sees
        return torch.cuda.device_count()


def node_resources() -> list[Mapping[str, float]]:
    """What each node offers: the running local Ray's live nodes, else this machine."""
    if ray.is_initialized():
        return [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    return [_this_machine()]


def check_requests_fit(resources: ResourcesConfig, nodes: list[Mapping[str, float]]) -> None:
    """One line naming the field, what was asked and what the largest node has, when no node fits a trial; and,
    since these nodes are this machine's, one line when its torch cannot use the GPUs the trials ask for."""
    best_cpus = max((float(n.get("CPU", 0.0)) for n in nodes), default=0.0)
    best_gpus = max((float(n.get("GPU", 0.0)) for n in nodes), default=0.0)
    where = "this machine has" if len(nodes) == 1 else "the largest node has"
    if resources.cpus_per_trial > best_cpus:
        raise ConfigError(
            f"`resources.cpus_per_trial` is {resources.cpus_per_trial:g} but {where} {best_cpus:g} CPUs: "
            f"no trial could ever start; ask for at most {best_cpus:g}"
        )
    if resources.gpus_per_trial > best_gpus:
        what = "no GPU" if best_gpus == 0 else f"{best_gpus:g} GPUs"
        raise ConfigError(
            f"`resources.gpus_per_trial` is {resources.gpus_per_trial:g} but {where} {what}: no trial could "
            "ever start; set it to 0 to train on the CPU"
        )
    check_torch_has_cuda(resources)


def trial_bundles(resources: ResourcesConfig, members_apart: int) -> list[dict[str, float]]:
    """The trial's resource bundles: its own process first, then one per member on a worker of its own
    (``members_apart`` of them: the population's K under ``placement: actors``, else 0)."""

    def bundle(cpus: float, gpus: float) -> dict[str, float]:
        return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}

    trial = bundle(resources.cpus_per_trial, resources.gpus_per_trial)
    return [trial] + [bundle(resources.cpus_per_member, resources.gpus_per_member)] * members_apart


def trial_resources(resources: ResourcesConfig, members_apart: int) -> Any:
    """What Tune reserves for one trial: a plain request, or with members apart one placement group holding the
    trial and its members (the scheduler counts them all before the trial starts; a member never waits)."""
    if not members_apart:
        return {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
    from ray.tune import PlacementGroupFactory

    return PlacementGroupFactory(trial_bundles(resources, members_apart), strategy=resources.member_strategy)


def check_members_fit(resources: ResourcesConfig, members_apart: int, nodes: list[Mapping[str, float]]) -> None:
    """One line when a trial whose members live apart could never be placed: a member's worker larger than every
    node, or the trial's bundles together more than all the nodes offer."""
    if not members_apart:
        return
    best_cpus = max((float(n.get("CPU", 0.0)) for n in nodes), default=0.0)
    best_gpus = max((float(n.get("GPU", 0.0)) for n in nodes), default=0.0)
    if resources.cpus_per_member > best_cpus or resources.gpus_per_member > best_gpus:
        field, asked, has = (
            ("cpus_per_member", resources.cpus_per_member, f"{best_cpus:g} CPUs")
            if resources.cpus_per_member > best_cpus
            else ("gpus_per_member", resources.gpus_per_member, f"{best_gpus:g} GPUs")
        )
        raise ConfigError(
            f"`resources.{field}` is {asked:g} but the largest node has {has}: no member's worker could ever start"
        )
    for key, name in (("CPU", "CPUs"), ("GPU", "GPUs")):
        need = sum(b.get(key, 0.0) for b in trial_bundles(resources, members_apart))
        total = sum(float(n.get(key, 0.0)) for n in nodes)
        if need > total:
            raise ConfigError(
                f"`population.size` {members_apart} with `population.placement: actors` needs {need:g} {name} per "
                f"trial (`resources`: the trial's own and one worker per member) but the nodes offer {total:g} in all; "
                "allowed: a smaller population, smaller `resources.*_per_member`, or more nodes"
            )


class PlacementTimeout(RuntimeError):
    """No trial could be placed on the cluster within `search.pending_timeout_s`."""


class PendingWatch(tune.Callback):
    """Stops a search none of whose trials has run for `timeout_s` while some wait to be placed.

    On a cluster a trial may wait for an autoscaler to add a node that fits; past the bound, waiting longer is
    hanging. Time while a trial runs resets the clock: only a search that cannot place anything is stopped."""

    def __init__(self, resources: ResourcesConfig, timeout_s: float) -> None:
        self.resources, self.timeout_s = resources, timeout_s
        self._idle_since: float | None = None

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        running = any(t.status == "RUNNING" for t in trials)
        pending = any(t.status == "PENDING" for t in trials)
        if running or not pending:
            self._idle_since = None
            return
        now = time.monotonic()
        self._idle_since = self._idle_since or now
        if now - self._idle_since > self.timeout_s:
            nodes = node_resources()
            offered = ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in nodes) or "no live node"
            raise PlacementTimeout(
                f"no trial could be placed for {self.timeout_s:g} s (`search.pending_timeout_s`): each asks for "
                f"{self.resources.cpus_per_trial:g} CPU and {self.resources.gpus_per_trial:g} GPU "
                f"(`resources`), the cluster's nodes offer {offered}"
            )
