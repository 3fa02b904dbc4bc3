"""LibMOON 0.1.11 as its users run it, in its own venv (`--libmoon-python` or $LIBMOON_PYTHON): whether it is
there, the workers that run inside it (EPO/PMTL, PSL), and the subprocess that calls them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .budget import BudgetCounter
from .methods import SINGLE_MODEL_LR, libmoon_psl_refusal
from .runs import _objective_names, _problem, _record, _sample_lr

PACKAGE = Path(__file__).resolve().parent
LIBMOON_HOWTO = (
    "to run LibMOON, set --libmoon-python or $LIBMOON_PYTHON to its venv's interpreter: see setup_libmoon_venv in "
    "benchmarks/vs_peers/libmoon.py"
)

LIBMOON_PSL_INPUT = (1, 36, 36)
LIBMOON_PSL_POINTS = 11  # evaluation preferences an epoch, evenly spaced on the 2-task simplex


def libmoon_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the LibMOON venv: LibMOON's preference-based MTL loop (problem/mtl/mnist.py) on our problem."""
    import torch
    from libmoon.solver.gradient.core_solver import CoreEPO
    from libmoon.solver.gradient.pmtl import get_d_paretomtl, get_d_paretomtl_init
    from libmoon.solver.gradient.utils.util import get_grads_from_model
    from libmoon.util_global.weight_factor.funs import uniform_pref

    from trials.loop import epoch_generator

    torch.set_num_threads(1)
    problem = _problem(job)
    names = _objective_names(problem)
    if problem.num_tasks == 2:
        prefs = uniform_pref(n_partition=job["k"], n_obj=2, clip_eps=0.1)  # LibMOON's MultiMNIST default clip
    else:
        prefs = uniform_pref(n_partition=2, n_obj=problem.num_tasks, clip_eps=0.1)  # 6 prefs for 3 tasks
    counter = BudgetCounter(job["budget"])
    run = 0
    while not counter.exhausted:
        torch.manual_seed(job["seed"] * 1000 + run)
        models = [problem.make_model() for _ in prefs]
        lr = _sample_lr(job, run)
        optimizers = [torch.optim.Adam(m.parameters(), lr=lr) for m in models]
        cores = [CoreEPO(pref=p) for p in prefs] if job["solver"] == "epo" else []
        warmup = job["epochs"] * problem.steps_per_epoch() // 5  # PMTLSolver: max_iter // 5
        step = 0
        for epoch in range(job["epochs"]):
            if counter.exhausted:
                break
            for batch in problem.train_batches(epoch_generator(job["seed"], epoch)):
                for i, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
                    losses = problem.task_losses(model(batch.inputs), batch)
                    terms = list(losses)
                    G = get_grads_from_model(terms, model)
                    losses_np = losses.detach().cpu().numpy().copy()
                    if job["solver"] == "epo":
                        alpha = cores[i].get_alpha(G=G, losses=losses_np)
                    elif step < warmup:
                        alpha = get_d_paretomtl_init(G.detach().numpy(), losses_np, prefs, i)
                    else:
                        alpha = get_d_paretomtl(G.detach().numpy(), losses_np, prefs, i)
                    optimizer.zero_grad()
                    sum(float(a) * t for a, t in zip(alpha, terms, strict=True)).backward()
                    optimizer.step()
                step += 1
            rows = [[problem.evaluate(m, "val", torch.device("cpu"))[n] for n in names] for m in models]
            test = [[problem.evaluate(m, "test", torch.device("cpu"))[n] for n in names] for m in models]
            counter.add(f"r{run}", rows, test)
        run += 1
    return _record(job, counter, 1, "LibMOON 0.1.11 (PyPI) in its own venv")


def libmoon_psl_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the LibMOON venv: LibMOON's PSL for MTL as solver/psl/run_mtl_psl.py trains it (its HyperNet and
    LeNetTarget with kernels [9, 5], one Dirichlet(1, 1) preference a step, loss = preference · its CrossEntropyLoss
    pair, Adam at lr 1e-3) on our problem's batches; each epoch the hypernetwork at 11 evenly spaced preferences."""
    import numpy as np
    import torch
    from libmoon.problem.mtl.objectives import from_name
    from libmoon.solver.psl.model.mtl import HyperNet, LeNetTarget

    from trials.loop import epoch_generator

    refusal = libmoon_psl_refusal(job["problem"])
    if refusal:
        raise ValueError(refusal)
    torch.set_num_threads(1)
    problem = _problem(job)
    names = _objective_names(problem)
    shape = tuple(problem.example_inputs(1).shape[1:])
    if shape != LIBMOON_PSL_INPUT:
        raise ValueError(f"LibMOON's LeNetTarget takes {LIBMOON_PSL_INPUT} inputs, {job['problem']} gives {shape}")

    class Generated(torch.nn.Module):
        """LibMOON's target network with the weights its hypernetwork generated for one preference: a module our
        problem's evaluate can call."""

        def __init__(self, net: Any, weights: dict[str, Any]) -> None:
            super().__init__()
            self.net, self.weights = net, weights

        def forward(self, x: Any) -> Any:
            return self.net(x, self.weights)

    torch.manual_seed(job["seed"] * 1000)
    np.random.seed(job["seed"] * 1000)  # run_mtl_psl.py draws its preferences from numpy's global generator
    hnet, net = HyperNet([9, 5]), LeNetTarget([9, 5])  # run_mtl_psl.py's 'lenet' (its --ray-hidden 100 default)
    loss_func_arr = from_name(names=["CrossEntropyLoss", "CrossEntropyLoss"], task_names=["l", "r"])
    optimizer = torch.optim.Adam(hnet.parameters(), lr=SINGLE_MODEL_LR)  # its --lr default
    gaps = LIBMOON_PSL_POINTS - 1
    evaluation = [torch.tensor([i / gaps, 1 - i / gaps]) for i in range(gaps + 1)]
    counter = BudgetCounter(job["budget"])
    epoch = 0
    while not counter.exhausted:
        hnet.train()
        for batch in problem.train_batches(epoch_generator(job["seed"], epoch)):
            ray = torch.from_numpy(np.random.dirichlet((1, 1), 1).astype(np.float32).flatten())
            weights = hnet(ray)
            logits_l, logits_r = net(batch.inputs, weights)
            batch_ = {"data": batch.inputs, "labels_l": batch.targets[0], "labels_r": batch.targets[1]}
            batch_.update(logits_l=logits_l, logits_r=logits_r)
            loss_arr = torch.stack([loss(**batch_) for loss in loss_func_arr])
            optimizer.zero_grad()
            (ray @ loss_arr).backward()
            optimizer.step()
        hnet.eval()
        with torch.no_grad():
            models = [Generated(net, hnet(pref)) for pref in evaluation]
        rows = [[problem.evaluate(m, "val", torch.device("cpu"))[n] for n in names] for m in models]
        test = [[problem.evaluate(m, "test", torch.device("cpu"))[n] for n in names] for m in models]
        counter.add("psl", rows, test, cost=1)  # one preference a step: one model-epoch an epoch
        epoch += 1
    note = (
        f"LibMOON 0.1.11 (PyPI) PSL in its own venv: HyperNet/LeNetTarget [9, 5], Dirichlet(1, 1), Adam lr 1e-3, "
        f"{epoch} epochs, {LIBMOON_PSL_POINTS} points an epoch"
    )
    return _record(job, counter, 1, note)


def run_libmoon(job: dict[str, Any]) -> dict[str, Any]:
    """One LibMOON job in the LibMOON venv's interpreter (a subprocess: its packages stay out of .venv)."""
    # The package folder itself: `python benchmarks/vs_peers --libmoon-job ...` runs its __main__ in that venv.
    command = [job["libmoon_python"], str(PACKAGE), "--libmoon-job", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=job.get("timeout_s", 3600), check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**job, "events": [], "slots": 1, "note": "", "error": f"LibMOON worker failed: {tail[:300]}"}
    return json.loads(lines[-1])


def setup_libmoon_venv(python: str) -> str:
    """Why LibMOON is or is not available, in one line ('' when it is). The venv is made by hand, once, anywhere
    (VENV below), from the repository root; it reuses this venv's packages through a ``.pth`` file:

    python3 -m venv VENV
    SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")
    echo "$SITE" > VENV/lib/python3.11/site-packages/main.pth
    VENV/bin/pip install --no-deps libmoon==0.1.11 && VENV/bin/pip install cvxopt
    export LIBMOON_PYTHON=VENV/bin/python   # or --libmoon-python VENV/bin/python
    """
    if not python:  # no default location: a venv made by hand lives wherever its maker put it
        return f"no LibMOON venv given ({LIBMOON_HOWTO})"
    if not Path(python).exists():
        return f"no LibMOON venv at {python} ({LIBMOON_HOWTO})"
    probe = "import libmoon.solver.gradient.core_solver, libmoon.solver.gradient.pmtl"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return "importing LibMOON took over 120 s"
    if done.returncode != 0:
        return f"LibMOON does not import: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    return ""
