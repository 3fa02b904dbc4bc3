"""GPU trials, checked by configuration on a CPU machine: fractions of a GPU reach Ray's resource request,
and `device: auto` trains on the GPU Ray assigned to the trial, else on the CPU."""

from __future__ import annotations

import pytest

from pareto_search.config import parse_config
from pareto_search.plan import make_plan
from pareto_search.search import trainable
from pareto_search.search.runner import _trainable


def _plan(gpus: float, device: str = "auto"):
    return make_plan(
        parse_config(
            {
                "name": "gpu",
                "problem": {"name": "toy2d"},
                "reference_point": [1.0, 1.0],
                "device": device,
                "solvers": [{"solver": "linear"}],
                "resources": {"cpus_per_trial": 2, "gpus_per_trial": gpus},
            }
        )
    )


@pytest.mark.parametrize("gpus", [0.25, 0.5, 1])
def test_gpu_fractions_reach_the_trial_resource_request(gpus) -> None:
    request = _trainable(_plan(gpus))._resources  # what Tune asks Ray for, per trial
    assert request.bundles == [{"CPU": 2.0, "GPU": float(gpus)}]


@pytest.mark.parametrize(
    ("assigned", "cuda", "expected"),
    # A GPU given to a torch without CUDA is refused in one line (tests/unit/search/test_gpu_paths.py), never the
    # CPU in silence.
    [([], False, "cpu"), ([], True, "cpu"), (["0"], True, "cuda")],
)
def test_auto_device_follows_rays_assignment(monkeypatch, assigned, cuda, expected) -> None:
    monkeypatch.setattr(trainable.ray, "get_gpu_ids", lambda: assigned)
    monkeypatch.setattr(trainable.torch.cuda, "is_available", lambda: cuda)
    assert trainable.resolve_device("auto") == expected
    assert trainable.resolve_device("cuda:1") == "cuda:1"  # an explicit device is kept as given
