"""Searches as Ray Jobs: submit to a cluster's job server, follow, stop, list (`pareto-search submit` ...)."""
