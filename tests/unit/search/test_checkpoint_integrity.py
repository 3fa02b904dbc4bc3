"""Sealed checkpoints: a damaged one is named and skipped for the newest intact one, or the trial starts over."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ray import tune

from pareto_search.search.checkpoints import MANIFEST, DamagedCheckpoint, newest_present, restore, seal, verify

FILE = "trainer.pt"


def _checkpoint(trial_dir: Path, index: int, epoch: int) -> Path:
    folder = trial_dir / f"checkpoint_{index:06d}"
    folder.mkdir(parents=True)
    torch.save({"epoch": epoch, "weights": torch.arange(1000.0) * epoch}, folder / FILE)
    torch.save({"w": torch.ones(10)}, folder / "member_0.pt")
    seal(folder)
    return folder


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])  # what a full disk leaves


def _restore(latest: Path) -> tuple[list[int], object]:
    loaded: list[int] = []
    restored = restore(tune.Checkpoint(str(latest)), lambda state: loaded.append(state["epoch"]), FILE)
    return loaded, restored


def test_sealed_checkpoint_verifies_and_each_kind_of_damage_is_named(tmp_path) -> None:
    folder = _checkpoint(tmp_path, 0, 1)
    verify(folder)  # intact: no error
    _truncate(folder / "member_0.pt")
    with pytest.raises(DamagedCheckpoint, match=r"member_0.pt has \d+ bytes, the manifest says \d+"):
        verify(folder)

    altered = _checkpoint(tmp_path, 1, 2)
    data = bytearray((altered / FILE).read_bytes())
    data[-20] ^= 0xFF  # same size, one byte flipped
    (altered / FILE).write_bytes(bytes(data))
    with pytest.raises(DamagedCheckpoint, match=r"trainer\.pt does not match its checksum"):
        verify(altered)

    unsealed = _checkpoint(tmp_path, 2, 3)
    (unsealed / MANIFEST).write_text('{"files": ')
    with pytest.raises(DamagedCheckpoint, match=r"manifest\.json is unreadable"):
        verify(unsealed)
    (unsealed / MANIFEST).unlink()
    with pytest.raises(DamagedCheckpoint, match=r"manifest\.json is missing"):
        verify(unsealed)


def test_an_intact_newest_checkpoint_is_loaded_without_a_recovery(tmp_path) -> None:
    _checkpoint(tmp_path, 0, 1)
    latest = _checkpoint(tmp_path, 1, 2)
    loaded, restored = _restore(latest)
    assert loaded == [2] and restored is None


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path) -> None:
    _checkpoint(tmp_path, 3, 4)
    _checkpoint(tmp_path, 4, 5)
    latest = _checkpoint(tmp_path, 5, 6)
    _truncate(latest / FILE)
    loaded, restored = _restore(latest)
    assert loaded == [5], "the newest intact checkpoint (epoch 5) is the one loaded, once"
    assert restored.source == "checkpoint_000004"
    assert restored.message().startswith("damaged checkpoint checkpoint_000005: trainer.pt has ")
    assert restored.message().endswith("— resumed from checkpoint_000004")


def test_a_checkpoint_rotated_away_since_tune_saved_its_table_continues_from_the_trials_newest(tmp_path) -> None:
    # Tune's trial table names checkpoint_000002; the trial checkpointed twice more before the driver was killed,
    # and Tune (keeping two) deleted 2: the trial's real newest checkpoint, 4, is the one to continue from.
    stale = tmp_path / "checkpoint_000002"
    _checkpoint(tmp_path, 3, 4)
    _checkpoint(tmp_path, 4, 5)
    assert not stale.exists()  # the fault: the checkpoint Tune restores is gone
    loaded, restored = _restore(stale)
    assert loaded == [5] and restored.source == "checkpoint_000004"
    assert restored.damaged == ("checkpoint_000002: gone (rotated away after Tune last saved its trial table)",)
    assert str(newest_present(tune.Checkpoint(str(stale))).path).endswith("checkpoint_000004")
    present = tune.Checkpoint(str(tmp_path / "checkpoint_000003"))
    assert str(newest_present(present).path).endswith("checkpoint_000003")  # one that exists is itself
    empty = tmp_path / "other_trial"
    empty.mkdir()
    assert newest_present(tune.Checkpoint(str(empty / "checkpoint_000001"))) is None


def test_every_checkpoint_damaged_restarts_from_scratch_and_names_each(tmp_path) -> None:
    older = _checkpoint(tmp_path, 0, 1)
    latest = _checkpoint(tmp_path, 1, 2)
    _truncate(older / FILE)
    (latest / MANIFEST).unlink()  # a copy cut short before its manifest arrived
    _truncate(latest / FILE)
    loaded, restored = _restore(latest)
    assert loaded == [] and restored.source == "scratch"
    assert restored.damaged[0].startswith("checkpoint_000001: trainer.pt cannot be read (")
    assert restored.damaged[1].startswith("checkpoint_000000: trainer.pt has ")
    assert restored.message().endswith("— restarted from scratch (its own seed)")


def test_a_checkpoint_of_another_spec_is_an_error_not_damage(tmp_path) -> None:
    latest = _checkpoint(tmp_path, 0, 1)

    def refuse(state: dict) -> None:
        raise ValueError("checkpoint was written by a different trial spec; refusing to resume from it")

    with pytest.raises(ValueError, match="different trial spec"):
        restore(tune.Checkpoint(str(latest)), refuse, FILE)
