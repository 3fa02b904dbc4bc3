"""ray_cluster.yaml: accepted by Ray's own cluster-launcher checks, and set up the way pareto_search needs.

No network and no cluster: the checks are the ones `ray up` runs on the config before it calls AWS.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "ray_cluster.yaml"
ENV_FILE = "~/pareto_search.env"


def _load() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())  # what `ray up` does: yaml.safe_load of the file


def _ray_up_checks(config: dict[str, Any]) -> dict[str, Any]:
    """The config checks of `ray up` (ray.autoscaler._private.commands._bootstrap_config): prepare_config
    merges the provider's defaults.yaml, then validate_config checks the result against Ray's
    ray/autoscaler/ray-schema.json and its own rules (head type declared, min_workers within max_workers).
    Left out, as they call AWS: the EC2 instance-type lookup that fills missing `resources` (ray up only
    warns when it fails) and bootstrap_aws (IAM role, key pair, security group)."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


def _ray_start_commands(config: dict[str, Any]) -> list[str]:
    commands = [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]
    return [c for c in commands if "ray start" in c]


def test_ray_up_accepts_the_config() -> None:
    prepared = _ray_up_checks(_load())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], type[Exception], str]] = [
    (
        "unknown top-level key",
        _set(("head_start_commands",), ["ray start --head"]),  # a typo of head_start_ray_commands
        jsonschema.ValidationError,
        r"Additional properties are not allowed \('head_start_commands' was unexpected\)",
    ),
    ("wrong type", _set(("max_workers",), "10"), jsonschema.ValidationError, r"'10' is not of type 'integer'"),
    (
        "unknown node-type key",
        _set(("available_node_types", "gpu_worker", "gpus"), 1),
        jsonschema.ValidationError,
        r"'gpus' was unexpected",
    ),
    (
        "fractional GPU count on a node type",  # fractions belong in the search config, not here
        _set(("available_node_types", "gpu_worker", "resources", "GPU"), 0.5),
        jsonschema.ValidationError,
        r"0\.5 is not of type 'integer'",
    ),
    (
        "min_workers above max_workers",
        _set(("available_node_types", "cpu_worker", "min_workers"), 50),
        ValueError,
        r"global `max_workers` is smaller than the sum of `min_workers`",
    ),
    (
        "undeclared head type",
        _set(("head_node_type",), "ray.head.default"),
        ValueError,
        r"`head_node_type` must be one of `available_node_types`",
    ),
]


@pytest.mark.parametrize(("what", "change", "error", "message"), BROKEN, ids=[case[0] for case in BROKEN])
def test_ray_up_refuses_a_broken_copy(
    what: str, change: Callable[[dict[str, Any]], None], error: type[Exception], message: str
) -> None:
    config = _load()
    change(config)
    with pytest.raises(error, match=message):
        _ray_up_checks(config)


def test_node_types_head_cpu_and_gpu_workers() -> None:
    config = _load()
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "trials must not land on the head (GCS, dashboard, drivers)"
    workers = _worker_types(config)
    gpu = {name: t for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    cpu = {name: t for name, t in workers.items() if name not in gpu}
    assert list(gpu) == ["gpu_worker"] and cpu, f"expected one GPU worker type and a CPU one, found {list(workers)}"
    assert gpu["gpu_worker"]["resources"]["CPU"] >= 1  # fractional-GPU trials still need their cpus_per_trial
    for name, node_type in workers.items():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"], name
        assert node_type["node_config"]["InstanceType"], name
        assert node_type["resources"].get("CPU", 0) >= 1, f"{name}: declare CPUs, or the autoscaler may never pick it"
    assert config["max_workers"] >= sum(t["max_workers"] for t in workers.values())


def _pip_calls_on_a_fake_node(command: str, tmp_path: Path, *, nvidia: bool) -> list[str]:
    """Run a setup command where `lspci` reports an NVIDIA GPU (or none) and ~/venv/bin/pip only
    records its arguments: which torch a GPU node and a CPU node would install."""
    node = tmp_path / ("gpu" if nvidia else "cpu")
    (node / "bin").mkdir(parents=True)
    (node / "venv" / "bin").mkdir(parents=True)
    gpu_line = "00:1e.0 3D controller: NVIDIA Corporation GA102GL [A10G]"
    lspci = f'#!/bin/sh\n[ "$*" = "-d 10de:" ] && echo "{gpu_line}"\nexit 0\n' if nvidia else "#!/bin/sh\nexit 0\n"
    log = node / "pip.log"
    fakes = {node / "bin" / "lspci": lspci, node / "venv" / "bin" / "pip": f'#!/bin/sh\necho "$*" >> {log}\n'}
    for path, script in fakes.items():
        path.write_text(script)
        path.chmod(0o755)
    env = {"HOME": str(node), "PATH": f"{node / 'bin'}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", command.replace("~/", "$HOME/")], env=env, check=True, timeout=10)
    return log.read_text().splitlines()


def test_setup_installs_a_cuda_torch_before_the_project(tmp_path: Path) -> None:
    config = _load()
    setup: list[str] = config["setup_commands"]
    assert config["head_setup_commands"] == [] and config["worker_setup_commands"] == []

    torch_at = next(i for i, c in enumerate(setup) if "torch==" in c and "pip install" in c)
    project_at = next(i for i, c in enumerate(setup) if re.search(r"pip install .*-e \S*pareto_search", c))
    assert torch_at < project_at, "torch must be installed first so that the project's install keeps it"

    makefile = (ROOT / "Makefile").read_text()
    tested = re.search(r"^TORCH_SPEC \?= (torch==\S+)$", makefile, re.MULTILINE)
    assert tested is not None
    [on_gpu] = _pip_calls_on_a_fake_node(setup[torch_at], tmp_path, nvidia=True)
    [on_cpu] = _pip_calls_on_a_fake_node(setup[torch_at], tmp_path, nvidia=False)
    for call in (on_gpu, on_cpu):  # the torch the project tests (the Makefile's), from PyTorch's index only
        assert call.startswith("install") and tested.group(1) in call.split(), call
        assert "--extra-index-url" not in call, call  # pip could take PyPI's build of the same version
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cu\d+$", on_gpu), on_gpu
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu$", on_cpu), on_cpu

    ray_pin = re.search(r'"ray\[[a-z,]+\]==([^"]+)"', setup[project_at])
    assert ray_pin is not None and ray_pin.group(1) == ray.__version__, (
        f"the cluster's Ray must match the Ray that runs `ray up` and `submit` ({ray.__version__})"
    )
    assert any("torch.cuda.is_available()" in c for c in setup[project_at:]), "a GPU node must check its CUDA torch"


def test_file_mounts_carry_the_token_and_the_project() -> None:
    mounts: dict[str, str] = _load()["file_mounts"]
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "~/.mlflow/credentials" in mounts
    local = {remote: path for remote, path in mounts.items() if not path.startswith("~")}
    for remote, path in local.items():
        assert remote.startswith("~/pareto_search/") and (ROOT / path).exists(), f"{remote}: {path} is missing"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    needed += [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    mounted = {Path(p).as_posix().removeprefix("./") for p in local.values()}
    assert set(needed) <= mounted, f"`pip install -e` on a node needs {sorted(set(needed) - mounted)}"


def test_every_ray_start_gets_the_environment(tmp_path: Path) -> None:
    config = _load()
    writer = next(c for c in config["setup_commands"] if f"> {ENV_FILE}" in c)
    # Run the real setup command in a scratch HOME, then read the file back the way `ray start` does.
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    subprocess.run(["bash", "-c", writer], env=env, check=True, timeout=10)
    names = ["RAY_AUTH_MODE", "MLFLOW_TRACKING_URI", "PARETO_SEARCH_STORAGE", "PATH"]
    shown = subprocess.run(
        ["bash", "-c", f'. {ENV_FILE} && printf "%s\\n" ' + " ".join(f'"${n}"' for n in names)],
        env=env,
        check=True,
        timeout=10,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    values = dict(zip(names, shown, strict=True))
    assert values["RAY_AUTH_MODE"] == "token"
    assert re.match(r"https?://", values["MLFLOW_TRACKING_URI"]), values
    assert values["PARETO_SEARCH_STORAGE"].startswith("s3://"), values
    assert values["PATH"].startswith(f"{tmp_path}/venv/bin:"), values

    starts = _ray_start_commands(config)
    assert len(starts) == 2  # the head's and the workers'
    for command in starts:
        sourced = command.find(f". {ENV_FILE} &&")
        assert 0 <= sourced < command.find("ray start"), f"`ray start` runs without the environment: {command}"


def test_token_auth_stays_on_and_the_dashboard_local() -> None:
    text = CLUSTER_YAML.read_text()
    assert "RAY_AUTH_MODE=disabled" not in text
    assert "RAY_AUTH_TOKEN=" not in text, "the token travels as ~/.ray/auth_token, never inline"
    head_start = next(c for c in _load()["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head_start, "the Jobs API is reached through `ray dashboard` (SSH)"
