"""Tests of `pareto_search.front.plots`: files are written and well-formed, and bad inputs give clear errors."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from pareto_search.front import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OBJ2 = [("left_acc", "max"), ("right_loss", "min")]
OBJ3 = [("a", "min"), ("b", "max"), ("c", "min")]


def _points(n: int, m: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).uniform(0.2, 1.0, (n, m)).tolist()


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000


def test_front_png_two_objectives(tmp_path: Path) -> None:
    exact = np.c_[np.linspace(0.2, 1, 30), np.linspace(0.2, 1, 30)]
    out = plots.front_png(
        OBJ2, _points(30, 2), tmp_path / "sub" / "front.png", reference_point=[0.0, 2.0], exact_front=exact, title="t"
    )
    assert out == tmp_path / "sub" / "front.png"
    _assert_png(out)


def test_front_png_three_objectives_with_nan_and_given_mask(tmp_path: Path) -> None:
    points = [*_points(20, 3), [float("nan"), 0.5, 0.5]]
    on_front = [i % 3 == 0 for i in range(len(points))]
    _assert_png(plots.front_png(OBJ3, points, tmp_path / "f3.png", on_front=on_front, reference_point=[1.1, 0.0, 1.1]))


def test_front_png_empty_front(tmp_path: Path) -> None:
    # A search that has not reported yet still gets a (blank) plot rather than an error.
    _assert_png(plots.front_png(OBJ2, [], tmp_path / "empty.png", reference_point=[0.0, 2.0]))


def test_front_png_does_not_touch_pyplot(tmp_path: Path) -> None:
    # Plots are drawn from callbacks and threads: no pyplot state (open figures, backend switch) may leak.
    import matplotlib

    backend = matplotlib.get_backend()
    errors: list[BaseException] = []

    def draw(k: int) -> None:
        try:
            plots.front_png(OBJ2, _points(10, 2, seed=k), tmp_path / f"thread{k}.png")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert matplotlib.get_backend() == backend
    for k in range(3):
        _assert_png(tmp_path / f"thread{k}.png")


@pytest.mark.parametrize("objectives", [OBJ2, OBJ3, [*OBJ3, ("d", "max")]], ids=["2d", "3d", "4d"])
def test_front_html_is_self_contained_and_has_labels(tmp_path: Path, objectives: list[tuple[str, str]]) -> None:
    points = _points(8, len(objectives))
    labels = [f"trial_{i:04d} member {i % 2} mgda" for i in range(len(points))]
    out = plots.front_html(
        objectives, points, tmp_path / "front.html", labels=labels, reference_point=[0.0] * len(objectives)
    )
    html = out.read_text(encoding="utf-8")
    assert "<html>" in html[:200]
    assert html.rstrip().endswith("</html>")
    for label in labels:
        assert label in html
    assert re.search(r"<script[^>]*\ssrc=", html) is None  # plotly.js embedded, not from a CDN: works offline
    assert len(html) > 1_000_000


def test_labels_from_front_points() -> None:
    points = [
        {"trial_id": "t1", "member": 2, "solver": "mt2o", "values": [1, 2], "preference": [0.25, 0.75]},
        {"trial_id": "t2", "member": 0, "solver": "mgda", "values": [2, 1], "preference": None},
    ]
    assert plots.labels_from_front_points(points) == ["t1 m2 mt2o pref=[0.25, 0.75]", "t2 m0 mgda"]


def test_overlay_png(tmp_path: Path) -> None:
    fronts = {"a": (OBJ2, _points(15, 2, seed=1)), "b": (OBJ2, _points(15, 2, seed=2))}
    _assert_png(plots.overlay_png(fronts, tmp_path / "overlay.png", reference_point=[0.0, 2.0]))
    fronts3 = {"a": (OBJ3, _points(15, 3, seed=1)), "b": (OBJ3, _points(15, 3, seed=2))}
    _assert_png(plots.overlay_png(fronts3, tmp_path / "overlay3.png"))


def test_overlay_png_rejects_different_objectives(tmp_path: Path) -> None:
    fronts = {"a": (OBJ2, _points(5, 2)), "b": ([("left_acc", "max"), ("right_loss", "max")], _points(5, 2))}
    with pytest.raises(ValueError, match=r"share objectives.*'a' has.*'b' has"):
        plots.overlay_png(fronts, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plots.overlay_png({}, tmp_path / "x.png")


def test_heatmap_png(tmp_path: Path) -> None:
    matrix = np.array([[1.0, -0.5, np.nan], [0.2, 0.0, -1.0]])
    _assert_png(plots.heatmap_png(matrix, ["t1", "t2"], ["a", "b", "c"], tmp_path / "heat.png", "affinity"))
    _assert_png(plots.heatmap_png(np.abs(matrix), ["t1", "t2"], ["a", "b", "c"], tmp_path / "heat2.png", "abs"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [[0.1, 0.2], [0.3]]}, r"`points` should have 2 values per point .* Found 1 at point 1"),
        ({"on_front": [True]}, r"`on_front` should have one entry per point \(2\). Found 1"),
        ({"labels": ["a", "b", "c"]}, r"`labels` should have one entry per point \(2\). Found 3"),
        ({"reference_point": [0.0]}, r"`reference_point` should have 2 values .* Found 1"),
        ({"exact_front": [[0.1, 0.2, 0.3]]}, r"`exact_front` should have 2 values per point .* Found 3 at point 0"),
        ({"objectives": [("a", "min"), ("b", "up")]}, r"Direction of objective 'b' should be one of \['min', 'max'\]"),
        ({"objectives": [("a", "min")]}, r"at least 2 objectives. Found 1"),
        ({"objectives": [("a", "min"), ("a", "max")]}, r"distinct names"),
    ],
)
def test_mismatched_inputs_name_the_problem(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"objectives": OBJ2, "points": [[0.1, 0.2], [0.3, 0.4]], **kwargs}
    with pytest.raises(ValueError, match=message):
        plots.front_html(path=tmp_path / "x.html", **args)
    if "labels" not in kwargs:
        with pytest.raises(ValueError, match=message):
            plots.front_png(path=tmp_path / "x.png", **args)
    assert not list(tmp_path.iterdir())  # nothing written on bad input


def test_heatmap_label_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"`col_labels` should have one label per column \(3\). Found 2"):
        plots.heatmap_png(np.zeros((2, 3)), ["r1", "r2"], ["a", "b"], tmp_path / "x.png", "")
    with pytest.raises(ValueError, match=r"`matrix` should be 2-dimensional. Found shape \(3,\)"):
        plots.heatmap_png(np.zeros(3), ["r1"], ["a"], tmp_path / "x.png", "")


def _gold_pixels(path: Path) -> int:
    """Pixels of the selection star's colour (matplotlib 'gold' = #FFD700); no other mark uses it."""
    import matplotlib.image

    rgb = (matplotlib.image.imread(path)[..., :3] * 255).round()
    return int((np.abs(rgb - np.array([255, 215, 0])).max(axis=-1) <= 8).sum())


@pytest.mark.parametrize("objectives", [OBJ2, OBJ3])
def test_front_png_stars_the_selected_point(tmp_path: Path, objectives) -> None:
    points = _points(12, len(objectives))
    plain = plots.front_png(objectives, points, tmp_path / "plain.png")
    starred = plots.front_png(objectives, points, tmp_path / "starred.png", selected=(points[3], "t3/0"))
    assert _gold_pixels(plain) == 0
    assert _gold_pixels(starred) > 50
