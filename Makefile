# pareto_search — every target installs what it needs itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on this machine's disk and installs in seconds; a bare `torch`
# would pull a multi-GB CUDA build. GPU users: `make install TORCH_SPEC=torch` (or install their
# CUDA build into .venv first): an already installed torch is kept.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install data demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

data:
	bash scripts/fetch_data.sh

demo: install data
	$(BIN)/pareto-search run configs/quickstart.yaml

# The full suite, slow end-to-end tests included (CI runs this). pytest exits 5 when it
# collected no test: that is a failure here, never a silent pass.
# Two workers (pytest-xdist), one per core; --dist loadscope keeps a module's tests on one worker, so a module's
# shared fixture (the uninterrupted search the fault tests compare with) is computed once. Each worker keeps its
# Rays apart (tests/conftest.py). --durations: the slowest tests are printed on every run, so the budget is watched.
TEST_WORKERS ?= 2
test: install data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=25 $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install data
	$(BIN)/python benchmarks/engine_throughput.py
	$(BIN)/python benchmarks/search_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
