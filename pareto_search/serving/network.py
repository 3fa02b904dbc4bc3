"""Rebuilding a member's network outside the search: what a served model needs besides its weights.

A `NetworkSpec` is plain JSON stored inside the MLflow model. It names the problem and its arguments
(what the search config said) and, when the problem provides one, a recipe that builds the network
without the problem's data (`Problem.network_recipe`), so a model trained on Multi-MNIST loads on a
serving machine that has no MNIST files.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trials.models import MultiTaskModel
from trials.problems import Problem, load_factory, make_problem


@dataclass(frozen=True)
class NetworkSpec:
    problem: str  # registry name or 'package.module:factory'
    problem_args: dict[str, Any]
    task_names: tuple[str, ...]
    recipe: tuple[str, dict[str, Any]] | None  # 'module:function' + kwargs, or None: build the problem

    @classmethod
    def of(cls, problem: Problem, name: str, args: Mapping[str, Any]) -> NetworkSpec:
        recipe = problem.network_recipe()
        recipe_copy = None if recipe is None else (recipe[0], dict(recipe[1]))
        return cls(name, dict(args), tuple(problem.task_names), recipe_copy)

    def to_json(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "problem_args": self.problem_args,
            "task_names": list(self.task_names),
            "recipe": None if self.recipe is None else {"function": self.recipe[0], "kwargs": self.recipe[1]},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkSpec:
        recipe = data.get("recipe")
        return cls(
            data["problem"],
            dict(data.get("problem_args") or {}),
            tuple(data["task_names"]),
            None if recipe is None else (recipe["function"], dict(recipe["kwargs"])),
        )

    def build(self) -> MultiTaskModel:
        """A network of the right architecture (its initial weights are about to be replaced)."""
        if self.recipe is not None:
            model = load_factory(self.recipe[0])(**self.recipe[1])
        else:
            model = make_problem(self.problem, self.problem_args).make_model()
        if not isinstance(model, MultiTaskModel):
            raise TypeError(f"network of problem '{self.problem}' is a {type(model).__name__}, not a MultiTaskModel")
        return model

    def load(self, weights_file: str | Path, template: MultiTaskModel | None = None) -> MultiTaskModel:
        """The network with a member's weights, in eval mode on the CPU. With `template` (a network from
        `build()`), a copy of it is used: a front of many members then builds its problem once."""
        model = self.build() if template is None else copy.deepcopy(template)
        model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
        return model.eval()


def code_path_of(problem: str) -> Path | None:
    """The file or package folder a plug-in problem ('package.module:factory') is imported from, which
    a served model must carry (MLflow's `code_paths`); None for built-in problems, part of the project."""
    if ":" not in problem:
        return None
    top = importlib.import_module(problem.partition(":")[0].split(".")[0])
    locations = list(getattr(top, "__path__", []))  # a package (regular or namespace): its folder
    if locations:
        return Path(locations[0])
    return Path(top.__file__) if top.__file__ else None
