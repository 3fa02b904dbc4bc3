"""The global front of a search: every evaluated member of every trial, persisted in storage.

Each (trial, member) contributes its latest evaluated point (a member's later epoch replaces
its earlier one: it is the same model trained further, and its weights are the ones kept).
Points already found are never dropped when a trial later fails. The file is rewritten
atomically after every update, so a killed driver leaves a readable front and ``resume``
continues from it. Pareto math goes through :mod:`pareto_search.pareto` (pymoo).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pareto_search.pareto import Front, FrontPoint, HypervolumeResult, Objective
from pareto_search.storage import Location

FORMAT = 1  # bump when the points file layout changes


def write_atomic(path: Path | Location, text: str) -> None:
    """Readers never see half a file (local: temp file + rename; object stores: one upload)."""
    Location(path).write_text(text)


def point_id(trial_id: str, member: int) -> str:
    return f"{trial_id}/m{member}"


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
        """Record a trial's latest member points. Each member mapping holds ``member``,
        ``values`` (own directions) and any metadata (solver, preference, epoch, ...)."""
        for member in members:
            pid = point_id(trial_id, int(member["member"]))
            old = self.points.get(pid)
            data = {**(dict(old.data) if old else {}), **{k: v for k, v in member.items() if k != "values"}}
            data["trial_id"] = trial_id
            data.setdefault("model_uri", "")
            self.points[pid] = FrontPoint(pid, tuple(float(v) for v in member["values"]), data)
        self.save()

    def set_data(self, trial_id: str, **data: Any) -> None:
        """Attach metadata (e.g. the model URI once weights are stored) to a trial's points."""
        prefix = f"{trial_id}/m"
        for pid, point in list(self.points.items()):
            if pid.startswith(prefix):
                member_data = {k: (v(point) if callable(v) else v) for k, v in data.items()}
                self.points[pid] = FrontPoint(pid, point.values, {**point.data, **member_data})
        self.save()

    # -- queries -----------------------------------------------------------------------------

    def all_points(self) -> Front:
        return Front(self.objectives, tuple(self.points.values()))

    def front(self) -> Front:
        """The non-dominated points (NaN points are never on it)."""
        return self.all_points().non_dominated()

    def hypervolume(self) -> HypervolumeResult:
        return self.all_points().hypervolume(self.reference_point)

    def contribution(self, trial_id: str, total: float | None = None) -> float:
        """HV lost if this trial's points were removed: its exclusive contribution. `total`: the front's HV when
        the caller has it already (the driver logs it with every result: one exact HV fewer per result)."""
        prefix = f"{trial_id}/m"
        others = Front(self.objectives, tuple(p for pid, p in self.points.items() if not pid.startswith(prefix)))
        total = self.hypervolume().value if total is None else total
        return max(0.0, total - others.hypervolume(self.reference_point).value)

    def on_front_members(self) -> dict[str, list[int]]:
        """trial id -> members on the front."""
        result: dict[str, list[int]] = {}
        for point in self.front().points:
            result.setdefault(point.data["trial_id"], []).append(int(point.data["member"]))
        return {k: sorted(v) for k, v in result.items()}

    # -- files and formats ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The user-facing ``front --format json`` object (see design.md)."""
        front = self.front()
        hv = front.hypervolume(self.reference_point)
        return {
            "search": self.search,
            "objectives": [o.name for o in self.objectives],
            "directions": [o.direction for o in self.objectives],
            "reference_point": list(self.reference_point),
            "hypervolume": hv.value,
            "hypervolume_method": hv.method,
            "points": [
                {
                    "trial_id": p.data["trial_id"],
                    "member": int(p.data["member"]),
                    "solver": p.data.get("solver", ""),
                    "values": list(p.values),
                    "preference": p.data.get("preference"),
                    "model_uri": p.data.get("model_uri", ""),
                }
                for p in sorted(front.points, key=lambda p: p.values)
            ],
        }

    def to_csv(self) -> str:
        rows = self.to_json()["points"]
        names = [o.name for o in self.objectives]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["trial_id", "member", "solver", *names, "preference", "model_uri"])
        for row in rows:
            pref = ";".join(f"{v:.6g}" for v in row["preference"]) if row["preference"] else ""
            writer.writerow([row["trial_id"], row["member"], row["solver"], *row["values"], pref, row["model_uri"]])
        return out.getvalue()

    def to_table(self) -> str:
        data = self.to_json()
        names = data["objectives"]
        arrows = ["↓" if d == "min" else "↑" for d in data["directions"]]
        header = ["trial", "member", "solver", *(f"{n} {a}" for n, a in zip(names, arrows, strict=True))]
        rows = [
            [r["trial_id"], str(r["member"]), r["solver"], *(f"{v:.4f}" for v in r["values"])] for r in data["points"]
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append(
            f"{len(rows)} points on the front of {len(self.points)} evaluated; hypervolume "
            f"{data['hypervolume']:.6f} at reference point {data['reference_point']} ({data['hypervolume_method']})"
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
        if payload.get("format") != FORMAT:
            raise ValueError(f"front file '{path}' has format {payload.get('format')!r}; expected {FORMAT}")
        front = cls(
            payload["search"],
            [Objective(o["name"], o["direction"]) for o in payload["objectives"]],
            payload["reference_point"],
            path,
        )
        for p in payload["points"]:
            front.points[p["id"]] = FrontPoint(p["id"], tuple(p["values"]), p["data"])
        return front
