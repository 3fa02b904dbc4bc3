"""How the global front's bookkeeping scales with the number of points and objectives.

    .venv/bin/python benchmarks/front_scaling.py                      # 10^2..10^4 points, 2/3/5 objectives
    .venv/bin/python benchmarks/front_scaling.py --sizes 100,1000 --objectives 2,3

The driver does this once per trial result (pareto_search/search/callback.py): update the trial's points
(`GlobalFront.update`, which rewrites the points file), its exclusive HV contribution (two HVs), the global
HV, and the front (non-dominated sorting). `front` and `select` do load + non-dominated sort + HV once.
Points: a fraction on a curved front (the unit sphere's positive orthant, minimization form) and the rest
dominated (pushed away from the origin), each trial reporting 5 members; pymoo's exact HV up to 5 objectives.

Prints, per (objectives, points already in the front file): ms per result in the callback's path, split into
file write and Pareto math, and ms for the `front` command's load + sort + HV. The share of a search's wall
time follows from the result rate: at R results per second the driver spends R × (ms per result) / 1000.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pareto_search.front.global_front import GlobalFront  # noqa: E402
from pareto_search.front.pareto import Objective  # noqa: E402

MEMBERS = 5  # points per trial result, as a K = 5 population reports


def points(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points in [0, 1.1]^m, minimization: 20 % on the sphere's positive orthant, the rest dominated."""
    directions = np.abs(rng.normal(size=(n, m)))
    on_front = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    scale = np.where(rng.random(n) < 0.2, 1.0, 1.0 + 0.1 * rng.random(n))[:, None]
    return np.clip(on_front * scale, 0.0, 1.09)


def filled(n: int, m: int, folder: Path, rng: np.random.Generator) -> GlobalFront:
    objectives = [Objective(f"f{i}", "min") for i in range(m)]
    front = GlobalFront("bench", objectives, [1.1] * m, folder / "front_points.json")
    values = points(n, m, rng)
    for trial in range(n // MEMBERS):  # fill without saving every time (that is not what is measured)
        for k in range(MEMBERS):
            row = values[trial * MEMBERS + k]
            front.points[f"t{trial}/m{k}"] = _point(f"t{trial}/m{k}", row, trial, k)
    front.save()
    return front


def _point(pid: str, row: np.ndarray, trial: int, member: int):  # -> FrontPoint
    from pareto_search.front.pareto import FrontPoint

    return FrontPoint(pid, tuple(float(v) for v in row), {"trial_id": f"t{trial}", "member": member, "model_uri": ""})


def per_result_ms(front: GlobalFront, m: int, rng: np.random.Generator, repeats: int) -> tuple[float, float]:
    """(file ms, math ms) of one result through the callback's path, median of ``repeats``."""
    writes, maths = [], []
    for r in range(repeats):
        trial = f"new{r}"
        members = [{"member": k, "values": list(points(1, m, rng)[0])} for k in range(MEMBERS)]
        start = time.perf_counter()
        front.update(trial, members)  # includes the atomic rewrite of the points file
        wrote = time.perf_counter()
        total = front.hypervolume().value  # the callback's order: the global HV once, reused by the contribution
        front.contribution(trial, total=total)
        len(front.front())
        done = time.perf_counter()
        writes.append(wrote - start)
        maths.append(done - wrote)
    return 1e3 * float(np.median(writes)), 1e3 * float(np.median(maths))


def command_ms(path: Path) -> float:
    start = time.perf_counter()
    loaded = GlobalFront.load(path)
    loaded.to_json()  # non-dominated sort + HV, what `front` prints
    return 1e3 * (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--objectives", default="2,3,5")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'objectives':>10} {'points':>7} {'on front':>8} {'write ms':>9} {'math ms':>8} {'front cmd ms':>12}")
    for m in (int(v) for v in args.objectives.split(",")):
        for n in (int(v) for v in args.sizes.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                front = filled(n, m, Path(tmp), rng)
                write_ms, math_ms = per_result_ms(front, m, rng, args.repeats)
                cmd = command_ms(Path(tmp) / "front_points.json")
                print(
                    f"{m:>10} {n:>7} {len(front.front()):>8} {write_ms:>9.1f} {math_ms:>8.1f} {cmd:>12.1f}", flush=True
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
