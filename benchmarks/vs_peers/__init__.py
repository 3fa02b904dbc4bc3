"""pareto_search against what its users would write instead: the same problem, the same budget in model-epochs,
the same learning-rate range, side by side in one run, over several seeds (the headline number).

    .venv/bin/python benchmarks/vs_peers --quick                  # zdt1, 3 seeds, 1.5 min: ends with the ratio line
    .venv/bin/python benchmarks/vs_peers --problems multi_mnist --slots 2   # ours and Tune: 2 trials side by side
    .venv/bin/python benchmarks/vs_peers --problems multi_mnist --seeds 0,1,2
    .venv/bin/python benchmarks/vs_peers --problems multi_mnist,multi_fashion_mnist,related3 --budget 50

**Budget.** One member of a population training one epoch is one model-epoch. Every method gets ``--budget``
model-epochs (default 10 models x ``--epochs`` 5 = 50) and is charged for what it actually trained: a trial that
a scheduler stops after 1 epoch costs K x 1. A method's curve is the HV of the cumulative front of every model it
has trained so far (each model with its latest evaluation, as the service's global front keeps it: one point per
trial and member) against the model-epochs spent so far, in the order the results arrived; HV is the service's
(``pareto_search.front.pareto.Front.hypervolume``, pymoo) of the validation objectives at the problem's reference point.

**Methods** (``--list``). Peers, written the way their users write them (Adam everywhere, the learning rate
log-uniform in the same range ``--lr-range``):

- ``optuna-tpe``, ``optuna-nsga2``: ``optuna.create_study(directions=[...])`` with ``TPESampler(seed=s)`` or
  ``NSGAIISampler(seed=s)`` (both at their defaults), over the preference weight(s) and the learning rate; one
  linearly scalarized model per trial (``trials.loop.Trainer``, K = 1) trained for the full epochs; budget /
  epochs trials. NB: with the default ``n_startup_trials=10`` (TPE) and ``population_size=50`` (NSGA-II), 10 trials
  are random samples for both samplers; that is what a user gets at this budget.
- ``tune-asha``: the real Ray Tune setup (``ray.tune.Tuner``, a function trainable reporting every epoch,
  ``ray.tune.schedulers.ASHAScheduler(max_t=epochs)`` at its defaults: grace period 1, reduction factor 4) on a
  scalar objective, the weighted sum of the (minimization-form) validation objectives with the trial's sampled
  weights; one model per trial; trials are started until the budget is spent.
- ``libmoon-epo``, ``libmoon-pmtl``: LibMOON's finite-set Pareto solvers on our network and data. The only PyPI
  release that ships its gradient solvers is libmoon 0.1.11 (0.2.1, the newest, has no ``libmoon.solver.gradient``
  package although its modules import it); it runs here in a throwaway venv (``--libmoon-python`` or
  ``$LIBMOON_PYTHON``, see ``libmoon.setup_libmoon_venv``) that reuses this venv's torch through a ``.pth`` file,
  with its pins (torch 2.2.1, numpy 1.26.4) not installed. The training loop is LibMOON's own MultiMNIST loop
  (``problem/mtl/mnist.py``): K models, one per preference of ``uniform_pref`` (clip 0.1; 2 partitions of Das-Dennis
  for 3 tasks), each step the per-task gradients of the whole model (``get_grads_from_model``), the solver's weights
  (``CoreEPO``; PMTL's ``get_d_paretomtl_init`` for the first fifth of the steps, then ``get_d_paretomtl``, as its
  ``PMTLSolver``) and an Adam step on the weighted loss; runs of K models with a learning rate drawn from the range
  until the budget is spent. LibMOON's PMTL is written for two objectives only: on a 3-task problem our ``pmtl``
  stands in and the record says so. Without the LibMOON venv our ``epo`` / ``pmtl`` solvers (K = 5) stand in, said
  so.
- ``libmoon-psl`` (on request): LibMOON 0.1.11's own Pareto set learning for MTL, as its
  ``solver/psl/run_mtl_psl.py`` runs it: its ``HyperNet([9, 5])`` generates the weights of its ``LeNetTarget([9, 5])``
  (LibMOON's classes, imported), one preference a step from Dirichlet(1, 1), loss = preference · its
  ``CrossEntropyLoss`` pair, Adam at its default lr 1e-3, on our batches. One preference a step is one model-epoch
  an epoch, so ``budget`` epochs; each epoch the hypernetwork is evaluated at 11 evenly spaced preferences (11
  points). Its target network takes 1 x 36 x 36 images only (conv 9, pool, conv 5, pool: the 5 x 5 latent its
  hypernetwork is built for): the Multi-* problems; elsewhere the row is refused in one line, and without the
  LibMOON venv too (no stand-in).
- ours, through the real service (``pareto_search.search.runner.run_search``: its Tune set-up, trainable,
  scheduler and global front), the configuration a user writes without tuning: ``method: mt2o`` (the rows
  name their K: the preset's K = 3 with ``across_trials: fill`` since 2026-12-06; K = 5 before, and K = 6, a
  Das-Dennis count, on 3 tasks: those runs predate the service's energy directions for other K) and the same with
  ``transfer: {eps0: 0}`` (independent scalarizations), the learning rate
  ``{loguniform: [lo, hi]}``, ``search.algorithm: random``, each with ``scheduler: fifo`` (the default) and
  ``pareto_asha`` (grace 1, eta 3: the defaults). ``num_samples`` is ceil(budget / (K x epochs)) for FIFO and
  ceil(budget / K) for Pareto-ASHA; a Tune stopper (added to the service's RunConfig by this benchmark only)
  ends the search once the budget is spent, so that both schedulers are measured on the same budget.

**Slots.** Ray starts once per benchmark process with ``--slots`` CPUs, 1 per trial: the Ray-based methods (ours,
``tune-asha``) run that many trials side by side. Optuna's ``study.optimize``, LibMOON's loop and our stand-ins train
one model at a time whatever ``--slots`` says. The default, 1, is every method on one slot, what one GPU gives
(``gpus_per_trial: 1``: Ray places one trial per GPU): equal resources, and a run whose results arrive in the same
order every time (``--quick`` prints the same ratio run after run). With ``--slots 2`` ours and Tune run two trials
side by side while Optuna still runs one. Trials side by side report in another order than one at a time, and the
curves follow that order, so the slots are part of a Ray-based run's cache key; the others' runs serve every
``--slots``.

The Trainer- and LibMOON-based peers run in a
process pool of ``--workers`` (one torch thread each), before the Ray-based methods of the same problem, or beside
them with ``--overlap`` (``--quick`` does: Ray's start-up and its idle waits are then used), at Ray's worker niceness
so that neither starves the other. Wall times are secondary: with ``--overlap`` every method shares the cores.

**Report.** Per problem: the final HV at the budget (mean ± std over seeds); the model-epochs each method needs to
reach 95 % and 98 % of the best final mean HV of any method (on the mean curve, and per seed: mean ± std with the
seeds that never reach it); wall seconds (secondary: the machine is shared). The headline: the best peer is the peer
with the highest final mean HV; the budget ratio of one of ours is (model-epochs its mean curve needs to reach that
peer's final mean HV) / (model-epochs the peer's mean curve needed to reach it); < 1 means we are cheaper, "never"
that ours does not reach it within the budget. A difference "exceeds the seed spread" when the means differ by more
than the sum of the two standard deviations (mt2o_evidence.beyond_spread). The last line printed is
``budget ratio R to reach the best peer's final HV (<peer>, <problem>)`` for ``--headline`` (default
``mt2o-k3-fill-fifo``: ``method: mt2o`` as it ships, with the service's default scheduler and the range given as
a probe) on the last problem.

Runs are cached in <out>/runs.jsonl by (problem, n_train, method, seed, budget, epochs, lr range, slots): a rerun
computes only what is missing (``--quick`` never reads the cache: it checks the current code). Writes
<out>/summary-<problems>-b<budget>-e<epochs>-s<slots>.md, <out>/<problem>_<n_train>_b<budget>_s<slots>_hv.png (HV vs
model-epochs, mean ± std) and logs them to MLflow (experiment ``vs-peers``; the service's searches go to
``vs-peers-searches``; a sqlite store in <out> unless --tracking-uri).

**Layout.** ``python benchmarks/vs_peers ...`` (the folder runs its ``__main__``) and ``python -m benchmarks.vs_peers
...`` from the repository root are the same command. ``methods``: the problems, protocols and methods (name -> runner);
``budget``: model-epoch accounting (``BudgetCounter``, the Tune stopper, the HV curve over the budget); ``runs``: a
run's cache key, the plan of runs and what every runner shares; ``runners``: the pool's methods (Optuna, the single
model, ``psl``, our stand-ins); ``libmoon``: LibMOON's venv and the workers that run in it; ``ray_runners``: Tune ASHA
and ours through the service, on one local Ray; ``report``: rows, statistics, the ratio line, plots, MLflow;
``cli``: the arguments and the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The service's packages and the benchmarks' shared modules (peer_stats, mt2o_evidence), as the script always had.
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
