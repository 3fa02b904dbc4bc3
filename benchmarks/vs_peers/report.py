"""What a run reports: the per-method rows over seeds, the budget to reach each target, the headline ratio
against the best peer and its printed line, the reviewer's statistics, the HV plot and the MLflow log."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peer_stats
from mt2o_evidence import beyond_spread, mean_std  # the same statistics as the MT2O evidence

from .budget import budget_to_reach, grid_curve
from .methods import METHODS
from .runs import _objective_names

TARGETS = (0.95, 0.98)
RATIO_LINE = "budget ratio {ratio} to reach the best peer's final HV ({peer}, {problem})"


def ratio_text(ratio: float) -> str:
    return "never" if not math.isfinite(ratio) else f"{ratio:.2f}"


def ratio_line(ratio: float, peer: str, problem: str) -> str:
    return RATIO_LINE.format(ratio=ratio_text(ratio), peer=peer, problem=problem)


@dataclass
class Row:
    method: str
    family: str
    seeds: int
    curve_mean: list[float]
    curve_std: list[float]
    final: tuple[float, float]
    wall: tuple[float, float]
    slots: int
    notes: list[str]
    per_seed: dict[int, list[float]]


def summarize(records: dict[str, list[dict[str, Any]]], budget: int) -> list[Row]:
    rows = []
    for name, rs in records.items():
        if not rs:
            continue
        curves = {r["seed"]: grid_curve(r["cum"], r["hv"], budget) for r in rs}
        values = list(curves.values())
        rows.append(
            Row(
                name,
                METHODS[name].family,
                len(rs),
                [statistics.fmean(c[x] for c in values) for x in range(budget + 1)],
                [statistics.stdev(c[x] for c in values) if len(values) > 1 else 0.0 for x in range(budget + 1)],
                mean_std([c[-1] for c in values]),
                mean_std([r["wall_s"] for r in rs]),
                max(r["slots"] for r in rs),
                sorted({r["note"] for r in rs if r.get("note")}),
                curves,
            )
        )
    return rows


def to_target(row: Row, target: float) -> tuple[float, tuple[float, float], int]:
    """(budget on the mean curve, per-seed mean ± std over the seeds that reach it, seeds that never do)."""
    xs = list(range(len(row.curve_mean)))
    per_seed = [budget_to_reach(xs, c, target) for c in row.per_seed.values()]
    reached = [v for v in per_seed if math.isfinite(v)]
    stats = mean_std(reached) if reached else (math.inf, math.nan)
    return budget_to_reach(xs, row.curve_mean, target), stats, len(per_seed) - len(reached)


@dataclass
class Headline:
    peer: str
    target: float
    peer_budget: float
    ratios: dict[str, tuple[float, float]]  # ours method -> (its budget, ratio)


def headline(rows: list[Row]) -> Headline | None:
    peers = [r for r in rows if r.family == "peer"]
    ours = [r for r in rows if r.family == "ours"]
    if not peers or not ours:
        return None
    best = max(peers, key=lambda r: r.final[0])
    xs = list(range(len(best.curve_mean)))
    target = best.final[0]
    peer_budget = budget_to_reach(xs, best.curve_mean, target)
    ratios = {}
    for r in ours:
        mine = budget_to_reach(xs, r.curve_mean, target)
        ratios[r.method] = (mine, mine / peer_budget if peer_budget > 0 else math.inf)
    return Headline(best.method, target, peer_budget, ratios)


def _pm(value: tuple[float, float], spec: str) -> str:
    return "never" if math.isinf(value[0]) else f"{value[0]:{spec}} ± {value[1]:{spec}}"


def _budget(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.1f}"


def table_lines(problem: str, args: dict[str, Any], budget: int, epochs: int, slots: int, rows: list[Row]) -> list[str]:
    best_final = max(r.final[0] for r in rows)
    size = f", n_train {args['n_train']}" if "n_train" in args else ""
    lines = [
        f"### {problem}{size}: budget {budget} model-epochs, {epochs} epochs per model, {slots} Ray slot(s)",
        "",
        f"best final mean HV of any method: {best_final:.4f}; targets {TARGETS[0]:g} × = {TARGETS[0] * best_final:.4f}"
        f" and {TARGETS[1]:g} × = {TARGETS[1] * best_final:.4f}. Model-epochs to a target: on the mean curve, "
        "then per seed mean ± std (n: seeds that never reach it within the budget).",
        "",
        "| method | family | seeds | final HV at budget | to 95 %: mean curve | per seed | to 98 %: mean curve | "
        "per seed | wall s (slots) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r.final[0]):
        cells = []
        for fraction in TARGETS:
            on_mean, stats, never = to_target(r, fraction * best_final)
            seed_text = _pm(stats, ".1f") + (f" (never on {never})" if never else "")
            cells += [_budget(on_mean), seed_text]
        lines.append(
            f"| {r.method} | {r.family} | {r.seeds} | {_pm(r.final, '.4f')} | {' | '.join(cells)} | "
            f"{r.wall[0]:.0f} ({r.slots}) |"
        )
    notes = [f"- {r.method}: {n}" for r in rows for n in r.notes]
    if notes:
        lines += ["", *notes]
    head = headline(rows)
    if head is not None:
        by = {r.method: r for r in rows}
        peer = by[head.peer]
        lines += [
            "",
            f"Best peer: **{head.peer}**, final HV {_pm(peer.final, '.4f')}, its mean curve reaches that at "
            f"{_budget(head.peer_budget)} model-epochs.",
            "",
            "| ours | model-epochs to the best peer's final HV | budget ratio | final HV vs the peer's |",
            "|---|---|---|---|",
        ]
        for name, (mine, ratio) in sorted(head.ratios.items(), key=lambda kv: kv[1][1]):
            noise = "beyond" if beyond_spread(by[name].final, peer.final) else "within"
            sign = "higher" if by[name].final[0] > peer.final[0] else "lower"
            lines.append(
                f"| {name} | {_budget(mine)} | **{ratio_text(ratio)}** | {sign}: {_pm(by[name].final, '.4f')} "
                f"({noise} the seed spread) |"
            )
    return [*lines, ""]


def reviewer_lines(
    problem: Any, records: dict[str, list[dict[str, Any]]], rows: list[Row], headline_name: str, budget: int
) -> list[str]:
    """Per method: HV at a reference near the fronts, HV of the validation front's models on test, and against the
    best peer the per-seed budget ratios and the paired bootstrap interval of the final-HV difference; then how far
    apart the front's ends lie. The goal line for the headline method closes it. Only what a run evaluated within
    ``budget`` counts (a run whose last trial went past it is cut there, as its curve is)."""
    records = {
        m: [{**r, "events": [e for e in r["events"] if e["cum"] <= budget]} for r in rs] for m, rs in records.items()
    }
    names = _objective_names(problem)
    directions = [problem.metric(n).direction for n in names]
    reference = list(problem.default_reference_point)
    fronts = {m: {r["seed"]: peer_stats.front_of(r["events"], directions) for r in rs} for m, rs in records.items()}
    near = peer_stats.near_reference(
        [f for by_seed in fronts.values() for f in by_seed.values()], directions, bound=reference
    )
    head = headline(rows)
    by = {r.method: r for r in rows}
    peer = by[head.peer] if head is not None else None
    peer_final = {s: c[-1] for s, c in peer.per_seed.items()} if peer is not None else {}
    lines = [
        f"Reference near the fronts (each objective's worst final front point of any run, among the points inside the "
        "fixed reference): "
        f"({', '.join(f'{v:.4g}' for v in near)}); the fixed reference: ({', '.join(f'{v:.4g}' for v in reference)}). "
        "Test HV: the models on each run's final validation front, on the test split (never used to select). "
        f"Against the best peer ({head.peer if head else '–'}): per-seed model-epochs ratio to its final HV on that "
        "seed, median (range); the final-HV difference, mean [paired bootstrap 95 % interval] over the seeds.",
        "",
        "| method | val HV (fixed ref) | val HV (near ref) | test HV | per-seed ratio | HV − best peer [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -r.final[0]):
        near_hv = mean_std([peer_stats.hv_at(f, directions, near) for f in fronts[row.method].values()])
        tests = [peer_stats.hv_on_test(r["events"], directions, reference) for r in records[row.method]]
        test_text = _pm(mean_std(tests), ".4f") if all(math.isfinite(t) for t in tests) else "not recorded"
        ratio_cell = diff_cell = "–"
        if peer is not None and row.method != peer.method:
            ratio_cell = peer_stats.seed_ratios(row.per_seed, peer.per_seed, budget_to_reach).text()
            mean, lo, hi = peer_stats.paired_bootstrap({s: c[-1] for s, c in row.per_seed.items()}, peer_final)
            diff_cell = f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        lines.append(
            f"| {row.method} | {_pm(row.final, '.4f')} | {_pm(near_hv, '.4f')} | {test_text} | {ratio_cell} | "
            f"{diff_cell} |"
        )
    ends = peer_stats.front_ends([f for by_seed in fronts.values() for f in by_seed.values()], directions)
    lines += ["", "The front's ends (best point for each objective among all runs' final fronts):"]
    for name, end in zip(names, ends, strict=True):
        lines.append(f"- best {name}: ({', '.join(f'{n} {v:.4g}' for n, v in zip(names, end, strict=True))})")
    if peer is not None and headline_name in by:
        mine = by[headline_name]
        ratios = peer_stats.seed_ratios(mine.per_seed, peer.per_seed, budget_to_reach)
        mean, lo, hi = peer_stats.paired_bootstrap({s: c[-1] for s, c in mine.per_seed.items()}, peer_final)
        met = ratios.median <= 0.5 and lo > 0
        lines += [
            "",
            f"Goal ({headline_name} reaches {peer.method}'s final HV in <= 0.5x its model-epochs by the per-seed "
            f"median, the interval of the HV difference above 0): per-seed ratio {ratios.text()}, difference "
            f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]: **{'met' if met else 'not met'}**.",
        ]
    return [*lines, ""]


# -- plots and MLflow -----------------------------------------------------------------------------------------


def plot(problem: str, args: dict[str, Any], budget: int, slots: int, rows: list[Row], out: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5.5))
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    best_final = max(r.final[0] for r in rows)
    for i, r in enumerate(sorted(rows, key=lambda r: (r.family, r.method))):
        x = list(range(budget + 1))
        style = "-" if r.family == "ours" else "--"
        ax.plot(x, r.curve_mean, style, color=colors(i % 10), linewidth=1.5, label=f"{r.method} ({r.seeds} seeds)")
        low = [m - s for m, s in zip(r.curve_mean, r.curve_std, strict=True)]
        high = [m + s for m, s in zip(r.curve_mean, r.curve_std, strict=True)]
        ax.fill_between(x, low, high, color=colors(i % 10), alpha=0.12)
    for fraction in TARGETS:
        ax.axhline(fraction * best_final, color="black", linewidth=0.7, linestyle=":")
    ax.set_ylim(min(r.final[0] for r in rows) * 0.8, best_final * 1.02)  # the part where targets are crossed
    ax.set_xlabel("cumulative model-epochs (one member, one epoch)")
    ax.set_ylabel("HV of the cumulative front (mean ± std over seeds)")
    size = f", n_train {args['n_train']}" if "n_train" in args else ""
    ax.set_title(
        f"{problem}{size}, {slots} slot{'s' if slots > 1 else ''}: ours (solid) vs peers (dashed); "
        "dotted: 95 % / 98 % of the best final HV",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(left=0.08, right=0.76)
    path = out / f"{problem}_{args.get('n_train', 'syn')}_b{budget}_s{slots}_hv.png"
    fig.savefig(path, dpi=110)
    return path


def log_to_mlflow(uri: str, command: str, metrics: dict[str, float], files: list[Path]) -> None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("vs-peers")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("vs-peers")
    run = client.create_run(experiment_id, run_name="vs-peers " + time.strftime("%Y-%m-%d %H:%M"))
    client.log_param(run.info.run_id, "command", command[:500])
    for name, value in metrics.items():
        if math.isfinite(value):
            client.log_metric(run.info.run_id, name, value)
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
