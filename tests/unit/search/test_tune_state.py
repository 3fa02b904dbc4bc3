"""What a driver killed mid-save can leave, and what `resume` does with it: files appear whole or not at all,
a damaged Tune session is set aside whole for the newest intact one, and nothing crashes on an odd trial."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import ray.cloudpickle as cloudpickle

from pareto_search.errors import SearchStopped
from pareto_search.search.atomic_fs import atomic_local_filesystem
from pareto_search.search.callback import trial_params
from pareto_search.search.tune_state import DAMAGED_FOLDER, check_experiment_state

OLD, NEW = "2026-12-02_10-00-00", "2026-12-02_11-00-00"


def _session(folder: Path, stamp: str, generated: int) -> None:
    (folder / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": [], "stamp": stamp}))
    (folder / f"basic-variant-state-{stamp}.json").write_bytes(cloudpickle.dumps({"generated": generated}))
    (folder / f"callback-states-{stamp}.pkl").write_bytes(cloudpickle.dumps([{"results_seen": generated}]))


def test_an_output_stream_publishes_its_file_only_when_closed(tmp_path) -> None:
    filesystem = atomic_local_filesystem()
    target = tmp_path / "experiment_state.json"
    target.write_text("old, whole")
    stream = filesystem.open_output_stream(str(target))
    stream.write(b"new, half")
    assert target.read_text() == "old, whole", "a reader mid-write sees the old file"
    stream.write(b" and then whole")
    stream.close()
    assert target.read_text() == "new, half and then whole"
    assert [p.name for p in tmp_path.iterdir()] == ["experiment_state.json"], "no temporary file is left"


def test_tune_style_folder_copies_arrive_whole(tmp_path) -> None:
    source = tmp_path / "staging"
    (source / "trial" / "checkpoint_000000").mkdir(parents=True)
    payload = os.urandom(300_000)
    (source / "trial" / "checkpoint_000000" / "trainer.pt").write_bytes(payload)
    (source / "experiment_state.json").write_text("{}")
    pafs.copy_files(str(source), str(tmp_path / "storage"), destination_filesystem=atomic_local_filesystem())
    assert (tmp_path / "storage" / "trial" / "checkpoint_000000" / "trainer.pt").read_bytes() == payload
    assert (tmp_path / "storage" / "experiment_state.json").read_text() == "{}"


def test_intact_state_is_left_alone(tmp_path) -> None:
    _session(tmp_path, OLD, 1)
    _session(tmp_path, NEW, 2)
    assert check_experiment_state(tmp_path) == []
    assert not (tmp_path / DAMAGED_FOLDER).exists()


def test_a_session_with_a_truncated_file_is_set_aside_whole(tmp_path) -> None:
    _session(tmp_path, OLD, 1)
    _session(tmp_path, NEW, 2)
    searcher = tmp_path / f"basic-variant-state-{NEW}.json"
    searcher.write_bytes(searcher.read_bytes()[:10])  # what a kill mid-copy left before writes were atomic
    lines = check_experiment_state(tmp_path)
    assert len(lines) == 1
    assert lines[0].startswith(f"Tune state of session {NEW} is damaged: basic-variant-state-{NEW}.json (")
    assert lines[0].endswith(f"moved to {tmp_path / DAMAGED_FOLDER}")
    left = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert left == [f"basic-variant-state-{OLD}.json", f"callback-states-{OLD}.pkl", f"experiment_state-{OLD}.json"]
    assert len(list((tmp_path / DAMAGED_FOLDER).iterdir())) == 3  # the whole session, kept for inspection


def test_no_intact_session_is_one_line_naming_the_file(tmp_path) -> None:
    _session(tmp_path, NEW, 2)
    (tmp_path / f"experiment_state-{NEW}.json").write_text('{"trial_data": [')
    with pytest.raises(SearchStopped, match=rf"experiment_state-{NEW}\.json \(JSONDecodeError.*cannot be resumed"):
        check_experiment_state(tmp_path)


def test_a_damaged_tuner_file_is_one_line(tmp_path) -> None:
    (tmp_path / "tuner.pkl").write_bytes(cloudpickle.dumps({"param_space": {}})[:5])
    with pytest.raises(SearchStopped, match=r"tuner\.pkl cannot be read \(.*\); the search cannot be resumed"):
        check_experiment_state(tmp_path)


def test_trial_params_of_a_config_of_another_shape_never_fail() -> None:
    assert trial_params({"variant": 1, "v1": {"optimizer": {"lr": 0.1}}, "seed": 3}) == {
        "variant": 1,
        "seed": 3,
        "optimizer.lr": 0.1,
    }
    assert trial_params({"optimizer": {"lr": 0.1}}) == {"optimizer.lr": 0.1}  # no 'variant': logged as it is
    assert trial_params({"variant": 2}) == {"variant": 2}


def test_a_scheduler_pickled_under_its_old_module_path_unpickles_as_the_moved_class() -> None:
    """A search started before the package's modules moved has Tune's state naming `pareto_search.scheduler`."""
    import subprocess
    import sys

    # a fresh interpreter: this one may have aliased already
    code = (
        "import pickle, sys\n"
        "from pareto_search.search.tune_state import alias_moved_modules\n"
        "old = b'cpareto_search.scheduler\\nParetoASHA\\np0\\n.'\n"
        "try:\n    pickle.loads(old)\nexcept ModuleNotFoundError:\n    print('refused before')\n"
        "alias_moved_modules()\n"
        "from pareto_search.search.scheduler import ParetoASHA\n"
        "print(pickle.loads(old) is ParetoASHA)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused", "before", "True"]
