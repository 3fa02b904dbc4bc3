"""A trial's checkpoints, sealed and checked: a manifest of checksums written last, verified on restore.

Tune copies a checkpoint folder into storage file by file; a full disk or a killed process can leave any of
those files short. Every checkpoint therefore carries ``manifest.json`` (each file's size and SHA-256). On
restore the newest checkpoint is verified; a damaged one is named, and the trial falls back to the newest
intact checkpoint in its folder (Tune keeps the last two, see runner.py), or — when none is intact — starts
again from scratch with its own seed. Training is deterministic per seed, so either way the trial ends
with the points an uninterrupted run finds; the recovery is reported with every later result so the
search summary can say what happened.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune

from trials.spec import SpecMismatch

MANIFEST = "manifest.json"
CHECKPOINT_PREFIX = "checkpoint_"  # Tune's folder names: checkpoint_000003
CHUNK = 1 << 20

# What reading a short or corrupt torch file raises (zip reader, unpickler, truncated stream).
LOAD_ERRORS = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, ValueError)


class DamagedCheckpoint(Exception):
    """A checkpoint folder whose files do not match its manifest (or cannot be read)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def seal(folder: Path) -> None:
    """Write the manifest of every file in `folder`; called after the last file is written."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    entries = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (folder / MANIFEST).write_text(json.dumps({"files": entries}, indent=1))


def verify(folder: Path) -> None:
    """Raise DamagedCheckpoint naming the first file that is missing, short or altered."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DamagedCheckpoint(f"{MANIFEST} is missing")
    try:
        entries = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedCheckpoint(f"{MANIFEST} is unreadable ({type(exc).__name__})") from None
    for name, expected in entries.items():
        path = folder / name
        if not path.is_file():
            raise DamagedCheckpoint(f"{name} is missing")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise DamagedCheckpoint(f"{name} has {size} bytes, the manifest says {expected['bytes']}")
        if _sha256(path) != expected["sha256"]:
            raise DamagedCheckpoint(f"{name} does not match its checksum")


@dataclass(frozen=True)
class Restored:
    """Which checkpoint a trial continued from, and what was wrong with the newer ones."""

    source: str  # a checkpoint folder's name, or "scratch"
    damaged: tuple[str, ...]  # "checkpoint_000004: trainer.pt has 100 bytes, the manifest says 5210"

    def message(self) -> str:
        where = "restarted from scratch (its own seed)" if self.source == "scratch" else f"resumed from {self.source}"
        return f"damaged checkpoint {'; '.join(self.damaged)} — {where}"


def _folders(filesystem: Any, parent: str) -> list[str]:
    """The checkpoint folders of a trial's folder, newest first (empty when it cannot be listed)."""
    from pyarrow import fs as pafs

    try:
        infos = filesystem.get_file_info(pafs.FileSelector(parent))
    except OSError:
        return []
    return sorted(
        (i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX)),
        reverse=True,
    )


def _exists(checkpoint: tune.Checkpoint) -> bool:
    from pyarrow import fs as pafs

    if checkpoint.filesystem is None:  # Tune always sets one; without it there is nothing to ask
        return False
    try:
        info = checkpoint.filesystem.get_file_info(str(checkpoint.path).rstrip("/"))
    except OSError:
        return False
    return bool(info.type == pafs.FileType.Directory)


def _candidates(latest: tune.Checkpoint) -> Iterator[tune.Checkpoint]:
    """The newest checkpoint, then the older ones beside it in the trial's folder, newest first.

    When the newest one Tune knows is gone, every checkpoint of the folder is a candidate, newer ones first: Tune
    saves its trial table every few seconds, so a driver killed in between restores a trial whose checkpoint Tune
    already rotated away (it keeps two) after the trial had checkpointed twice more. Training is deterministic per
    seed, so continuing from the trial's real newest checkpoint ends with the points an uninterrupted run finds."""
    filesystem, path = latest.filesystem, str(latest.path).rstrip("/")
    parent, _, name = path.rpartition("/")
    present = _exists(latest)
    if present:
        yield latest
    for other in _folders(filesystem, parent):
        if other < name or (not present and other != name):
            yield tune.Checkpoint(f"{parent}/{other}", filesystem=filesystem)


def newest_present(latest: tune.Checkpoint) -> tune.Checkpoint | None:
    """`latest` if its folder exists, else the trial's newest checkpoint folder beside it (see _candidates);
    None when the trial has none left."""
    return next(_candidates(latest), None)


def _name(checkpoint: tune.Checkpoint) -> str:
    return str(checkpoint.path).rstrip("/").rpartition("/")[2]


def restore(latest: tune.Checkpoint, load: Callable[[dict[str, Any]], None], file_name: str) -> Restored | None:
    """Load the newest intact checkpoint into the trial through `load` (given the state read from
    `file_name`). None: the newest was intact. Otherwise what was damaged and where the trial continues."""
    damaged: list[str] = []
    if not _exists(latest):
        damaged.append(f"{_name(latest)}: gone (rotated away after Tune last saved its trial table)")
    for checkpoint in _candidates(latest):
        with checkpoint.as_directory() as folder:
            try:
                if (Path(folder) / MANIFEST).is_file() or damaged:  # a folder without one predates manifests
                    verify(Path(folder))
                state = torch.load(Path(folder) / file_name, map_location="cpu", weights_only=True)
            except DamagedCheckpoint as exc:
                damaged.append(f"{_name(checkpoint)}: {exc}")
                continue
            except LOAD_ERRORS as exc:
                first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
                damaged.append(f"{_name(checkpoint)}: {file_name} cannot be read ({first_line[:120]})")
                continue
        try:
            load(state)  # outside the damage handling: a checkpoint of another spec is an error, not damage
        except SpecMismatch as exc:  # one line that names the checkpoint; retrying cannot change it
            raise SpecMismatch(f"{_name(checkpoint)}: {exc}") from None
        return Restored(_name(checkpoint), tuple(damaged)) if damaged else None
    return Restored("scratch", tuple(damaged))
