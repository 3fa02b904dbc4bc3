"""Worked examples for pareto_search users (importable, e.g. ``examples.plugin_problem:make``)."""
