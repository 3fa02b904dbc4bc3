"""Points of a Pareto set learning trial (``method: psl``) outside the search: each stored point is the
trial's ONE conditioned model plus its preference (trials/psl/conditioning.py's AtPreference). A served model
holds that conditioned model once per trial and epoch and fixes it at any preference a request asks for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pareto_search.serving.network import NetworkSpec
from trials.psl.conditioning import (
    AtPreference,
    Conditioned,
    _Generated,
    conditioned_from_layout,
    conditioned_state,
    is_point_state,
    layout_of_state,
)


def read_state(weights_file: str | Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(weights_file, map_location="cpu", weights_only=True)
    return state


def layout_of(network: NetworkSpec, state: Mapping[str, torch.Tensor], inputs: torch.Tensor) -> dict[str, Any] | None:
    """The conditioned model's layout (plain JSON) when ``state`` is a PSL point's weights, else None."""
    if not is_point_state(state):
        return None
    return layout_of_state(state, network.build(), inputs)


def load_conditioned(network: NetworkSpec, layout: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> Conditioned:
    """The conditioned model of a point's or a shared conditioned file's state dict, in eval mode on the CPU."""
    own = conditioned_state(state) if is_point_state(state) else dict(state)
    model = conditioned_from_layout(network.build(), layout)
    model.load_state_dict(own)
    return model.eval()


class ServedAtPreference(AtPreference):
    """AtPreference of a served model, whose weights no longer change: what the preference network makes of the
    preference (hyper: every weight of the network) is computed once, not on every request."""

    def __init__(self, conditioned: Conditioned, preference: Sequence[float]) -> None:
        super().__init__(conditioned, preference)
        self.generated: torch.Tensor | None = None
        if isinstance(conditioned, _Generated):
            with torch.no_grad():
                self.generated = conditioned.generator(self.preference)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.generated is None:
            return super().forward(x)
        assert isinstance(self.conditioned, _Generated)
        return self.conditioned.apply_generated(x, self.generated)


def fixed_at(conditioned: Conditioned, preference: Sequence[float]) -> AtPreference:
    """The conditioned model fixed at ``preference``: a plain multi-task model (inputs -> task outputs)."""
    return ServedAtPreference(conditioned, [float(p) for p in preference]).eval()


def preference_label(preference: Sequence[float]) -> str:
    """How a point at an exact preference is named after its trial's nearest point: ``TRIAL/K@pref=0.7,0.3``."""
    return "@pref=" + ",".join(f"{p:.6g}" for p in preference)
