"""The global front of a search: every evaluated member of every trial, persisted in storage.

Each model — a (trial, member) — contributes its latest evaluated point, ``TRIAL/mK``, and keeps every
earlier epoch of its that is still non-dominated within the whole set, as ``TRIAL/mK@eE`` (E: the epoch).
A later epoch that is worse (overfitting, a diverging learning rate) therefore never takes the model's
better epoch off the front, and the global hypervolume never goes down during a search: a point leaves
only when another point strictly dominates it. Points already found are never dropped when a trial
later fails.

Weights: a point's weights are the trial's checkpoint of that epoch, copied by the driver into
``epoch_weights/TRIAL/mK_eE.pt`` next to this file while the point is non-dominated (at most one file
per point on the front: a file is deleted when its point falls off it). A member's latest point also
gets ``runs:/<run>/weights/member_K.pt`` on its trial's MLflow run when the trial ends, as before. Each
point carries its validation values (``values``, what the front is made of) and its test values
(``test_values``, evaluated with the same epoch: reported, never used to select).

The file is rewritten atomically after every update, so a killed driver leaves a readable front and
``resume`` continues from it (kept epochs and their weights included). Format 1 files (latest points
only) still load. Pareto math goes through :mod:`pareto_search.front.pareto` (pymoo).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pareto_search.front.pareto import Front, FrontPoint, HypervolumeResult, NonFiniteValuesWarning, Objective
from pareto_search.storage import Location

FORMAT = 2  # bump when the points file layout changes (2: kept earlier epochs, their weights files, test values)
READABLE_FORMATS = (1, 2)  # 1: a member's latest point only, no test values: loads as it is
EPOCH_MARK = "@e"  # TRIAL/mK@eE: epoch E of member K, kept on the front after later epochs
WEIGHTS_DIR = "epoch_weights"  # next to the front file: the weights of its non-dominated points
# What belongs to one epoch of a model, not to the model: never carried from one epoch's point to another's.
EPOCH_KEYS = ("epoch", "test_values", "weights_file", "model_uri", "model_epochs")


def write_atomic(path: Path | Location, text: str) -> None:
    """Readers never see half a file (local: temp file + rename; object stores: one upload)."""
    Location(path).write_text(text)


def point_id(trial_id: str, member: int, epoch: int | None = None) -> str:
    """``TRIAL/mK`` (the member's latest point) or ``TRIAL/mK@eE`` (its epoch E, kept on the front)."""
    return f"{trial_id}/m{member}" if epoch is None else f"{trial_id}/m{member}{EPOCH_MARK}{epoch}"


def kept_epoch(pid: str) -> int | None:
    """E for a kept earlier epoch's id (or label) ``…/mK@eE`` / ``…/K@eE``; None for a member's latest point."""
    _, mark, epoch = pid.rpartition("/")[2].partition(EPOCH_MARK)
    epoch = epoch.split("@")[0]  # …@eE@pref=…: a PSL point at an exact preference (select --exact)
    return int(epoch) if mark and epoch.isdigit() else None


def _strictly_dominated(target: np.ndarray, others: np.ndarray) -> bool:
    """Is some row of `others` <= `target` everywhere and < somewhere (min form; NaN rows never are)?"""
    if len(others) == 0:
        return False
    return bool(np.any(np.all(others <= target, axis=1) & np.any(others < target, axis=1)))


class GlobalFront:
    def __init__(
        self,
        search: str,
        objectives: Sequence[Objective],
        reference_point: Sequence[float],
        path: Path | Location | None = None,
    ) -> None:
        if len(reference_point) != len(objectives):
            raise ValueError(f"reference point has {len(reference_point)} values, the objectives {len(objectives)}")
        self.search = search
        self.objectives = tuple(objectives)
        self.reference_point = tuple(float(v) for v in reference_point)
        self.path = None if path is None else Location(path)
        self.points: dict[str, FrontPoint] = {}

    # -- updates -----------------------------------------------------------------------------

    def update(self, trial_id: str, members: Sequence[Mapping[str, Any]]) -> None:
        """Record a trial's newest member points. Each member mapping holds ``member``, ``values`` (own
        directions) and any metadata (solver, preference, epoch, test_values, ...).

        A member's previous latest point (another epoch) stays as ``TRIAL/mK@eE`` when no point strictly
        dominates it; kept epochs that the new points dominate leave, with their weights files."""
        signs = self._signs()
        released: list[str] = []  # weights files of points that left the front: deleted once the file is saved
        demoted: list[FrontPoint] = []
        new_rows = []
        for member in members:
            k = int(member["member"])
            pid = point_id(trial_id, k)
            old = self.points.get(pid)
            data = {key: v for key, v in (old.data if old else {}).items() if key not in EPOCH_KEYS}
            data.update({key: v for key, v in member.items() if key != "values"})
            data["trial_id"] = trial_id
            data.setdefault("model_uri", "")
            epoch = member.get("epoch")
            if epoch is not None:  # the same epoch again (a trial run again from an older checkpoint or from
                # scratch): it takes the kept point's place and its weights file; training is deterministic per
                # seed, so it is the same point (a nondeterministic GPU kernel may move it a little)
                again = self.points.pop(point_id(trial_id, k, int(epoch)), None)
                if again is not None and again.data.get("weights_file"):
                    data["weights_file"] = again.data["weights_file"]
            new = FrontPoint(pid, tuple(float(v) for v in member["values"]), data)
            self.points[pid] = new
            new_rows.append(signs * np.asarray(new.values))
            if old is None:
                continue
            old_epoch = old.data.get("epoch")
            if old_epoch is not None and epoch is not None and int(old_epoch) == int(epoch):
                if old.data.get("weights_file") and "weights_file" not in data:  # a re-report of the same epoch
                    self.points[pid] = FrontPoint(pid, new.values, {**data, "weights_file": old.data["weights_file"]})
                continue
            kept = all(math.isfinite(v) for v in old.values) and old.values != new.values
            kept_epoch = old_epoch if kept else None
            if kept_epoch is not None:  # the model's earlier epoch: its own weights (if stored), never the latest's URI
                demoted.append(
                    FrontPoint(point_id(trial_id, k, int(kept_epoch)), old.values, {**old.data, "model_uri": ""})
                )
            elif old.data.get("weights_file"):
                released.append(str(old.data["weights_file"]))
        ids, values = list(self.points), self._matrix()  # one matrix per result: the driver's loop waits on this
        # The earlier epochs, against every point: the new ones and the other members' earlier epochs included.
        everything = np.vstack([values, *(signs * np.asarray(p.values) for p in demoted)])
        for point in demoted:
            if _strictly_dominated(signs * np.asarray(point.values), everything):
                released.extend([str(point.data["weights_file"])] if point.data.get("weights_file") else [])
            else:
                self.points[point.id] = point
        if new_rows:  # only the new points can dominate what was already there (an invariant kept by every update)
            released.extend(self._drop_dominated_by(np.vstack(new_rows), ids, values))
        self.save()
        self._delete_weights(released)

    def _drop_dominated_by(self, rows: np.ndarray, ids: list[str], values: np.ndarray) -> list[str]:
        """Of the points `ids` (`values`: their min-form rows), kept earlier epochs strictly dominated by one of
        `rows` leave, and latest points it dominates lose their weights file (they stay: a member's latest point
        is always recorded). Returns the freed files."""
        # Only points with something to lose: kept epochs and points holding weights (at most the front's size).
        held = [i for i, pid in enumerate(ids) if EPOCH_MARK in pid or self.points[pid].data.get("weights_file")]
        values = values[held]
        better_or_equal = np.all(rows[:, None, :] <= values[None, :, :], axis=2)
        better_somewhere = np.any(rows[:, None, :] < values[None, :, :], axis=2)
        released = []
        for index in np.flatnonzero(np.any(better_or_equal & better_somewhere, axis=0)):
            pid = ids[held[index]]
            point = self.points[pid]
            if point.data.get("weights_file"):
                released.append(str(point.data["weights_file"]))
            if kept_epoch(pid) is not None:
                del self.points[pid]
            elif point.data.get("weights_file"):
                self.points[pid] = FrontPoint(
                    pid, point.values, {k: v for k, v in point.data.items() if k != "weights_file"}
                )
        return released

    def keep_weights(
        self,
        trial_id: str,
        epoch: int,
        read: Callable[[int], bytes],
        source: Callable[[int], str] | None = None,
    ) -> list[int]:
        """Store the weights of a trial's members at `epoch` (``read(member)``: its checkpoint's file) for those
        whose latest point is that epoch and on the front. ``source(member)`` names that file: members with the same
        one (a Pareto set learning trial's points, one conditioned model) share one stored copy (None: each member
        its own). Returns the members. Only with a path."""
        if self.path is None:
            return []
        signs, everything = self._signs(), self._matrix()
        kept: list[int] = []
        stored: dict[str, str] = {}  # checkpoint file -> its copy next to the front
        for pid, point in list(self.points.items()):
            if point.data.get("trial_id") != trial_id or kept_epoch(pid) is not None:
                continue
            if point.data.get("epoch") != epoch or point.data.get("weights_file"):
                continue
            k = int(point.data["member"])
            row = signs * np.asarray(point.values)
            if not np.all(np.isfinite(row)) or _strictly_dominated(row, everything):
                continue
            origin = source(k) if source is not None else f"m{k}"
            if origin not in stored:
                stem = f"m{k}" if source is None or origin.startswith("member_") else Path(origin).stem
                stored[origin] = f"{WEIGHTS_DIR}/{trial_id}/{stem}_e{epoch}.pt"
                # The file first: the front never names a missing one.
                (self.path.parent / stored[origin]).write_bytes(read(k))
            self.points[pid] = FrontPoint(pid, point.values, {**point.data, "weights_file": stored[origin]})
            kept.append(k)
        if kept:
            self.save()
        return kept

    def _delete_weights(self, names: Sequence[str]) -> None:
        if self.path is None:
            return
        named = {str(p.data["weights_file"]) for p in self.points.values() if p.data.get("weights_file")}
        for name in set(names) - named:  # a file another point still names (one conditioned model) stays
            # A file left behind costs space, never a wrong weight: the front no longer names it.
            with contextlib.suppress(OSError):
                (self.path.parent / name).delete()

    def set_data(self, trial_id: str, **data: Any) -> None:
        """Attach metadata (e.g. the model URI once weights are stored) to a trial's points, kept epochs
        included; a callable value is called with each point."""
        prefix = f"{trial_id}/m"
        for pid, point in list(self.points.items()):
            if pid.startswith(prefix):
                member_data = {k: (v(point) if callable(v) else v) for k, v in data.items()}
                self.points[pid] = FrontPoint(pid, point.values, {**point.data, **member_data})
        self.save()

    def _signs(self) -> np.ndarray:
        return np.array([1.0 if o.direction == "min" else -1.0 for o in self.objectives])

    def _matrix(self) -> np.ndarray:
        """Every point's values in min form, one row each (NaN rows included: they dominate nothing)."""
        m = len(self.objectives)
        flat = itertools.chain.from_iterable(p.values for p in self.points.values())
        matrix: np.ndarray = self._signs() * np.fromiter(flat, dtype=float, count=len(self.points) * m).reshape(-1, m)
        return matrix

    # -- queries -----------------------------------------------------------------------------

    def weights_uri(self, point: FrontPoint) -> str:
        """Where `point`'s weights are: its trial run's ``runs:/…`` URI (a member's latest epoch, once its trial
        ended), else its file in this front's storage (an epoch kept on the front), else ""."""
        uri = str(point.data.get("model_uri") or "")
        if uri or not point.data.get("weights_file") or self.path is None:
            return uri
        return str(self.path.parent / str(point.data["weights_file"]))

    def _view(self, point: FrontPoint) -> FrontPoint:
        """The point as readers see it: ``model_uri`` resolved (:meth:`weights_uri`) where this front is now."""
        uri = self.weights_uri(point)
        return (
            point
            if uri == point.data.get("model_uri", "")
            else FrontPoint(point.id, point.values, {**point.data, "model_uri": uri})
        )

    def all_points(self) -> Front:
        return Front(self.objectives, tuple(self._view(p) for p in self.points.values()))

    def front(self) -> Front:
        """The non-dominated points (NaN points are never on it)."""
        return self.all_points().non_dominated()

    def hypervolume(self) -> HypervolumeResult:
        return self.all_points().hypervolume(self.reference_point)

    def test_hypervolume(self, front: Front | None = None) -> float | None:
        """The HV of the front's points (chosen on validation) measured on their test values, at the same
        reference point; None when a point has no test values (a format 1 front, a problem without them)."""
        points = (self.front() if front is None else front).points
        if any(len(p.data.get("test_values") or ()) != len(self.objectives) for p in points):
            return None
        tested = Front(self.objectives, tuple(FrontPoint(p.id, tuple(p.data["test_values"])) for p in points))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteValuesWarning)  # a NaN test value adds no volume
            return tested.hypervolume(self.reference_point).value

    def contribution(self, trial_id: str, total: float | None = None) -> float:
        """HV lost if this trial's points were removed: its exclusive contribution. `total`: the front's HV when
        the caller has it already (the driver logs it with every result: one exact HV fewer per result)."""
        prefix = f"{trial_id}/m"
        others = Front(self.objectives, tuple(p for pid, p in self.points.items() if not pid.startswith(prefix)))
        total = self.hypervolume().value if total is None else total
        return max(0.0, total - others.hypervolume(self.reference_point).value)

    def on_front_members(self) -> dict[str, list[int]]:
        """trial id -> members on the front (by their latest point or a kept epoch)."""
        result: dict[str, set[int]] = {}
        for point in self.front().points:
            result.setdefault(point.data["trial_id"], set()).add(int(point.data["member"]))
        return {k: sorted(v) for k, v in result.items()}

    # -- files and formats ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The user-facing ``front --format json`` object (see docs/serving.md)."""
        front = self.front()
        hv = front.hypervolume(self.reference_point)
        return {
            "search": self.search,
            "objectives": [o.name for o in self.objectives],
            "directions": [o.direction for o in self.objectives],
            "reference_point": list(self.reference_point),
            "hypervolume": hv.value,
            "hypervolume_method": hv.method,
            "test_hypervolume": self.test_hypervolume(front),
            "points": [
                {
                    "point": point_label(p),
                    "trial_id": p.data["trial_id"],
                    "member": int(p.data["member"]),
                    "epoch": p.data.get("epoch"),
                    "solver": p.data.get("solver", ""),
                    "values": list(p.values),
                    "test_values": p.data.get("test_values"),
                    "preference": p.data.get("preference"),
                    "model_uri": p.data.get("model_uri", ""),
                }
                for p in sorted(front.points, key=lambda p: (p.values, p.id))
            ],
        }

    def to_csv(self) -> str:
        data = self.to_json()
        names = data["objectives"]
        out = io.StringIO()
        writer = csv.writer(out)
        header = ["trial_id", "member", "solver", *names, "preference", "model_uri", "point", "epoch"]
        writer.writerow([*header, *(f"test_{n}" for n in names)])
        for row in data["points"]:
            pref = ";".join(f"{v:.6g}" for v in row["preference"]) if row["preference"] else ""
            tests = row["test_values"] or [""] * len(names)
            writer.writerow(
                [
                    row["trial_id"],
                    row["member"],
                    row["solver"],
                    *row["values"],
                    pref,
                    row["model_uri"],
                    row["point"],
                    "" if row["epoch"] is None else row["epoch"],
                    *tests,
                ]
            )
        return out.getvalue()

    def to_table(self) -> str:
        data = self.to_json()
        names = data["objectives"]
        arrows = ["↓" if d == "min" else "↑" for d in data["directions"]]
        header = [
            "trial",
            "member",
            "epoch",
            "solver",
            *(f"{n} {a}" for n, a in zip(names, arrows, strict=True)),
            *(f"test {n}" for n in names),
        ]
        rows = [
            [
                r["trial_id"],
                r["point"].rpartition("/")[2],  # K, or K@eE for a kept earlier epoch
                "" if r["epoch"] is None else str(r["epoch"]),
                r["solver"],
                *(f"{v:.4f}" for v in r["values"]),
                *(f"{v:.4f}" for v in (r["test_values"] or [math.nan] * len(names))),
            ]
            for r in data["points"]
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        test_hv = "n/a" if data["test_hypervolume"] is None else f"{data['test_hypervolume']:.6f}"
        models = sum(kept_epoch(pid) is None for pid in self.points)  # each model once, by its latest point
        kept = sum(kept_epoch(r["point"]) is not None for r in data["points"])
        lines.append(
            f"{len(rows)} points on the front of {models} evaluated"
            + (f" ({kept} of them earlier epochs kept)" if kept else "")
            + "; hypervolume "
            f"{data['hypervolume']:.6f} on validation (the front is chosen on it), {test_hv} on test, "
            f"at reference point {data['reference_point']} ({data['hypervolume_method']})"
        )
        return "\n".join(lines)

    def save(self) -> None:
        if self.path is None:
            return
        payload = {
            "format": FORMAT,
            "search": self.search,
            "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives],
            "reference_point": list(self.reference_point),
            "points": [{"id": p.id, "values": list(p.values), "data": dict(p.data)} for p in self.points.values()],
        }
        write_atomic(self.path, json.dumps(payload, allow_nan=True))

    @classmethod
    def load(cls, path: Path | Location) -> GlobalFront:
        payload = json.loads(Location(path).read_text())
        if payload.get("format") not in READABLE_FORMATS:
            raise ValueError(
                f"front file '{path}' has format {payload.get('format')!r}; expected one of {list(READABLE_FORMATS)}"
            )
        front = cls(
            payload["search"],
            [Objective(o["name"], o["direction"]) for o in payload["objectives"]],
            payload["reference_point"],
            path,
        )
        for p in payload["points"]:
            front.points[p["id"]] = FrontPoint(p["id"], tuple(p["values"]), p["data"])
        return front


def point_label(point: FrontPoint) -> str:
    """``TRIAL/MEMBER`` for a member's latest point, ``TRIAL/MEMBER@eEPOCH`` for a kept earlier epoch: what
    ``select --point`` takes and what the selection, the registered model and the front JSON name."""
    trial = point.data.get("trial_id", point.id.rsplit("/", 1)[0])
    epoch = kept_epoch(point.id)
    label = f"{trial}/{int(point.data.get('member', 0))}" + ("" if epoch is None else f"{EPOCH_MARK}{epoch}")
    exact = point.data.get("exact_preference")  # a PSL trial's model at a preference of select's --exact
    return label if not exact else label + "@pref=" + ",".join(f"{p:.6g}" for p in exact)
