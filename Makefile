# alertbridge: `make run` and `make test` work on a fresh clone with only Python >= 3.11.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/alertbridge.yaml

.PHONY: run run-distributed test lint typecheck bench storm clean check-python check-redis

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "alertbridge needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'

$(BIN)/python: | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime install (make run) and dev install (make test) are stamped separately.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/alertbridge serve --config $(CONFIG)

# The store contract tests start their own redis-server on a free port (never your :6379).
check-redis:
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is not installed: apt-get install redis-server (Debian/Ubuntu; the Redis store tests start their own server)" >&2; exit 1; }

# Distributed mode on loopback, no Docker: redis-server (AOF), 2 replicas, 2 rq workers, a load balancer.
run-distributed: $(VENV)/.installed check-redis
	$(BIN)/alertbridge cluster --config $(CONFIG)

test: $(VENV)/.installed-dev check-redis
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check bridge sources sinks correlators tests

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy bridge sources sinks correlators

# Load benchmark (not part of `make test`): see tests/bench/README.md.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m tests.bench.loadgen --help >/dev/null
	$(BIN)/python -m pytest -m slow tests/bench -s

# Replay every storm data set (../shared/storm) with config/examples/storm.yaml and print the scores.
storm: $(VENV)/.installed-dev
	$(BIN)/python tests/storm/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
