# Two commands: `make demo` (the main job) and `make test` (the test suite).
# Each sets up .venv on first use (see scripts/bootstrap.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_WAIT_POLICY := PASSIVE
PYTEST_ARGS ?= -m "not slow"

.PHONY: setup demo test test-all lint typecheck bench clean

setup:
	@VENV=$(VENV) bash scripts/bootstrap.sh

demo: setup
	@bash scripts/demo.sh $(VENV)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy  # the public API; the file list is in pyproject.toml

bench: setup
	$(PY) benchmarks/overhead.py

clean:
	rm -rf demo-output quickstart-output
