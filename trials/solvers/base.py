"""The solver interface.

A solver turns one training step's per-task losses into gradients on the model's parameters;
the member's optimizer then steps. The loop never branches on a solver's name: a solver
*declares* what it needs in :class:`Needs` and the loop provides exactly that in
:class:`StepContext`. State that must survive a checkpoint lives in ``state_dict()``.

Adding a solver: one file with a subclass, one line in ``trials/solvers/__init__.py``, one
test class inheriting ``trials.testing.contract.SolverContract``.

Hooks a solver may override, all called for every solver alike (the loop never asks which one
it is): ``extra_parameters()`` (learnable parameters of the method itself, e.g. uncertainty
weighting's log-variances: the population adds them to the member's optimizer), ``step(ctx)``
(the parameter update; default: the member's optimizer steps on the ``.grad`` that
``backward`` filled; AdaTask keeps its own per-task moments), ``end_epoch(...)`` (epoch-level
state, e.g. DWA's loss history) and ``diagnostics()`` (per-epoch scalars the service logs,
e.g. AdaTask's relative AU per layer).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from trials.models import MultiTaskModel


class InvalidHyperparameterError(ValueError):
    """A solver hyperparameter is out of range or of the wrong kind."""


@dataclass(frozen=True)
class Needs:
    """What a solver asks the loop to provide at every step.

    ``task_gradients``: per-task gradients of the shared parameters, one flattened row per
    task, shape ``(T, P)``. ``loss_closure``: a function that recomputes the per-task losses on
    the same batch with the current parameters (for lookahead methods).
    ``representation_gradients``: per-task gradients w.r.t. the shared representation
    z = model.representation(x) of the batch, flattened over the batch, shape ``(T, B·D)``
    (MGDA-UB, Sener & Koltun 2018: far cheaper than ``task_gradients`` for a large trunk).
    """

    task_gradients: bool = False
    loss_closure: bool = False
    representation_gradients: bool = False


@dataclass
class StepContext:
    """Everything a solver may use in one step. Fields a solver did not ask for are ``None``."""

    losses: Tensor  # (T,), attached to the autograd graph
    model: MultiTaskModel
    optimizer: torch.optim.Optimizer
    step: int  # global step counter of this member, from 0
    task_gradients: Tensor | None = None  # (T, P) over model.shared_parameters()
    closure: Callable[[], Tensor] | None = None
    representation_gradients: Tensor | None = None  # (T, B·D) w.r.t. model.representation(x)


@dataclass(frozen=True)
class Hyperparameters:
    """Base of every solver's hyperparameter dataclass. Subclasses validate in ``__post_init__``
    (raise :class:`InvalidHyperparameterError` naming the field, the value and what is allowed)."""


class Solver(ABC):
    """One member's update rule. Subclasses set ``name``, ``paper`` and ``Params``."""

    name: ClassVar[str]
    paper: ClassVar[str]  # citation of the method it implements
    Params: ClassVar[type[Hyperparameters]] = Hyperparameters
    # A class attribute an instance may override: a solver whose needs depend on its hyperparameters sets its own
    # in ``setup`` (mgda's mode); the loop reads it from the instance.
    needs: Needs = Needs()
    # Whose code computes the update: "ours" (written here from the paper) or the library a
    # wrapper delegates to, with its version (e.g. "torchjd 0.18.0"); listed by `pareto-search solvers`.
    implementation: ClassVar[str] = "ours"
    # MT2O's ε0 for a population of this solver when the config leaves it unset: transfer suits
    # scalarizations (MT2O); finite-set methods whose members must stay in their own preference
    # regions (PMTL, EPO) set 0, since mixing parameters would pull members across regions.
    default_transfer_eps0: ClassVar[float] = 0.3
    # True when ``backward`` reads nothing of the step but ``ctx.losses`` (and the solver's own state and
    # ``extra_parameters``): its update is then a function of the losses alone, and the population may run
    # the K members' forward and backward passes as one batched computation (trials/batched.py), handing
    # the solver detached copies of the losses. Opt-in: a solver that reaches into ``ctx.model`` (GradNorm)
    # or asks for anything in ``needs`` must leave it False.
    losses_only: ClassVar[bool] = False

    def __init__(
        self,
        num_tasks: int,
        preference: Tensor,
        params: Hyperparameters | None = None,
        *,
        population_preferences: Tensor | None = None,
    ) -> None:
        if preference.shape != (num_tasks,):
            raise InvalidHyperparameterError(
                f"solver '{self.name}': preference must have shape ({num_tasks},), found {tuple(preference.shape)}"
            )
        self.num_tasks = num_tasks
        self.preference = preference.detach().clone().to(torch.float64)
        # All K preference vectors of the population (K, T): finite-set methods such as PMTL
        # partition the objective space with them. A lone solver sees only its own.
        self.population_preferences = (
            population_preferences.detach().clone().to(torch.float64)
            if population_preferences is not None
            else self.preference[None]
        )
        self.params = params if params is not None else self.Params()
        self.setup()

    def setup(self) -> None:
        """Per-solver initialization after the common fields are set: override this, not ``__init__``
        (checks that need ``num_tasks``, state buffers, learnable parameters)."""
        return None

    @abstractmethod
    def backward(self, ctx: StepContext) -> None:
        """Fill ``.grad`` of the model's parameters for this step (they start at ``None``)."""

    def extra_parameters(self) -> list[nn.Parameter]:
        """Learnable parameters of the method itself; the population optimizes them with the model."""
        return []

    def step(self, ctx: StepContext) -> None:
        """Update the parameters after ``backward``. Default: the member's optimizer steps."""
        ctx.optimizer.step()

    def end_epoch(self, epoch: int, mean_train_losses: Tensor) -> None:
        """Called after every training epoch with the member's per-task mean training losses ``(T,)``."""
        return None

    def diagnostics(self) -> dict[str, float]:
        """Per-epoch scalars worth logging (names without spaces); empty for most solvers."""
        return {}

    def objective(self, losses: Tensor) -> Tensor:
        """The member's scalar subproblem value f_k(losses); used to judge parameter transfer.
        Default: the linear scalarization with the member's preference."""
        return (self.preference.to(losses) * losses).sum()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"solver '{self.name}' is stateless, but the checkpoint holds state {sorted(state)}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self.params, f.name)!r}" for f in dataclasses.fields(self.params))
        return f"{type(self).__name__}({fields})"


def backward_weighted(losses: Tensor, weights: Tensor) -> None:
    """Gradients of Σ_t w_t L_t for every parameter (the common case for weighting methods)."""
    (weights.to(losses).detach() * losses).sum().backward()


def require(condition: bool, solver: str, field: str, value: object, allowed: str) -> None:
    """Raise the one-line hyperparameter error the project uses everywhere."""
    if not condition:
        raise InvalidHyperparameterError(
            f"solver '{solver}': hyperparameter `{field}` must be {allowed}, found {value!r}"
        )
