"""Multi-task models: a shared trunk and one head per task.

Solvers need to tell shared parameters from task-specific ones (per-task gradients are taken
w.r.t. the shared ones), so every problem's model is a :class:`MultiTaskModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


class MultiTaskModel(nn.Module):
    """``outputs[t] = heads[t](trunk(x))``."""

    def __init__(self, trunk: nn.Module, heads: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(heads) == 0:
            raise ValueError("MultiTaskModel needs at least one head, found 0")
        self.trunk = trunk
        self.heads = nn.ModuleList(heads)

    def representation(self, x: Tensor) -> Tensor:
        """The shared representation (input of every head)."""
        z: Tensor = self.trunk(x)
        return z

    def heads_forward(self, z: Tensor) -> list[Tensor]:
        return [head(z) for head in self.heads]

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.heads_forward(self.representation(x))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.trunk.parameters() if p.requires_grad]

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        return [p for p in self.heads[task].parameters() if p.requires_grad]


class ParameterVector(nn.Module):
    """A trunk that *is* the decision variable: it ignores its input and returns
    ``transform(x)`` for a learnable vector ``x``. Synthetic problems (toy2d, ZDT) use it
    so their objectives are plain functions of the parameters."""

    def __init__(self, init: Tensor, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.x = nn.Parameter(init.clone())
        self._transform = transform

    def forward(self, _: Tensor) -> Tensor:
        return self.x if self._transform is None else self._transform(self.x)


class LeNetTrunk(nn.Module):
    """The Multi-MNIST LeNet trunk of Sener & Koltun (2018): conv 1→10 k9, pool, conv 10→20
    k5, pool, fc 500→50, for 36×36 inputs (36→28→14→10→5, so 20·5·5 = 500 features)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=9)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc = nn.Linear(500, 50)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(torch.max_pool2d(self.conv1(x), 2))
        x = torch.relu(torch.max_pool2d(self.conv2(x), 2))
        return torch.relu(self.fc(x.flatten(1)))


def lenet_multitask(num_tasks: int = 2, num_classes: int = 10) -> MultiTaskModel:
    """LeNet trunk with one linear classifier head per task (~32k parameters for 2 tasks)."""
    return MultiTaskModel(LeNetTrunk(), [nn.Linear(50, num_classes) for _ in range(num_tasks)])
