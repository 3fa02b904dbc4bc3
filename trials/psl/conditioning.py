"""Networks conditioned on a preference vector, built around any problem's :class:`MultiTaskModel` without
changing it: the problem's model supplies the architecture and the initial weights, and a small network of the
preference supplies what changes with it. ``forward(x, preference)`` returns the task outputs at that preference;
``forward_many`` those of several, sharing what does not depend on the preference (FiLM: the trunk)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from trials.models import MultiTaskModel, ParameterVector

# `hyper` generates every parameter from one output layer of hidden × parameters weights: above this many
# parameters of the problem's model that layer is the bulk of the cost, which is what `lowrank` avoids.
HYPER_MAX_PARAMETERS = 100_000


def _output_layer(net: nn.Sequential) -> nn.Linear:
    """The last layer of a :func:`_preference_net` (indexing an ``nn.Sequential`` is typed as any module)."""
    last = net[-1]
    assert isinstance(last, nn.Linear)
    return last


def _preference_net(num_tasks: int, hidden: int, out: int) -> nn.Sequential:
    """λ ↦ features: two hidden layers; the last layer starts at zero, so a fresh conditioned model is the
    problem's own initial model at every preference and the preference's influence grows from there."""
    net = nn.Sequential(nn.Linear(num_tasks, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
    last = nn.Linear(hidden, out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    net.append(last)
    return net


class Conditioned(nn.Module):
    """The problem's model plus what makes it a function of the preference."""

    def __init__(self, base: MultiTaskModel) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: Tensor, preference: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def forward_many(self, x: Tensor, preferences: Tensor) -> list[list[Tensor]]:
        return [self(x, preference) for preference in preferences]


class _Generated(Conditioned):
    """A conditioning whose preference network's output ``generator(λ)`` is all that depends on λ: the
    network runs once for all preferences of a step (``forward_many``)."""

    generator: nn.Sequential

    def forward(self, x: Tensor, preference: Tensor) -> list[Tensor]:
        return self.apply_generated(x, self.generator(preference))

    def forward_many(self, x: Tensor, preferences: Tensor) -> list[list[Tensor]]:
        return [self.apply_generated(x, row) for row in self.generator(preferences)]

    def apply_generated(self, x: Tensor, generated: Tensor) -> list[Tensor]:
        raise NotImplementedError


def _key(name: str) -> str:
    return name.replace(".", "__")


class LowRank(_Generated):
    """W(λ) = W0 + B·diag(g(λ))·A for every Linear/Conv2d weight W0 (A: r × fan-in, B: out × r, g a network of
    the preference); a model without Linear/Conv2d layers (the synthetic problems' decision vector) gets
    p(λ) = p0 + B·g(λ) for each parameter. Chen & Kwok (ICML 2024): a shared base and preference-dependent
    low-rank parts, which adds O(r·(in + out)) per layer and so scales to large networks."""

    def __init__(self, base: MultiTaskModel, num_tasks: int, rank: int, hidden: int) -> None:
        super().__init__(base)
        layers = [m for m in base.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        names = {id(p): n for n, p in base.named_parameters()}
        if layers:
            self.targets = [names[id(m.weight)] for m in layers if m.weight.requires_grad]
        else:
            self.targets = [n for n, p in base.named_parameters() if p.requires_grad]
        params = dict(base.named_parameters())
        self.A = nn.ParameterDict()
        self.B = nn.ParameterDict()
        for name in self.targets:
            shape = params[name].shape
            if len(shape) >= 2:  # a weight: rows = outputs, columns = its fan-in
                fan_in = math.prod(shape[1:])
                self.A[_key(name)] = nn.Parameter(torch.randn(rank, fan_in) / math.sqrt(fan_in))
                self.B[_key(name)] = nn.Parameter(torch.zeros(shape[0], rank))
            else:
                # LoRA's zero B would leave g without a gradient until B moves; a vector's B is small instead
                self.B[_key(name)] = nn.Parameter(torch.randn(math.prod(shape), rank) * 0.01)
        self.rank = rank
        self.generator = _preference_net(num_tasks, hidden, rank * len(self.targets))
        nn.init.normal_(_output_layer(self.generator).weight, std=0.01)  # not zero: B·g needs both to move

    def apply_generated(self, x: Tensor, generated: Tensor) -> list[Tensor]:
        scales = generated.view(len(self.targets), self.rank)
        params = dict(self.base.named_parameters())
        weights = {}
        for i, name in enumerate(self.targets):
            base = params[name]
            if _key(name) in self.A:
                delta = (self.B[_key(name)] * scales[i]) @ self.A[_key(name)]
            else:
                delta = self.B[_key(name)] @ scales[i]
            weights[name] = base + delta.view(base.shape)
        outputs: list[Tensor] = functional_call(self.base, weights, (x,))  # a MultiTaskModel's outputs
        return outputs


class Hyper(_Generated):
    """Every parameter of the network generated from the preference (Navon et al., ICLR 2021: Pareto
    HyperNetworks); the output layer's bias starts at the problem's initial weights. Refused above
    ``HYPER_MAX_PARAMETERS`` parameters of the problem's model."""

    def __init__(self, base: MultiTaskModel, num_tasks: int, hidden: int) -> None:
        super().__init__(base)
        self.names = [n for n, p in base.named_parameters() if p.requires_grad]
        params = dict(base.named_parameters())
        self.shapes = [params[n].shape for n in self.names]
        total = sum(math.prod(s) for s in self.shapes)
        if total > HYPER_MAX_PARAMETERS:
            raise ValueError(
                f"`population.psl.conditioning` is hyper, but the problem's model has {total} parameters "
                f"(more than {HYPER_MAX_PARAMETERS}); allowed here: lowrank, film"
            )
        self.generator = _preference_net(num_tasks, hidden, total)
        with torch.no_grad():
            last = _output_layer(self.generator)
            last.bias.copy_(torch.cat([params[n].detach().flatten() for n in self.names]))
            nn.init.normal_(last.weight, std=0.01)
        for p in base.parameters():  # the generated weights replace them: the base only supplies the architecture
            p.requires_grad_(False)

    def apply_generated(self, x: Tensor, generated: Tensor) -> list[Tensor]:
        chunks = torch.split(generated, [math.prod(s) for s in self.shapes])
        weights = {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes, strict=True)}
        outputs: list[Tensor] = functional_call(self.base, weights, (x,))  # a MultiTaskModel's outputs
        return outputs


class FiLM(_Generated):
    """z(λ) = z ⊙ (1 + γ(λ)) + β(λ) on the trunk's output z (its features: the last axis, or the channels of an
    image-shaped one), then the heads: the trunk runs once for all preferences of a step (Perez et al. 2018's
    feature-wise modulation; Dosovitskiy & Djolonga 2020, Ruchte & Grabocka 2021 condition a network this way)."""

    def __init__(
        self,
        base: MultiTaskModel,
        num_tasks: int,
        hidden: int,
        example: Tensor | None,
        layout: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(base)
        if layout is not None:  # (axis, features) as stored: a served model rebuilds it without the problem's data
            self.axis, self.features = layout
            self.generator = _preference_net(num_tasks, hidden, 2 * self.features)
            return
        assert example is not None
        if isinstance(base.trunk, ParameterVector):
            # Its output is the decision itself (ZDT's x in [0, 1]^n): scaling and shifting it leaves the problem's
            # domain (measured: ZDT1's f2 at -8e7), and there are no features to modulate.
            raise ValueError(
                "`population.psl.conditioning` is film, but the problem's trunk is its decision vector (no "
                "features to modulate); allowed here: lowrank, hyper"
            )
        with torch.no_grad():
            z = base.representation(example)
        self.axis = 1 if z.dim() >= 3 else -1
        self.features = int(z.shape[self.axis])
        self.generator = _preference_net(num_tasks, hidden, 2 * self.features)

    def _modulate(self, z: Tensor, generated: Tensor) -> Tensor:
        gamma, beta = generated.view(2, self.features)
        if self.axis == 1:
            view = (1, self.features) + (1,) * (z.dim() - 2)
            gamma, beta = gamma.view(view), beta.view(view)
        modulated: Tensor = z * (1 + gamma) + beta
        return modulated

    def apply_generated(self, x: Tensor, generated: Tensor) -> list[Tensor]:
        return self.base.heads_forward(self._modulate(self.base.representation(x), generated))

    def forward_many(self, x: Tensor, preferences: Tensor) -> list[list[Tensor]]:
        z = self.base.representation(x)  # once for all the step's preferences: the trunk does not depend on λ
        return [self.base.heads_forward(self._modulate(z, row)) for row in self.generator(preferences)]


def make_conditioned(
    kind: str, base: MultiTaskModel, num_tasks: int, rank: int, hidden: int, example: Tensor
) -> Conditioned:
    if kind == "auto":  # hyper where its output layer stays small (see PSLSpec.conditioning)
        size = sum(p.numel() for p in base.parameters() if p.requires_grad)
        kind = "hyper" if size <= HYPER_MAX_PARAMETERS else "lowrank"
    if kind == "lowrank":
        return LowRank(base, num_tasks, rank, hidden)
    if kind == "hyper":
        return Hyper(base, num_tasks, hidden)
    return FiLM(base, num_tasks, hidden, example)


class AtPreference(nn.Module):
    """The conditioned model fixed at one preference: what a point of the front is, evaluated and stored like a
    member's model (its state dict holds the whole conditioned model and the preference)."""

    def __init__(self, conditioned: Conditioned, preference: Sequence[float] | Tensor) -> None:
        super().__init__()
        self.conditioned = conditioned
        self.register_buffer("preference", torch.as_tensor(preference, dtype=torch.float32).clone())

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs: list[Tensor] = self.conditioned(x, self.preference)
        return outputs


# -- a stored point, outside the trainer: what a served model rebuilds ----------------------------------


def is_point_state(state: Mapping[str, Tensor]) -> bool:
    """Whether a stored point's weights are a conditioned model at a preference (AtPreference's state dict),
    not a plain member's network."""
    return "preference" in state and any(k.startswith("conditioned.") for k in state)


def layout_of_state(state: Mapping[str, Tensor], base: MultiTaskModel, example: Tensor | None) -> dict[str, Any]:
    """What rebuilds a stored conditioned model's architecture around the problem's network (plain JSON; read
    from the state dict's shapes, so points stored before it existed are served too). ``example`` (inputs of
    the problem) is needed for film only: the trunk's output layout."""
    first = state["conditioned.generator.0.weight"]  # (hidden, T)
    hidden, num_tasks = int(first.shape[0]), int(first.shape[1])
    out = int(state["conditioned.generator.4.weight"].shape[0])
    if any(k.startswith("conditioned.B.") for k in state):
        rank = int(next(v for k, v in state.items() if k.startswith("conditioned.B.")).shape[-1])
        return {"conditioning": "lowrank", "num_tasks": num_tasks, "hidden": hidden, "rank": rank}
    if out == sum(p.numel() for p in base.parameters()):
        return {"conditioning": "hyper", "num_tasks": num_tasks, "hidden": hidden}
    if example is None or example.numel() == 0:
        raise ValueError("a film-conditioned model needs the problem's example inputs to rebuild")
    with torch.no_grad():
        z = base.representation(example)
    axis = 1 if z.dim() >= 3 else -1
    return {"conditioning": "film", "num_tasks": num_tasks, "hidden": hidden, "axis": axis, "features": out // 2}


def conditioned_from_layout(base: MultiTaskModel, layout: Mapping[str, Any]) -> Conditioned:
    """An empty conditioned model of ``layout`` (layout_of_state) around ``base``, its weights about to be loaded."""
    kind, num_tasks, hidden = layout["conditioning"], int(layout["num_tasks"]), int(layout["hidden"])
    if kind == "lowrank":
        return LowRank(base, num_tasks, int(layout["rank"]), hidden)
    if kind == "hyper":
        return Hyper(base, num_tasks, hidden)
    if kind == "film":
        return FiLM(base, num_tasks, hidden, None, (int(layout["axis"]), int(layout["features"])))
    raise ValueError(f"unknown conditioning {kind!r}; allowed: lowrank, hyper, film")


def conditioned_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The conditioned model's own state dict out of a point's (AtPreference's) one: what every point of the same
    trial and epoch shares."""
    return {k.removeprefix("conditioned."): v for k, v in state.items() if k.startswith("conditioned.")}
