"""Method benchmark: every MTL method side by side on Multi-MNIST and Multi-Fashion (offline data),
with the same LeNet, seeds, data and epoch budget.

    .venv/bin/python benchmarks/methods.py                 # the default run: both datasets, 12 epochs of 6k
    .venv/bin/python benchmarks/methods.py --seeds 0,1,2                 # less noisy
    .venv/bin/python benchmarks/methods.py --datasets multi_mnist --epochs 2 --n-train 2000  # smoke
    .venv/bin/python benchmarks/methods.py --list          # the method table, then exit

Rows: MT2O (K=5 linear scalarizations with parameter transfer, ε0=0.3), the same population
without transfer (ε0=0: K independent scalarizations, MT2O's control), PMTL and EPO (K=5, each
with the SGD their docs recommend and, as rows ``*-adam``, with the common Adam), and every other
registered solver as a single-solution method (K=1, equal preference; its run contributes one
point). One more row, "single-solution pooled", is the front of the union of the
single-solution rows' points: what a user gets by running each of them once (its seconds are
the sum of theirs).

Per method and epoch: the validation accuracies (left_acc, right_acc) of every member, the
hypervolume of those points (reference point (0, 0), the problem's default; a single point's
HV is the product of its accuracies) and the cumulative training wall time (evaluation
excluded). Epoch 0 is the shared initialization, evaluated before training. The data (composition
seed 0), the initialization and the batch order (both from ``--seeds``) are the same for every
method.

Target: ``--target`` (0.98) × the best final HV over all rows. Reported per row: the first
evaluated epoch whose HV reaches it, the crossing interpolated between the two bracketing
evaluations (in epochs and in training seconds; "never" if not reached); then the paper's claim
(MT2O's HV converges about 2× faster than the next-best) as the ratio next-best ÷ MT2O, whatever
it is, and MT2O against its own control (ε0=0). With several seeds the curves are averaged over
seeds first. Per-step cost: training seconds per optimizer step per model (a population's divided
by K) relative to linear equal weighting, from interleaved timing rounds (``measure_step_costs``).

Writes <out>/<dataset>_hv_epoch.png, <out>/<dataset>_hv_time.png and <out>/methods.json (every
number, per seed, and the command). Timings come from whatever else the machine runs: the cpu%
column flags rows that neighbours slowed down; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from pareto_search.front.pareto import Front, FrontPoint, Objective
from trials.loop import Trainer, epoch_generator
from trials.problems import Problem, make_problem
from trials.solvers import SOLVERS
from trials.spec import OptimizerSpec, PopulationSpec, TransferSpec, TrialSpec

# The common optimizer: Adam at 3e-3, constant. tests/unit/trials/problems/test_problems_multi_mnist.py measured it
# on this LeNet (0.917/0.872 after 5 epochs of 10k; Adam 1e-3 reached 0.872/0.835 and SGD 0.01 +
# momentum 0.9 0.74/0.72). Constant: MT2O's transfer should vanish before the learning rate does.
ADAM = OptimizerSpec(name="adam", lr=3e-3)
# EPO and PMTL are analysed for plain gradient steps and their docs (docs/methods.md "Whose code runs",
# trials/solvers/epo.py) say to use SGD when the preference ray / region matters: Adam's
# per-coordinate scaling bends the chosen direction. lr 0.05 + momentum 0.9: measured here on
# linear equal weights, 6k Multi-MNIST, 4 epochs: 0.854/0.811 (lr 0.1: 0.863/0.820; Multi-Fashion
# 0.631/0.618 vs 0.640/0.580, a tie), the smaller of the two for EPO's ascent steps. Both also run
# with the common Adam (rows *-adam) so that neither choice decides the comparison alone.
# Observed with this SGD (Multi-MNIST 6k, seed 0, ε0 = 0): PMTL's member λ = (0.29, 0.71) sat at
# chance (train losses 2.30/2.30 = ln 10) from epoch 3 to 6 after its first-phase losses rose to
# 3.5; SGD 0.01 trained every member too slowly to compare (HV 0.39 after 6 epochs).
SGD = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9)
# AdaTask's shared update is the *sum* of T per-task Adam steps (docs/methods.md, Implementation notes,
# AdaTask), up to T = 2 times the step of plain Adam at the same lr: halved so its shared step matches the others'.
ADATASK_ADAM = OptimizerSpec(name="adam", lr=1.5e-3)

POPULATION_SIZE = 5  # K of the population methods, as in the issue (MT2O with K=5)
MT2O_EPS0 = 0.3  # TransferSpec's default; period 10 steps, σ 0.2, linear decay to 0 (trials/spec.py)
POPULATION_SOLVERS = ("pmtl", "epo")  # finite-set Pareto methods: only meaningful as populations
MT2O = "mt2o"
ABLATION_EPS0 = (0.1, 0.6, 0.9)  # around the default 0.3; 0.0 is the "independent" row
ABLATION = "eps0-ablation"  # --methods shortcut: mt2o, independent and the ablation rows
POOLED = "single-solution pooled"


@dataclass(frozen=True)
class Method:
    key: str  # the row label and the --methods name
    solver: str
    size: int  # K
    kind: str  # "population" or "single"
    eps0: float = 0.0  # MT2O transfer; 0 = none
    transfer_mode: str = "symmetric"  # or "beneficial": only transfers that lower the receiver's objective
    optimizer: OptimizerSpec = ADAM
    solver_args: dict[str, Any] = field(default_factory=dict)

    def spec(self, problem: str, problem_args: dict[str, Any], epochs: int, seed: int) -> TrialSpec:
        return TrialSpec(
            problem=problem,
            problem_args=problem_args,
            solver=self.solver,
            solver_args=self.solver_args,
            population=PopulationSpec(size=self.size, transfer=TransferSpec(eps0=self.eps0, mode=self.transfer_mode)),
            optimizer=self.optimizer,
            epochs=epochs,
            seed=seed,
        )

    def optimizer_label(self) -> str:
        o = self.optimizer
        return f"{o.name} {o.lr:g}" + (f" m{o.momentum:g}" if o.momentum else "")


def method_table() -> dict[str, Method]:
    """Every method this benchmark knows, in row order; single-solution rows from the registry."""
    k = POPULATION_SIZE
    table = [
        Method(MT2O, "linear", k, "population", eps0=MT2O_EPS0),
        Method("independent", "linear", k, "population", eps0=0.0),
        Method("pmtl", "pmtl", k, "population", optimizer=SGD),
        Method("pmtl-adam", "pmtl", k, "population"),
        Method("epo", "epo", k, "population", optimizer=SGD),
        Method("epo-adam", "epo", k, "population"),
    ]
    # The ε0 ablation of MT2O (run with `--methods eps0-ablation`; not in the default run).
    table += [Method(f"mt2o-eps{e:g}", "linear", k, "population", eps0=e) for e in ABLATION_EPS0]
    table.append(Method("mt2o-beneficial", "linear", k, "population", eps0=MT2O_EPS0, transfer_mode="beneficial"))
    for name in SOLVERS:
        if name not in POPULATION_SOLVERS:
            table.append(Method(name, name, 1, "single", optimizer=ADATASK_ADAM if name == "adatask" else ADAM))
    return {m.key: m for m in table}


# -- running --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One method on one seed: per evaluated epoch (0 = initialization) every member's objective
    values and the cumulative training seconds."""

    method: str
    seed: int
    points: list[list[list[float]]] = field(default_factory=list)  # [epoch][member][objective]
    seconds: list[float] = field(default_factory=list)  # cumulative training seconds at each epoch
    hv: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    size: int = 1
    # Process CPU seconds ÷ (wall seconds × torch threads) over the whole run: well below the
    # other rows' value means neighbours took the cores and this row's seconds are inflated.
    cpu_util: float | None = None
    error: str | None = None


def front_hv(points: Sequence[Sequence[float]], objectives: tuple[Objective, ...], ref: Sequence[float]) -> float:
    front = Front(objectives, tuple(FrontPoint(str(i), tuple(p)) for i, p in enumerate(points)))
    return front.hypervolume(ref).value


def _spec(method: Method, problem: Problem, args: argparse.Namespace, seed: int) -> TrialSpec:
    return method.spec(problem.name, {"n_train": args.n_train, "n_val": args.n_val}, args.epochs, seed)


def run_method(method: Method, problem: Problem, args: argparse.Namespace, seed: int) -> Run:
    run = Run(method.key, seed, size=method.size)
    names = problem.default_objectives
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        trainer = Trainer(_spec(method, problem, args, seed), problem=problem, num_threads=args.threads)
        run.steps_per_epoch = problem.steps_per_epoch()
        run.points.append([[m[n] for n in names] for m in trainer.evaluate("val")])
        run.seconds.append(0.0)
        while not trainer.done:
            report = trainer.train_epoch()
            run.points.append([[m.metrics[n] for n in names] for m in report.members])
            run.seconds.append(run.seconds[-1] + report.train_seconds)
    except Exception as exc:  # one failing method is an error row; the others still run
        run.error = f"{type(exc).__name__}: {exc}"
        if args.verbose:
            traceback.print_exc()
    wall = time.perf_counter() - wall
    run.cpu_util = (time.process_time() - cpu) / (wall * args.threads) if wall > 0 else None
    return run


def warm_up(problem: Problem, threads: int) -> None:
    """One untimed epoch of linear equal weighting: allocator, kernels and page cache warm up
    before the first timed method, which would otherwise pay for them alone."""
    spec = TrialSpec(problem=problem.name, epochs=1, optimizer=ADAM)
    Trainer(spec, problem=problem, num_threads=threads).train_epoch()


def measure_step_costs(methods: list[Method], problem: Problem, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per optimizer step per model, measured apart from the training runs: every method
    steps ``--cost-steps`` batches in turn, ``--cost-rounds`` times, and its fastest round counts.
    Neighbours on a shared machine only ever add time, so the fastest of several interleaved rounds
    is the closest to the method's own cost, and a burst hits one round of one method rather than
    a whole row (the training runs' own seconds stay in the JSON as ``run_seconds_per_step``).
    10 steps: exactly one MT2O transfer (period 10) per round."""
    batches = list(itertools.islice(problem.train_batches(epoch_generator(0, 0)), args.cost_steps))
    batches = (batches * args.cost_steps)[: args.cost_steps]  # a tiny --n-train has fewer batches
    trainers: dict[str, Trainer] = {}
    errors: dict[str, str] = {}
    for m in methods:
        try:
            trainers[m.key] = Trainer(_spec(m, problem, args, 0), problem=problem, num_threads=args.threads)
            trainers[m.key].population.train_step(batches[0])  # untimed: lazy state, first-step setup
        except Exception as exc:
            errors[m.key] = f"{type(exc).__name__}: {exc}"
    rounds: dict[str, list[float]] = {key: [] for key in trainers}
    for _ in range(args.cost_rounds):
        for key, trainer in list(trainers.items()):
            population = trainer.population
            try:
                start = time.perf_counter()
                for batch in batches:
                    population.train_step(batch)
                rounds[key].append((time.perf_counter() - start) / (len(batches) * len(population)))
            except Exception as exc:  # e.g. divergence: the method's cost is unknown, not zero
                errors[key] = f"{type(exc).__name__}: {exc}"
                del trainers[key]
    return {
        key: {"fastest": min(values) if values and key not in errors else None, "rounds": values}
        for key, values in rounds.items()
    } | {key: {"fastest": None, "rounds": [], "error": error} for key, error in errors.items()}


# -- summarizing ----------------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    kind: str
    size: int
    optimizer: str
    hv: list[float]  # mean over seeds, per evaluated epoch 0..E
    seconds: list[float]  # mean over seeds, cumulative training seconds per epoch
    run_seconds_per_step: float | None = None  # per model, from the training runs' own seconds
    step_cost: float | None = None  # per model, fastest interleaved round (measure_step_costs)
    cost_vs_linear: float | None = None  # step_cost ÷ linear's step_cost
    cpu_util: float | None = None
    nonfinite_values: bool = False
    error: str | None = None
    epochs_to_target: int | None = None  # first evaluated epoch with HV >= target
    seconds_to_target: float | None = None  # training seconds by then
    # Linear interpolation between the two evaluations that bracket the crossing: finer than one
    # epoch, but an estimate (HV is only measured at epoch ends).
    epochs_to_target_interp: float | None = None
    seconds_to_target_interp: float | None = None


def pooled_runs(
    runs: list[Run], singles: set[str], objectives: tuple[Objective, ...], ref: Sequence[float]
) -> list[Run]:
    """Per seed: the union of the single-solution rows' points at each epoch, and the sum of their
    seconds (running each once, one after another)."""
    pooled = []
    for seed in sorted({r.seed for r in runs}):
        parts = [r for r in runs if r.seed == seed and r.method in singles and r.error is None]
        if len(parts) < 2:
            continue
        epochs = min(len(r.points) for r in parts)
        run = Run(POOLED, seed, size=len(parts))
        for e in range(epochs):
            run.points.append([p for r in parts for p in r.points[e]])
            run.seconds.append(sum(r.seconds[e] for r in parts))
        run.hv = [front_hv(pts, objectives, ref) for pts in run.points]
        pooled.append(run)
    return pooled


def summarize(method: Method | None, runs: list[Run]) -> Row:
    ok = [r for r in runs if r.error is None and r.hv]
    errors = "; ".join(f"seed {r.seed}: {r.error}" for r in runs if r.error is not None) or None
    if method is None:  # the pooled row
        kind, size, optimizer = "pooled", (ok[0].size if ok else 0), "(each its own)"
    else:
        kind, size, optimizer = method.kind, method.size, method.optimizer_label()
    name = runs[0].method if runs else "?"
    if not ok:
        return Row(name, kind, size, optimizer, [], [], error=errors or "no epoch finished")
    epochs = min(len(r.hv) for r in ok)
    hv = np.mean([r.hv[:epochs] for r in ok], axis=0)
    seconds = np.mean([r.seconds[:epochs] for r in ok], axis=0)
    per_step = None
    if method is not None and epochs > 1:
        per_step = float(np.mean([r.seconds[-1] / (r.steps_per_epoch * (len(r.seconds) - 1) * r.size) for r in ok]))
    utils = [r.cpu_util for r in ok if r.cpu_util is not None]
    return Row(
        name,
        kind,
        size,
        optimizer,
        hv.tolist(),
        seconds.tolist(),
        run_seconds_per_step=per_step,
        cpu_util=float(np.mean(utils)) if utils else None,
        nonfinite_values=bool(not np.isfinite(hv).all()),
        error=errors,
    )


def reach(row: Row, target: float) -> None:
    for e, value in enumerate(row.hv):
        if math.isfinite(value) and value >= target:
            row.epochs_to_target, row.seconds_to_target = e, row.seconds[e]
            row.epochs_to_target_interp, row.seconds_to_target_interp = float(e), row.seconds[e]
            if e > 0 and math.isfinite(row.hv[e - 1]) and row.hv[e] > row.hv[e - 1]:
                frac = (target - row.hv[e - 1]) / (row.hv[e] - row.hv[e - 1])
                row.epochs_to_target_interp = e - 1 + frac
                row.seconds_to_target_interp = row.seconds[e - 1] + frac * (row.seconds[e] - row.seconds[e - 1])
            return


CLAIM_MEASURES = (
    ("epochs", "epochs_to_target"),
    ("epochs, interpolated", "epochs_to_target_interp"),
    ("seconds, interpolated", "seconds_to_target_interp"),
)


def claim_lines(rows: list[Row]) -> list[str]:
    """The paper's speed claim, as measured: next-best ÷ MT2O, in epochs and in seconds."""
    mt2o = next((r for r in rows if r.method == MT2O), None)
    if mt2o is None or not mt2o.hv:
        return ["MT2O did not run: no speed ratio."]
    lines = []
    for unit, attr in CLAIM_MEASURES:
        # MT2O's own ablation rows (mt2o-eps…, mt2o-beneficial) are MT2O, not a competitor.
        others = [r for r in rows if not r.method.startswith(MT2O) and getattr(r, attr) is not None]
        best = min(others, key=lambda r: getattr(r, attr), default=None)
        mine = getattr(mt2o, attr)
        if mine is None:
            who = f"{best.method} reached it in {getattr(best, attr):.3g}" if best else "no row reached it"
            lines.append(f"[{unit}] MT2O never reached the target; {who}.")
            continue
        if best is None:
            lines.append(f"[{unit}] MT2O reached the target ({mine:.3g}); no other row did within the budget.")
            continue
        theirs = getattr(best, attr)
        ratio = theirs / mine if mine > 0 else math.inf
        if abs(ratio - 1.0) < 0.01:  # closer than the printed precision: say so, not "1.00x faster"
            verdict = "no difference between MT2O and the next-best (within 1%)"
        elif ratio > 1.0:
            verdict = f"MT2O reached the target {ratio:.2f}x faster than the next-best"
        else:
            verdict = f"MT2O was slower: the next-best reached it {1 / ratio:.2f}x faster"
        lines.append(f"[{unit}] next-best {best.method}: {theirs:.3g} / MT2O {mine:.3g} = {ratio:.2f} -> {verdict}.")
    control = next((r for r in rows if r.method == "independent"), None)
    if control is not None:
        for unit, attr in CLAIM_MEASURES[1:]:
            a, b = getattr(control, attr), getattr(mt2o, attr)
            text = f"{a:.3g} / {b:.3g} = {a / b:.2f}" if a is not None and b else f"{a} / {b}"
            lines.append(f"[control, {unit}] independent (eps0=0) / MT2O: {text} (what the transfer alone buys).")
    lines.append("The paper (NYUv2) claims MT2O's HV converges ~2x faster than the next-best; ratios > 1 favour MT2O.")
    if mt2o.epochs_to_target is not None and mt2o.epochs_to_target <= 3:
        lines.append("Resolution: HV is evaluated once per epoch; with a crossing this early, use more epochs.")
    return lines


def _fmt(value: float | None, spec: str, missing: str = "never") -> str:
    return missing if value is None else format(value, spec)


def print_table(dataset: str, rows: list[Row], target: float, fraction: float, args: argparse.Namespace) -> None:
    print(
        f"\n== {dataset}: {args.n_train} train / {args.n_val} val composites, {args.epochs} epochs, "
        f"seeds {args.seeds}, torch threads {args.threads}; HV of (left_acc, right_acc), ref (0, 0)"
    )
    print(f"target HV = {fraction:g} x best final HV = {target:.4f}")
    header = (
        f"{'method':<23}{'K':>3} {'optimizer':<15}{'HV fin':>7}{'HV max':>7}{'ep>T':>6}{'ep~T':>6}"
        f"{'s~T':>7}{'train s':>8}{'ms/st':>7}{'xlin':>6}{'cpu%':>5}  status"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        lead = f"{r.method:<23}{r.size:>3} {r.optimizer:<15}"
        if not r.hv:
            print(f"{lead}{'':>52}  ERROR {r.error}")
            continue
        status = "ok" if r.error is None else f"partial ({r.error})"
        if r.nonfinite_values:
            status = "non-finite HV"
        finite = [v for v in r.hv if math.isfinite(v)]
        ms = None if r.step_cost is None else 1e3 * r.step_cost
        util = None if r.cpu_util is None else 100 * r.cpu_util
        print(
            f"{lead}{r.hv[-1]:>7.4f}{max(finite, default=math.nan):>7.4f}{_fmt(r.epochs_to_target, 'd'):>6}"
            f"{_fmt(r.epochs_to_target_interp, '.2f'):>6}{_fmt(r.seconds_to_target_interp, '.1f'):>7}"
            f"{r.seconds[-1]:>8.1f}{_fmt(ms, '.1f', '-'):>7}{_fmt(r.cost_vs_linear, '.2f', '-'):>6}"
            f"{_fmt(util, '.0f', '-'):>5}  {status}"
        )
    print(
        "ep>T: first evaluated epoch with HV >= target; ep~T / s~T: the crossing interpolated between evaluations "
        "(epochs / training seconds);\nms/st: training ms per optimizer step per model (population / K), fastest of "
        "interleaved rounds; xlin: relative to linear; cpu%: process CPU / (wall x threads) over the run."
    )
    for line in claim_lines(rows):
        print(line)


# -- plots ----------------------------------------------------------------------------------------


def plot(dataset: str, rows: list[Row], target: float, out: Path) -> list[Path]:
    drawn = [r for r in rows if r.hv]
    colors = colormaps["tab20"]
    written = []
    for axis, fname, label in (
        ("epoch", f"{dataset}_hv_epoch.png", "epoch"),
        ("time", f"{dataset}_hv_time.png", "cumulative training seconds (evaluation excluded)"),
    ):
        fig = Figure(figsize=(11, 6))
        ax = fig.add_subplot()
        for i, r in enumerate(drawn):
            x = list(range(len(r.hv))) if axis == "epoch" else r.seconds
            style: dict[str, Any] = {"linewidth": 1.3, "color": colors(i % 20)}
            if r.method == MT2O:
                style = {"linewidth": 2.8, "color": "black"}
            if r.kind == "pooled":
                style["linestyle"] = ":"
            elif r.kind == "single":
                style["linestyle"] = "--"
            ax.plot(x, r.hv, marker="o", markersize=3, label=f"{r.method} (K={r.size})", **style)
        if math.isfinite(target):
            ax.axhline(target, color="grey", linewidth=0.8, linestyle="-.", label="target")
        if axis == "time":
            ax.set_xscale("symlog", linthresh=1.0)
        finite = [v for r in drawn for v in r.hv[1:] if math.isfinite(v)]
        if finite:  # zoom on the trained epochs: the initialization's HV (~0.01) flattens everything
            ax.set_ylim(max(0.0, min(finite) - 0.02), max(finite) + 0.01)
        ax.set_xlabel(label)
        ax.set_ylabel("hypervolume of validation (left_acc, right_acc), ref (0, 0)")
        ax.set_title(f"{dataset}: HV over {label.split(' (')[0]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: ~20 rows
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


# -- main -----------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None: strict JSON has no non-finite numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    table = method_table()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=_csv, default=["multi_mnist", "multi_fashion"])
    default_methods = [k for k in table if not k.startswith("mt2o-")]
    parser.add_argument(
        "--methods",
        type=_csv,
        default=default_methods,
        help=f"comma-separated; --list shows them; '{ABLATION}' = MT2O's ε0 ablation",
    )
    parser.add_argument("--epochs", type=int, default=12)  # 6 stops before HV flattens (+2 %/epoch)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-val", type=int, default=2000)
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in _csv(s)], default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.98, help="fraction of the best final HV")
    parser.add_argument("--cost-rounds", type=int, default=5, help="interleaved per-step timing rounds (0: off)")
    parser.add_argument("--cost-steps", type=int, default=10, help="optimizer steps per method per round")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/methods"))
    parser.add_argument("--list", action="store_true", help="print the method table and exit")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failing methods")
    args = parser.parse_args(argv)
    if ABLATION in args.methods:
        ablation = [MT2O, "independent", *(k for k in table if k.startswith("mt2o-"))]
        args.methods = [m for m in args.methods if m != ABLATION] + ablation
    if not 0 < args.target <= 1:
        parser.error(f"--target must be in (0, 1], found {args.target}")
    if args.epochs < 1 or args.cost_rounds < 0 or args.cost_steps < 1 or not args.seeds:
        parser.error("--epochs and --cost-steps must be >= 1, --cost-rounds >= 0, --seeds non-empty")
    return args


def run_dataset(dataset: str, methods: list[str], args: argparse.Namespace, costs: dict[str, Any] | None) -> dict:
    """Every method on one dataset: runs, rows, table, plots. ``costs`` (the interleaved per-step
    timings) is measured here when still None, and returned in the result for the next dataset."""
    table = method_table()
    problem = make_problem(dataset, {"n_train": args.n_train, "n_val": args.n_val})
    objectives = tuple(Objective(n, problem.metric(n).direction) for n in problem.default_objectives)
    ref = problem.default_reference_point
    warm_up(problem, args.threads)
    known = [table[k] for k in methods if k in table]
    if costs is None and args.cost_rounds > 0:
        print(
            f"  {dataset}: per-step cost, {args.cost_rounds} interleaved rounds of {args.cost_steps} steps", flush=True
        )
        costs = measure_step_costs(known, problem, args)
    runs: list[Run] = []
    rows: list[Row] = []
    for key in methods:
        method = table.get(key)
        if method is None:
            rows.append(Row(key, "?", 0, "-", [], [], error=f"unknown method '{key}'; allowed: {', '.join(table)}"))
            continue
        method_runs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            run = run_method(method, problem, args, seed)
            try:
                run.hv = [front_hv(pts, objectives, ref) for pts in run.points]
            except Exception as exc:  # e.g. a NaN accuracy: keep the row, say why
                run.error = run.error or f"HV failed: {type(exc).__name__}: {exc}"
            method_runs.append(run)
            last = f"HV {run.hv[-1]:.4f}" if run.hv else "no epochs"
            error = f"  ERROR {run.error}" if run.error else ""
            print(
                f"  {dataset} {key:<22} seed {seed}: {last}, {time.perf_counter() - t0:6.1f} s wall{error}", flush=True
            )
        runs += method_runs
        row = summarize(method, method_runs)
        row.step_cost = ((costs or {}).get(key) or {}).get("fastest")
        rows.append(row)
    pooled = pooled_runs(runs, {m.key for m in known if m.kind == "single"}, objectives, ref)
    if pooled:
        runs += pooled
        rows.append(summarize(None, pooled))
    finals = [r.hv[-1] for r in rows if r.hv and math.isfinite(r.hv[-1])]
    target = args.target * max(finals) if finals else math.nan
    linear = next((r for r in rows if r.method == "linear"), None)
    for r in rows:
        reach(r, target)
        if linear is not None and linear.step_cost and r.step_cost is not None:
            r.cost_vs_linear = r.step_cost / linear.step_cost
    print_table(dataset, rows, target, args.target, args)
    return {
        "objectives": [asdict(o) for o in objectives],
        "reference_point": list(ref),
        "target_fraction": args.target,
        "target_hv": target,
        "rows": [asdict(r) for r in rows],
        "claim": claim_lines(rows),
        "step_costs": costs,
        "runs": [asdict(r) for r in runs],
        "plots": [str(p) for p in plot(dataset, rows, target, args.out)],
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    table = method_table()
    if args.list:
        for m in table.values():
            print(f"{m.key:<16} solver={m.solver:<12} K={m.size} eps0={m.eps0:g} optimizer={m.optimizer_label()}")
        return
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    options = " ".join(
        f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if k not in ("list", "verbose")
    )
    results: dict[str, Any] = {
        "command": f".venv/bin/python benchmarks/methods.py {options}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "methods": {k: {**asdict(m), "optimizer": asdict(m.optimizer)} for k, m in table.items() if k in args.methods},
        "datasets": {},
    }
    costs = None  # the same LeNet and batch size on every dataset: the per-step cost is measured once
    for dataset in args.datasets:
        result = run_dataset(dataset, args.methods, args, costs)
        costs = result["step_costs"]
        results["datasets"][dataset] = result
    results["wall_seconds"] = time.perf_counter() - started
    path = args.out / "methods.json"
    path.write_text(json.dumps(_json_safe(results), indent=1, default=str))
    print(f"\nwrote {path} and plots to {args.out}/ ({results['wall_seconds']:.0f} s wall in all)")


if __name__ == "__main__":
    main()
