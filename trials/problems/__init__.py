"""Problem registry: built-in problems by name, plug-ins by ``package.module:factory``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from trials.names import PROBLEMS
from trials.problems.base import Batch, ExactFront, MetricSpec, Problem

__all__ = ["PROBLEMS", "Batch", "ExactFront", "MetricSpec", "Problem", "load_factory", "make_problem"]


def load_factory(path: str) -> Any:
    """The object named by ``'package.module:attribute'``; a ValueError names what is missing."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"problem '{path}': a plug-in problem must be written 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"problem '{path}': cannot import module '{module_name}' ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"problem '{path}': module '{module_name}' has no attribute '{attr}'") from None


def make_problem(name: str, args: Mapping[str, Any] | None = None) -> Problem:
    """Build a problem from its registry name or a ``package.module:factory`` plug-in path.

    Arguments are passed to the factory as keyword arguments; a wrong keyword becomes an
    error naming the problem, the argument and what the factory accepts.
    """
    args = dict(args or {})
    if name in PROBLEMS:
        factory = load_factory(PROBLEMS[name])
    elif ":" in name:
        factory = load_factory(name)
    else:
        allowed = ", ".join(sorted(PROBLEMS))
        raise ValueError(f"problem '{name}' is unknown; allowed: {allowed}, or a plug-in 'package.module:factory'")
    try:
        problem = factory(**args)
    except TypeError as exc:
        raise ValueError(f"problem '{name}': invalid arguments {sorted(args)} ({exc})") from exc
    if not isinstance(problem, Problem):
        raise ValueError(
            f"problem '{name}': factory returned {type(problem).__name__}, expected a trials.problems.Problem"
        )
    return problem
