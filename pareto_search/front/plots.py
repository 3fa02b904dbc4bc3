"""Plots of fronts and matrices: the one module that imports matplotlib and plotly.

Inputs follow the service's conventions (docs/conventions.md): `objectives` is `[(name, "min"|"max"), ...]` and every
value (points, reference point, exact front) is in its objective's own direction, so the axes show what the
user configured (an accuracy goes up, a loss goes down) and the labels say which way is better. Which points
are non-dominated is decided in the minimization form by `pareto_search.front.pareto` (no Pareto math here).

Static images use matplotlib's object API (`matplotlib.figure.Figure`) and never pyplot: no backend is
selected, no global figure registry is touched and nothing leaks, so plotting is safe from a Ray Tune
callback, a thread, or a process without a display. Interactive plots are self-contained HTML files (the
plotly library is embedded, ~4.8 MB a file) so that they open from an MLflow artifact without internet.

Points with NaN or infinite values (a diverged trial) cannot be drawn: they are left out and the title says
how many.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from pareto_search.front.global_front import GlobalFront
from pareto_search.front.pareto import DIRECTIONS, non_dominated_mask, to_min_form

__all__ = ["front_html", "front_png", "heatmap_png", "labels_from_front_points", "overlay_png"]

PathLike = str | os.PathLike[str]
ObjectivesSpec = Sequence[tuple[str, str]]

_DPI = 120
_FRONT_COLOR = "tab:blue"
_DOMINATED_COLOR = "0.65"  # light grey: dominated points are context, the front is the message
_REFERENCE_COLOR = "tab:red"
_EXACT_COLOR = "black"
# Empty space around the drawn points, as a fraction of their range on each axis.
_LIMIT_MARGIN = 0.06
# A reference point within this many ranges of the points is zoomed out to; a farther one stays off the axes.
_NEAR = 0.5
# Matrices up to this size get their values written in the cells; above, the numbers would not fit.
_MAX_ANNOTATED_CELLS = 20


@dataclass(frozen=True)
class _Data:
    names: list[str]
    directions: list[str]
    values: NDArray[np.float64]  # (n, m), own direction, finite rows only
    on_front: NDArray[np.bool_]  # (n,)
    labels: list[str]  # (n,)
    reference: NDArray[np.float64] | None  # (m,)
    exact: NDArray[np.float64] | None  # (k, m)
    n_hidden: int  # non-finite points left out

    @property
    def m(self) -> int:
        return len(self.names)

    def axis_label(self, j: int) -> str:
        return f"{self.names[j]} ({'↓' if self.directions[j] == 'min' else '↑'} better)"


def _check_objectives(objectives: ObjectivesSpec) -> tuple[list[str], list[str]]:
    try:
        pairs = [(str(name), str(direction)) for name, direction in objectives]
    except (TypeError, ValueError):
        raise ValueError(
            f"Parameter `objectives` should be a list of (name, direction) pairs. Found {objectives!r}."
        ) from None
    if len(pairs) < 2:
        raise ValueError(f"Parameter `objectives` should name at least 2 objectives. Found {len(pairs)}: {pairs!r}.")
    for name, direction in pairs:
        if direction not in DIRECTIONS:
            raise ValueError(
                f"Direction of objective {name!r} should be one of {list(DIRECTIONS)}. Found {direction!r}."
            )
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"Parameter `objectives` should have distinct names. Found {names!r}.")
    return names, [d for _, d in pairs]


def _as_points(points: ArrayLike, m: int, what: str) -> NDArray[np.float64]:
    if not isinstance(points, Iterable):
        raise ValueError(
            f"Parameter `{what}` should be a list of points (one value per objective each). Found {points!r}."
        )
    rows = list(points) if not isinstance(points, np.ndarray) else points
    if len(rows) == 0:
        return np.zeros((0, m))
    for i, row in enumerate(rows):
        n = len(row)
        if n != m:
            raise ValueError(
                f"Parameter `{what}` should have {m} values per point (one per objective). Found {n} at point {i}."
            )
    return np.asarray(rows, dtype=float).reshape(len(rows), m)


def _prepare(
    objectives: ObjectivesSpec,
    points: ArrayLike,
    *,
    on_front: Sequence[bool] | None = None,
    reference_point: ArrayLike | None = None,
    exact_front: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
) -> _Data:
    names, directions = _check_objectives(objectives)
    m = len(names)
    values = _as_points(points, m, "points")
    n = len(values)
    for param, seq in (("on_front", on_front), ("labels", labels)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"Parameter `{param}` should have one entry per point ({n}). Found {len(seq)}.")
    reference = None
    if reference_point is not None:
        reference = np.asarray(reference_point, dtype=float).reshape(-1)
        if reference.shape != (m,):
            raise ValueError(
                f"Parameter `reference_point` should have {m} values (one per objective). Found {reference.size}."
            )
    exact = None if exact_front is None else _as_points(exact_front, m, "exact_front")
    finite: NDArray[np.bool_] = np.all(np.isfinite(values), axis=1) if n else np.zeros(0, dtype=bool)
    if on_front is None:
        # Non-dominated among the drawable points (computed on the finite rows only: pareto would warn on the
        # others, and they are never on a front anyway).
        mask = np.zeros(n, dtype=bool)
        if finite.any():
            mask[finite] = non_dominated_mask(to_min_form(values[finite], directions))
    else:
        mask = np.asarray(on_front, dtype=bool)
    all_labels = [str(x) for x in labels] if labels is not None else [f"point {i}" for i in range(n)]
    return _Data(
        names=names,
        directions=directions,
        values=values[finite],
        on_front=mask[finite],
        labels=[lab for lab, ok in zip(all_labels, finite, strict=True) if ok],
        reference=reference,
        exact=None if exact is None else exact[np.isfinite(exact).all(axis=1)],
        n_hidden=int(n - finite.sum()),
    )


def _title(title: str, data: _Data) -> str:
    counts = f"{int(data.on_front.sum())} on front / {len(data.values)} points"
    if data.n_hidden:
        counts += f", {data.n_hidden} non-finite not shown"
    return f"{title}\n{counts}" if title else counts


def _output(path: PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _staircase(
    front: NDArray[np.float64], directions: Sequence[str], reference: NDArray[np.float64] | None
) -> NDArray[np.float64]:
    """Vertices of the attainment staircase of 2-objective non-dominated points, in their own direction.

    Built in the minimization form (sorted by the first objective, each step goes right then down) and
    mapped back, so it is right for any mix of directions. With a reference point, the ends are extended to it
    so that the drawn region is the one whose area is the hypervolume.
    """
    if len(front) == 0:
        return np.zeros((0, 2))
    mf = to_min_form(front, directions)
    mf = mf[np.lexsort((mf[:, 1], mf[:, 0]))]
    vertices = [mf[0]]
    for prev, cur in pairwise(mf):
        vertices += [np.array([cur[0], prev[1]]), cur]
    if reference is not None:
        ref = to_min_form(reference, directions)
        if ref[1] > mf[0, 1]:
            vertices.insert(0, np.array([mf[0, 0], ref[1]]))
        if ref[0] > mf[-1, 0]:
            vertices.append(np.array([ref[0], mf[-1, 1]]))
    return to_min_form(np.array(vertices), directions)  # negation is its own inverse


def _sorted_exact(exact: NDArray[np.float64], directions: Sequence[str]) -> NDArray[np.float64]:
    return exact[np.argsort(to_min_form(exact, directions)[:, 0], kind="stable")]


# --------------------------------------------------------------------------------------------------------
# matplotlib (PNG)
# --------------------------------------------------------------------------------------------------------


def _draw_pair(ax: Axes, data: _Data, i: int, j: int, *, staircase: bool, legend: bool) -> None:
    """Objective j on x, objective i on y."""
    dom, front = data.values[~data.on_front], data.values[data.on_front]
    if data.exact is not None and len(data.exact):
        ex = _sorted_exact(data.exact, data.directions) if staircase else data.exact
        if staircase:
            ax.plot(ex[:, j], ex[:, i], color=_EXACT_COLOR, lw=1, ls=":", label="exact front")
        else:
            ax.scatter(ex[:, j], ex[:, i], s=2, color=_EXACT_COLOR, alpha=0.3, label="exact front")
    ax.scatter(dom[:, j], dom[:, i], s=14, color=_DOMINATED_COLOR, alpha=0.7, label=f"dominated ({len(dom)})")
    if staircase and len(front):
        steps = _staircase(front[:, [j, i]], [data.directions[j], data.directions[i]], _pair_ref(data, i, j))
        ax.plot(steps[:, 0], steps[:, 1], color=_FRONT_COLOR, lw=1.2, alpha=0.8)
    ax.scatter(
        front[:, j],
        front[:, i],
        s=30,
        color=_FRONT_COLOR,
        edgecolors="black",
        lw=0.5,
        zorder=3,
        label=f"non-dominated ({len(front)})",
    )
    shown = [data.values] if data.exact is None else [data.values, data.exact]
    _reference_and_limits(ax, data.reference, i, j, np.concatenate(shown))
    if legend:
        ax.legend(fontsize=8, loc="best")


def _limits(values: NDArray[np.float64]) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    margin = _LIMIT_MARGIN * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 0.05)
    return lo - margin, hi + margin


def _reference_and_limits(
    ax: Axes, reference: NDArray[np.float64] | None, i: int, j: int, shown: NDArray[np.float64]
) -> None:
    """Draw the reference point; fit the axes to the drawn points, and to the reference only if it is near.

    A reference point is often far from the front (0.0 for an accuracy around 0.9): zooming out to it would
    squash the front into a corner. Then it stays off the axes (the staircase runs to the edge towards it)
    and its coordinates are given in the legend.
    """
    ax.grid(True, lw=0.4, alpha=0.5)
    if len(shown) == 0:
        if reference is not None:
            ax.scatter(
                [reference[j]], [reference[i]], marker="x", s=50, color=_REFERENCE_COLOR, label="reference point"
            )
        return
    (x0, x1), (y0, y1) = _limits(shown[:, j]), _limits(shown[:, i])
    if reference is not None:
        rx, ry = float(reference[j]), float(reference[i])
        near = (x0 - _NEAR * (x1 - x0) <= rx <= x1 + _NEAR * (x1 - x0)) and (
            y0 - _NEAR * (y1 - y0) <= ry <= y1 + _NEAR * (y1 - y0)
        )
        label = "reference point" if near else f"reference point ({rx:.3g}, {ry:.3g}) off axes"
        ax.scatter([rx], [ry], marker="x", s=50, color=_REFERENCE_COLOR, zorder=4, label=label)
        if near:
            (x0, x1), (y0, y1) = _limits(np.append(shown[:, j], rx)), _limits(np.append(shown[:, i], ry))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _pair_ref(data: _Data, i: int, j: int) -> NDArray[np.float64] | None:
    return None if data.reference is None else data.reference[[j, i]]


def _scatter_matrix(fig: Figure, m: int, draw: Any, data_for_labels: _Data) -> None:
    """An m x m grid: pairs off the diagonal (drawn by `draw(ax, i, j)`), the objective's name on it."""
    axes = fig.subplots(m, m, squeeze=False)
    for i in range(m):
        for j in range(m):
            ax = axes[i][j]
            if i == j:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, data_for_labels.axis_label(i), ha="center", va="center", wrap=True, fontsize=9)
                continue
            draw(ax, i, j)
            if i == m - 1:
                ax.set_xlabel(data_for_labels.axis_label(j), fontsize=8)
            if j == 0:
                ax.set_ylabel(data_for_labels.axis_label(i), fontsize=8)
            ax.tick_params(labelsize=7)
    handles, labels = axes[0][1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)


def _save(fig: Figure, path: PathLike) -> Path:
    out = _output(path)
    fig.savefig(out, format="png", dpi=_DPI)
    return out


def front_png(
    objectives: ObjectivesSpec,
    points: ArrayLike,
    path: PathLike,
    *,
    on_front: Sequence[bool] | None = None,
    reference_point: ArrayLike | None = None,
    exact_front: ArrayLike | None = None,
    title: str = "",
    selected: tuple[Sequence[float], str] | None = None,
) -> Path:
    """PNG of points in objective space, non-dominated ones highlighted; returns the written path.

    Two objectives: one scatter with the non-dominated points joined by their attainment staircase (extended
    to `reference_point`, so the enclosed region is the hypervolume). Three or more: a scatter matrix of
    every pair (a point is highlighted if it is non-dominated in *all* objectives, so it may look dominated in
    a pair). `on_front` (default: computed from `points`) lets the caller highlight the *global* front when
    plotting a subset; `exact_front` (own direction, shape (k, m)) is the known true front of a synthetic
    problem, drawn as a dotted line / faint points. `selected` (values in own direction, label) marks the
    model picked from the front (`pareto-search select`) with a star.
    """
    data = _prepare(objectives, points, on_front=on_front, reference_point=reference_point, exact_front=exact_front)

    def draw(ax: Axes, i: int, j: int, staircase: bool, legend: bool) -> None:
        _draw_pair(ax, data, i, j, staircase=staircase, legend=False)
        if selected is not None:
            values, label = selected
            ax.scatter(
                [values[j]],
                [values[i]],
                marker="*",
                s=260,
                color="gold",
                edgecolors="black",
                lw=0.8,
                zorder=5,
                label=f"selected: {label}",
            )
        if legend:
            ax.legend(fontsize=8, loc="best")

    if data.m == 2:
        fig = Figure(figsize=(6.4, 5.2), layout="constrained")
        ax = fig.add_subplot()
        draw(ax, 1, 0, True, True)
        ax.set_xlabel(data.axis_label(0))
        ax.set_ylabel(data.axis_label(1))
        ax.set_title(_title(title, data), fontsize=10)
    else:
        size = 2.4 * data.m
        fig = Figure(figsize=(size, size + 0.4), layout="constrained")
        _scatter_matrix(fig, data.m, lambda ax, i, j: draw(ax, i, j, False, False), data)
        fig.suptitle(_title(title, data), fontsize=10)
    return _save(fig, path)


def overlay_png(
    fronts: Mapping[str, tuple[ObjectivesSpec, ArrayLike]],
    path: PathLike,
    reference_point: ArrayLike | None = None,
    *,
    title: str = "",
) -> Path:
    """PNG of several searches' fronts on shared axes (for `compare`); returns the written path.

    Each entry is `name -> (objectives, points)`; all must have the same objectives and directions (fronts
    in different objective spaces cannot be compared). Only each search's non-dominated points are drawn
    (with its staircase for 2 objectives), one colour per search.
    """
    if not fronts:
        raise ValueError("Parameter `fronts` should hold at least one (objectives, points) entry. Found none.")
    prepared: dict[str, _Data] = {}
    first_name, first = None, None
    for name, entry in fronts.items():
        try:
            objectives, points = entry
        except (TypeError, ValueError):
            raise ValueError(
                f"Entry {name!r} of `fronts` should be an (objectives, points) pair. Found {type(entry).__name__}."
            ) from None
        data = _prepare(objectives, points, reference_point=reference_point)
        if first is None:
            first_name, first = name, data
        elif (data.names, data.directions) != (first.names, first.directions):
            raise ValueError(
                f"Fronts should share objectives to be overlaid: {first_name!r} has "
                f"{list(zip(first.names, first.directions, strict=True))}, {name!r} has "
                f"{list(zip(data.names, data.directions, strict=True))}."
            )
        prepared[name] = data
    assert first is not None
    colors = colormaps["tab10"]

    def draw(ax: Axes, i: int, j: int, staircase: bool) -> None:
        for k, (name, data) in enumerate(prepared.items()):
            front = data.values[data.on_front]
            color = colors(k % 10)
            if staircase and len(front):
                steps = _staircase(front[:, [j, i]], [data.directions[j], data.directions[i]], _pair_ref(data, i, j))
                ax.plot(steps[:, 0], steps[:, 1], color=color, lw=1.2, alpha=0.8)
            ax.scatter(
                front[:, j],
                front[:, i],
                s=24,
                color=color,
                edgecolors="black",
                lw=0.4,
                zorder=3,
                label=f"{name} ({len(front)})",
            )
        shown = np.concatenate([d.values[d.on_front] for d in prepared.values()])
        _reference_and_limits(ax, first.reference, i, j, shown)

    if first.m == 2:
        fig = Figure(figsize=(6.4, 5.2), layout="constrained")
        ax = fig.add_subplot()
        draw(ax, 1, 0, staircase=True)
        ax.legend(fontsize=8, loc="best")
        ax.set_xlabel(first.axis_label(0))
        ax.set_ylabel(first.axis_label(1))
        ax.set_title(title or "Non-dominated points per search", fontsize=10)
    else:
        size = 2.4 * first.m
        fig = Figure(figsize=(size, size + 0.4), layout="constrained")
        _scatter_matrix(fig, first.m, lambda ax, i, j: draw(ax, i, j, staircase=False), first)
        fig.suptitle(title or "Non-dominated points per search", fontsize=10)
    return _save(fig, path)


def heatmap_png(
    matrix: ArrayLike,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: PathLike,
    title: str = "",
) -> Path:
    """PNG heatmap of a matrix (e.g. task affinities); returns the written path.

    A matrix with both signs gets a diverging colormap centred on 0 (an affinity's sign is its meaning:
    helps / hurts); a one-signed one gets a sequential colormap. Values are written in the cells up to
    20 x 20. NaN cells are grey.
    """
    mat = np.asarray(matrix, dtype=float)
    if mat.ndim != 2:
        raise ValueError(f"Parameter `matrix` should be 2-dimensional. Found shape {mat.shape}.")
    if len(row_labels) != mat.shape[0]:
        raise ValueError(
            f"Parameter `row_labels` should have one label per row ({mat.shape[0]}). Found {len(row_labels)}."
        )
    if len(col_labels) != mat.shape[1]:
        raise ValueError(
            f"Parameter `col_labels` should have one label per column ({mat.shape[1]}). Found {len(col_labels)}."
        )
    finite = mat[np.isfinite(mat)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo < 0 < hi:
        bound = max(-lo, hi)
        cmap, norm = "RdBu_r", TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    else:
        cmap, norm = "viridis", None
    rows, cols = mat.shape
    fig = Figure(figsize=(max(4.0, 0.6 * cols + 2.5), max(3.0, 0.5 * rows + 1.5)), layout="constrained")
    ax = fig.add_subplot()
    # NaN cells (e.g. an affinity never measured) in grey, distinct from the white of 0 in the diverging map.
    colormap = colormaps[cmap].with_extremes(bad="0.8")
    image = ax.imshow(np.ma.masked_invalid(mat), cmap=colormap, norm=norm, aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(cols), [str(c) for c in col_labels], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rows), [str(r) for r in row_labels], fontsize=8)
    if rows <= _MAX_ANNOTATED_CELLS and cols <= _MAX_ANNOTATED_CELLS:
        for r in range(rows):
            for c in range(cols):
                if math.isfinite(mat[r, c]):
                    red, green, blue, _ = image.cmap(image.norm(mat[r, c]))
                    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # perceived luminance
                    color = "white" if dark else "black"
                    ax.text(c, r, f"{mat[r, c]:.2g}", ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------
# plotly (HTML)
# --------------------------------------------------------------------------------------------------------


def labels_from_front_points(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Hover labels from the `points` of a front JSON (docs/conventions.md, "The front file"): trial, member,
    solver, preference."""
    labels = []
    for p in points:
        pref = p.get("preference")
        pref_txt = "" if pref is None else " pref=[" + ", ".join(f"{float(x):.3g}" for x in pref) + "]"
        labels.append(f"{p.get('trial_id', '?')} m{p.get('member', '?')} {p.get('solver', '?')}{pref_txt}")
    return labels


def _hover(data: _Data) -> str:
    lines = [f"{data.names[j]}: %{{customdata[{j}]:.4g}}" for j in range(data.m)]
    return "<b>%{text}</b><br>" + "<br>".join(lines) + "<extra></extra>"


def front_html(
    objectives: ObjectivesSpec,
    points: ArrayLike,
    path: PathLike,
    *,
    on_front: Sequence[bool] | None = None,
    reference_point: ArrayLike | None = None,
    exact_front: ArrayLike | None = None,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Self-contained interactive HTML of the same plot as `front_png`; returns the written path.

    Hovering a point shows its label (`labels`, one per point, e.g. from `labels_from_front_points`; default
    "point i") and its values. Two objectives: a 2-D scatter with the staircase; three: a rotatable 3-D
    scatter; more: a scatter matrix. plotly.js is embedded in the file (no CDN), so it opens offline.
    """
    data = _prepare(
        objectives, points, on_front=on_front, reference_point=reference_point, exact_front=exact_front, labels=labels
    )
    groups: list[tuple[str, NDArray[np.bool_], dict[str, Any]]] = [
        ("dominated", ~data.on_front, dict(size=6, color="lightgrey", line=dict(width=0))),
        ("non-dominated", data.on_front, dict(size=9, color="royalblue", line=dict(width=1, color="black"))),
    ]
    fig = go.Figure()
    if data.m == 2:
        if data.exact is not None and len(data.exact):
            ex = _sorted_exact(data.exact, data.directions)
            fig.add_trace(
                go.Scatter(
                    x=ex[:, 0],
                    y=ex[:, 1],
                    mode="lines",
                    name="exact front",
                    line=dict(color="black", dash="dot", width=1),
                    hoverinfo="skip",
                )
            )
        front = data.values[data.on_front]
        if len(front):
            steps = _staircase(front, data.directions, data.reference)
            fig.add_trace(
                go.Scatter(
                    x=steps[:, 0],
                    y=steps[:, 1],
                    mode="lines",
                    name="staircase",
                    line=dict(color="royalblue", width=1),
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        for name, mask, marker in groups:
            fig.add_trace(
                go.Scatter(
                    x=data.values[mask, 0],
                    y=data.values[mask, 1],
                    mode="markers",
                    name=f"{name} ({int(mask.sum())})",
                    marker=marker,
                    text=[lab for lab, k in zip(data.labels, mask, strict=True) if k],
                    customdata=data.values[mask],
                    hovertemplate=_hover(data),
                )
            )
        if data.reference is not None:
            fig.add_trace(
                go.Scatter(
                    x=[data.reference[0]],
                    y=[data.reference[1]],
                    mode="markers",
                    name="reference point",
                    marker=dict(symbol="x", size=10, color="crimson"),
                )
            )
        fig.update_xaxes(title_text=data.axis_label(0))
        fig.update_yaxes(title_text=data.axis_label(1))
    elif data.m == 3:
        if data.exact is not None and len(data.exact):
            fig.add_trace(
                go.Scatter3d(
                    x=data.exact[:, 0],
                    y=data.exact[:, 1],
                    z=data.exact[:, 2],
                    mode="markers",
                    name="exact front",
                    marker=dict(size=1.5, color="black", opacity=0.3),
                    hoverinfo="skip",
                )
            )
        for name, mask, marker in groups:
            fig.add_trace(
                go.Scatter3d(
                    x=data.values[mask, 0],
                    y=data.values[mask, 1],
                    z=data.values[mask, 2],
                    mode="markers",
                    name=f"{name} ({int(mask.sum())})",
                    marker={**marker, "size": marker["size"] * 0.6},
                    text=[lab for lab, k in zip(data.labels, mask, strict=True) if k],
                    customdata=data.values[mask],
                    hovertemplate=_hover(data),
                )
            )
        if data.reference is not None:
            r = data.reference
            fig.add_trace(
                go.Scatter3d(
                    x=[r[0]],
                    y=[r[1]],
                    z=[r[2]],
                    mode="markers",
                    name="reference point",
                    marker=dict(symbol="x", size=5, color="crimson"),
                )
            )
        fig.update_layout(
            scene=dict(xaxis_title=data.axis_label(0), yaxis_title=data.axis_label(1), zaxis_title=data.axis_label(2))
        )
    else:
        for name, mask, marker in groups:
            fig.add_trace(
                go.Splom(
                    dimensions=[dict(label=data.axis_label(j), values=data.values[mask, j]) for j in range(data.m)],
                    name=f"{name} ({int(mask.sum())})",
                    marker=marker,
                    diagonal_visible=False,
                    text=[lab for lab, k in zip(data.labels, mask, strict=True) if k],
                    hovertemplate="<b>%{text}</b><extra></extra>",
                )
            )
    fig.update_layout(title=dict(text=_title(title, data).replace("\n", "<br>")), template="plotly_white")
    out = _output(path)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    return out


def global_front_files(
    front: GlobalFront, folder: PathLike, *, selected: tuple[Sequence[float], str] | None = None
) -> tuple[Path, Path]:
    """`front.png` and `front.html` of a search's global front (every evaluated point, the front
    highlighted) in `folder`: what a search's parent run shows, with the selected model starred."""
    all_points = front.all_points()
    on_front_ids = {p.id for p in front.front().points}
    values = [list(p.values) for p in all_points.points]
    on_front = [p.id in on_front_ids for p in all_points.points]
    hv, test_hv = front.hypervolume().value, front.test_hypervolume()
    title = f"{front.search}: HV {hv:.4f}" + ("" if test_hv is None else f" (test {test_hv:.4f})")
    objectives = [(o.name, o.direction) for o in front.objectives]
    png = front_png(
        objectives,
        values,
        Path(folder) / "front.png",
        on_front=on_front,
        reference_point=front.reference_point,
        title=title,
        selected=selected,
    )
    html = front_html(
        objectives,
        values,
        Path(folder) / "front.html",
        on_front=on_front,
        labels=[f"{p.id} {p.data.get('solver', '')}" for p in all_points.points],
        reference_point=front.reference_point,
        title=title,
    )
    return png, html
