"""Which device a trial's `device` can name under Ray, and whether this torch can use the GPUs trials ask for.

Every trial of a search runs in a Ray worker. Ray sets that worker's CUDA_VISIBLE_DEVICES to the GPUs it assigned
the trial, so inside the trial they are numbered from ``cuda:0`` whatever their number on the machine: a trial of
``gpus_per_trial: 1`` that names ``cuda:1`` fails with "invalid device ordinal" once it starts, after the probe and
Ray's start-up. Such a device is refused when the search is planned, rather than mapped to the trial's own GPU:
``cuda:1`` names one particular GPU of the machine, which Ray, not the config, chooses, and quietly training
elsewhere would hide that. ``auto`` and ``cuda`` are what a config means by "the GPU Ray gave the trial".

No Ray import here: planning a search (pareto_search/plan.py) stays as quick to import as it was.
"""

from __future__ import annotations

import math
import re

import torch

from pareto_search.config import ResourcesConfig
from pareto_search.errors import ConfigError


def trial_gpu_count(gpus_per_trial: float) -> int:
    """How many GPUs a trial sees: a fraction is one shared GPU, a whole number that many."""
    return math.ceil(gpus_per_trial) if gpus_per_trial > 0 else 0


def check_trial_device(device: str, resources: ResourcesConfig) -> None:
    """One line naming `device` when no trial of this search could use it; nothing for auto and cpu."""
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        return
    visible = trial_gpu_count(resources.gpus_per_trial)
    if visible == 0:
        raise ConfigError(f"`device` is {device!r} but `resources.gpus_per_trial` is 0; give trials a GPU")
    index = int(match.group(1) or 0)
    if index >= visible:
        allowed = "auto, cuda, cuda:0" if visible == 1 else f"auto, cuda, cuda:0 … cuda:{visible - 1}"
        given = "the GPU" if visible == 1 else f"the {visible} GPUs"
        raise ConfigError(
            f"`device` is {device!r} but under Ray a trial sees only {given} it was given "
            f"(`resources.gpus_per_trial` is {resources.gpus_per_trial:g}), numbered from cuda:0; allowed: {allowed} "
            "(Ray chooses which of the machine's GPUs a trial gets)"
        )


def check_torch_has_cuda(resources: ResourcesConfig) -> None:
    """One line when trials ask for a GPU that this machine's torch cannot use: Ray would still give them one
    (it counts the GPUs itself) and every trial would train on the CPU without a word."""
    if resources.gpus_per_trial <= 0 or torch.cuda.is_available():
        return
    build = f"torch {torch.__version__}"
    why = (
        f"the installed {build} is built without CUDA"
        if torch.version.cuda is None
        else f"the installed {build} finds no usable CUDA device or driver here"
    )
    raise ConfigError(
        f"`resources.gpus_per_trial` is {resources.gpus_per_trial:g} but {why}: its trials would train on the CPU; "
        "install a CUDA build of torch into .venv (docs/clusters.md) or set it to 0"
    )


class NoCudaForAssignedGpu(RuntimeError):
    """Ray gave this worker a GPU that its torch cannot use."""


def check_assigned_gpus_usable(gpu_ids: list[str] | list[int]) -> None:
    """Inside a Ray worker: one line when Ray assigned it GPUs (``ray.get_gpu_ids()``) and its torch has no CUDA,
    rather than training on the CPU without a word. The driver checks this machine before the search starts; a
    cluster's workers are only known here."""
    if gpu_ids and not torch.cuda.is_available():
        raise NoCudaForAssignedGpu(
            f"Ray gave this worker GPU {', '.join(map(str, gpu_ids))} but its torch {torch.__version__} "
            f"{'is built without CUDA' if torch.version.cuda is None else 'finds no usable CUDA device'}: install a "
            "CUDA build of torch on the GPU nodes, or set `resources.gpus_per_trial: 0`"
        )
