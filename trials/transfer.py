"""MT2O parameter transfer among the K members of a population: two rules, one interface.

``periodic`` — our reconstruction of MT2O (Bai, Gupta & Ong, arXiv 2403.16162; only its abstract
was available). Every τ steps, before the members' own optimizer steps::

    θ_k ← (1 − ε_t)·θ_k + ε_t·Σ_j S_kj θ_j,   S_kj ∝ exp(−‖λ_k − λ_j‖² / σ²), S_kk = 0,

with rows of S summing to 1 and ε_t decaying from ε0 to 0 over training, so the method ends as
plain gradient descent on each subproblem. All parameters are mixed unless ``scope: trunk``.

``mtgd`` — the rule of the authors' own code for the predecessor method, multi-task gradient
descent (Bai, Ong, He & Gupta, Memetic Computing 2020; BaiLu-BL/MGD_MultiMNIST, MGD_MultiMNIST.py
and msgd.py, read, not copied). Every step, in Jacobi order: the member's own optimizer step uses
the gradient at its pre-mix parameters, and the mixing uses the pre-step parameters of all::

    θ_k ← θ_k − step_k(∇f_k(θ_k)) + Σ_j w_kj (θ_j − θ_k),   w_kj = α·η·r_kj,   r = c⁺ / (1 + c⁺),

η the initial learning rate (``lr_tied``: the current one), constant (never decayed). The code's
c is the cosine of two tasks' label vectors; here the members are scalarized subproblems, so c is
the cosine of their preference vectors (our inference). Only the shared layers are mixed by default
(``scope: trunk``; the code mixes its convolutions and never the classifiers); the optimizer state
is never mixed and the displacement never enters a momentum buffer. Algebraically it is gradient
descent on f_k + Σ_j (α·r_kj/2)·‖θ_k − θ_j‖² over the mixed layers.

``mode: beneficial`` (asymmetric transfer), on either rule: member k takes from j only where moving
toward θ_j lowers f_k on the current batch; for mtgd the check is refreshed every τ steps.

ε0 (α for mtgd) = 0 turns transfer off: nothing at all is touched, so the population is exactly K
independent runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from trials.spec import TransferSpec

# f_k evaluated on the current batch for member k with the given parameters.
Objective = Callable[[int, dict[str, Tensor]], float]
Snapshot = list[dict[str, Tensor]]


def _member_objective(objective: Objective, k: int) -> Callable[[dict[str, Tensor]], float]:
    """f_k alone: the members' objective with member k fixed."""
    return lambda params: objective(k, params)


def similarity_matrix(preferences: Tensor, sigma: float) -> Tensor:
    """Row-stochastic ``(K, K)`` kernel with a zero diagonal (a member never transfers to itself)."""
    distances = torch.cdist(preferences, preferences) ** 2
    weights = torch.exp(-distances / sigma**2)
    weights.fill_diagonal_(0.0)
    totals = weights.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, weights / totals.clamp_min(1e-300), weights)


def mtgd_relatedness(preferences: Tensor) -> Tensor:
    """``(K, K)`` r_kj = c⁺/(1+c⁺), c the cosine of λ_k and λ_j; zero diagonal (MTGD's coefficient)."""
    norms: Tensor = preferences.norm(dim=1, keepdim=True)
    unit = preferences / norms.clamp_min(1e-300)
    cosine = (unit @ unit.T).clamp_min(0.0)
    related = cosine / (1.0 + cosine)
    related.fill_diagonal_(0.0)
    return related


def mixed_names(model: nn.Module, scope: str) -> list[str]:
    """The names of the parameters that transfer mixes: all, or the shared ones (``scope: trunk``)."""
    if scope == "all":
        return [name for name, _ in model.named_parameters()]
    shared = {id(p) for p in model.shared_parameters()}  # type: ignore[operator]
    return [name for name, p in model.named_parameters() if id(p) in shared]


def _snapshot(models: Sequence[nn.Module], names: list[str]) -> Snapshot:
    return [{n: p.detach().clone() for n, p in model.named_parameters() if n in names} for model in models]


def _full(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


class _Beneficial:
    """Which transfers lower the receiver's objective (the asymmetric variant), from a snapshot."""

    @staticmethod
    def mask_row(
        k: int,
        own: dict[str, Tensor],
        shared: Sequence[dict[str, Tensor]],
        weights: Tensor,
        step_size: Tensor,
        objective: Callable[[dict[str, Tensor]], float],
    ) -> Tensor:
        """``weights`` (row k) with entry j zeroed unless moving θ_k's mixed parameters by ``step_size[j]`` of the
        way toward θ_j lowers f_k (the other parameters stay θ_k's own). It reads member k's own full parameters and
        every member's mixed ones (``shared``, member k's included): all a member needs to decide its own row,
        wherever the others live."""
        kept = weights.clone()
        own_value = objective(own)
        for j in range(len(shared)):
            if kept[j] <= 0:
                continue
            a = float(step_size[j])
            candidate = {n: (1.0 - a) * v + a * shared[j][n] if n in shared[j] else v for n, v in own.items()}
            if not objective(candidate) < own_value:
                kept[j] = 0.0
        return kept


class Transfer:
    """The interface the population uses; a rule implements ``before_steps`` and ``after_steps``."""

    def __init__(self, spec: TransferSpec) -> None:
        self.spec = spec

    @property
    def enabled(self) -> bool:
        raise NotImplementedError

    def before_steps(self, models: Sequence[nn.Module], step: int, objective: Objective) -> Snapshot | None:
        """Called before the members' optimizer steps of ``step``; may mix in place; returns state
        for ``after_steps``."""
        raise NotImplementedError

    def after_steps(self, models: Sequence[nn.Module], state: Snapshot | None, lrs: Sequence[float]) -> None:
        """Called after the members' optimizer steps, with each member's current learning rate."""

    def state_dict(self) -> dict[str, Tensor]:
        """What the rule carries from step to step (checkpoints hold it, so a resumed run transfers the same)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        return None


class PeriodicTransfer(Transfer):
    """Mix every τ steps before the steps, ε decaying (the reconstruction)."""

    def __init__(self, spec: TransferSpec, preferences: Tensor, total_steps: int) -> None:
        super().__init__(spec)
        self.total_steps = max(total_steps, 1)
        self.similarity = similarity_matrix(preferences.to(torch.float64), spec.sigma)

    @property
    def enabled(self) -> bool:
        # ε0 = 0 must be exactly K independent runs, so nothing at all is touched then.
        return bool(self.spec.eps0) and self.similarity.shape[0] > 1

    def epsilon(self, step: int) -> float:
        eps0 = float(self.spec.eps0 or 0.0)
        progress = min(step / self.total_steps, 1.0)
        if self.spec.decay == "constant":
            return eps0
        if self.spec.decay == "linear":
            return eps0 * (1.0 - progress)
        return eps0 * 0.5 * (1.0 + math.cos(math.pi * progress))

    def due(self, step: int) -> bool:
        # Not at step 0: the members share one initialization, so there is nothing to mix yet.
        return self.enabled and step > 0 and step % self.spec.period == 0 and self.epsilon(step) > 0

    def before_steps(self, models: Sequence[nn.Module], step: int, objective: Objective) -> Snapshot | None:
        if self.due(step):
            self.apply(models, step, objective)
        return None

    @torch.no_grad()
    def apply(self, models: Sequence[nn.Module], step: int, objective: Objective | None = None) -> Tensor:
        """Mix the members' parameters in place; returns the S actually used (rows may be 0)."""
        eps = self.epsilon(step)
        names = mixed_names(models[0], self.spec.mixed_scope)
        snapshot = _snapshot(models, names)
        if self.spec.mode == "beneficial" and objective is None:
            raise ValueError("beneficial transfer needs the members' objectives on the current batch")
        # Every row is decided on the parameters before any mixing (Jacobi order), then every member mixes.
        rows = [
            self.row(k, _full(model), snapshot, eps, _member_objective(objective, k) if objective else None)
            for k, model in enumerate(models)
        ]
        for k, model in enumerate(models):
            self.mix_row(model, k, snapshot, rows[k], eps)
        return torch.stack(rows)

    def row(
        self,
        k: int,
        own: dict[str, Tensor],
        shared: Sequence[dict[str, Tensor]],
        eps: float,
        objective: Callable[[dict[str, Tensor]], float] | None,
    ) -> Tensor:
        """Row k of the mixing matrix at this step, from member k's own parameters and every member's mixed ones:
        the similarity row, masked and renormalized under ``mode: beneficial`` (``objective`` is f_k)."""
        row = self.similarity[k].clone()
        if self.spec.mode == "beneficial":
            if objective is None:
                raise ValueError("beneficial transfer needs the member's objective on the current batch")
            row = _Beneficial.mask_row(k, own, shared, row, torch.full_like(row, eps), objective)
            total = row.sum()
            if float(total) > 0:
                row = row / total
        return row

    @staticmethod
    @torch.no_grad()
    def mix_row(model: nn.Module, k: int, snapshot: Sequence[dict[str, Tensor]], row: Tensor, eps: float) -> None:
        """θ_k ← (1 − ε)·θ_k + ε·Σ_j row_j θ_j over the mixed parameters, θ from ``snapshot`` (pre-mix)."""
        if float(row.sum()) == 0.0:
            return
        for name, p in model.named_parameters():
            if name not in snapshot[k]:
                continue
            mixed = sum(float(row[j]) * snapshot[j][name] for j in range(len(snapshot)) if row[j] > 0)
            p.copy_((1.0 - eps) * snapshot[k][name] + eps * mixed)


class MTGDTransfer(Transfer):
    """Every step, Jacobi order: own step from the pre-mix gradient plus Σ_j w_kj (θ_j − θ_k) of the
    pre-step parameters (the MTGD code's rule)."""

    def __init__(self, spec: TransferSpec, preferences: Tensor, initial_lr: float) -> None:
        super().__init__(spec)
        self.alpha = float(spec.alpha or 0.0)
        self.initial_lr = float(initial_lr)
        self.relatedness = mtgd_relatedness(preferences.to(torch.float64))
        self.mask = torch.ones_like(self.relatedness)  # beneficial: refreshed every τ steps
        pull = self.alpha * self.initial_lr * float(self.relatedness.sum(dim=1).max()) if self.enabled else 0.0
        if pull >= 1.0:
            raise ValueError(
                f"`population.transfer.alpha` = {self.alpha:g} with learning rate "
                f"{self.initial_lr:g} pulls a member by Σ_j w_kj = {pull:.3g} >= 1 per step; make α·lr smaller"
            )

    @property
    def enabled(self) -> bool:
        return self.alpha > 0 and self.relatedness.shape[0] > 1

    def state_dict(self) -> dict[str, Tensor]:
        # The beneficial mask lasts τ steps, which need not end with an epoch (where checkpoints are written).
        return {"mask": self.mask.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if "mask" in state:
            self.mask = state["mask"].clone().to(self.mask.dtype)

    def weights(self, lrs: Sequence[float]) -> Tensor:
        """``(K, K)`` w_kj = α·η_k·r_kj (masked by the beneficial check)."""
        return torch.stack([self.weights_row(k, lr) for k, lr in enumerate(lrs)])

    def weights_row(self, k: int, lr: float) -> Tensor:
        """Row k of :meth:`weights` from member k's own learning rate at its latest step."""
        eta = lr if self.spec.lr_tied else self.initial_lr
        return self.alpha * eta * self.relatedness[k] * self.mask[k]

    def refresh_due(self, step: int) -> bool:
        """Whether the beneficial check is refreshed before this step's updates."""
        return self.enabled and self.spec.mode == "beneficial" and step > 0 and step % self.spec.period == 0

    def refresh_row(
        self,
        k: int,
        own: dict[str, Tensor],
        shared: Sequence[dict[str, Tensor]],
        objective: Callable[[dict[str, Tensor]], float],
    ) -> None:
        """Member k's row of the beneficial mask: would the pull of the next τ steps toward θ_j lower f_k now?
        (one step's pull is too small to tell from the batch's noise)"""
        step_size = (self.alpha * self.initial_lr * self.relatedness[k] * self.spec.period).clamp(max=1.0)
        kept = _Beneficial.mask_row(k, own, shared, self.relatedness[k], step_size, objective)
        self.mask[k] = (kept > 0).to(self.mask.dtype)

    @torch.no_grad()
    def before_steps(self, models: Sequence[nn.Module], step: int, objective: Objective) -> Snapshot | None:
        if not self.enabled:
            return None
        names = mixed_names(models[0], self.spec.mixed_scope)
        snapshot = _snapshot(models, names)
        if self.refresh_due(step):
            for k, model in enumerate(models):
                self.refresh_row(k, _full(model), snapshot, _member_objective(objective, k))
        return snapshot

    @torch.no_grad()
    def after_steps(self, models: Sequence[nn.Module], state: Snapshot | None, lrs: Sequence[float]) -> None:
        if state is None:
            return
        for k, model in enumerate(models):
            self.pull_row(model, k, state, self.weights_row(k, lrs[k]))

    @staticmethod
    @torch.no_grad()
    def pull_row(model: nn.Module, k: int, state: Sequence[dict[str, Tensor]], row: Tensor) -> None:
        """θ_k += Σ_j w_kj (θ_j − θ_k) over the mixed parameters, θ the pre-step ``state`` of every member."""
        if float(row.sum()) == 0.0:
            return
        for name, p in model.named_parameters():
            if name not in state[k]:
                continue
            pull = sum(float(row[j]) * (state[j][name] - state[k][name]) for j in range(len(state)) if row[j] > 0)
            p.add_(pull)


def make_transfer(spec: TransferSpec, preferences: Tensor, total_steps: int, initial_lr: float) -> Transfer:
    if spec.rule == "mtgd":
        return MTGDTransfer(spec, preferences, initial_lr)
    return PeriodicTransfer(spec, preferences, total_steps)


# The name tests and older code use for the periodic rule.
ParameterTransfer = PeriodicTransfer
