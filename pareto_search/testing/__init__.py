"""Helpers for testing code that uses pareto_search: a finished search written to disk without training
(``stored_search``, ``stored_psl_search``), a registered model served on a free port (``model_server``), and
the process handling they share (``processes``). The test suite and the benchmarks both use them."""
