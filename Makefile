# relia: the two commands of the README, and a few helpers.
#   make up    create .venv, install relia, run the engine + API + dashboard on this machine
#   make test  create .venv with test extras, install the real servers the tests use, run everything

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint typecheck servers bench clean clean-jit

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/relia up

# Real Prometheus, Alertmanager and PostgreSQL servers from Debian's packages, started by the test fixtures
# on loopback, and Debian's Chromium for the dashboard's browser tests. Installed only when missing; needs root (as in CI) or sudo.
servers:
	@if ! command -v prometheus >/dev/null 2>&1 || ! command -v prometheus-alertmanager >/dev/null 2>&1 \
		|| ! command -v chromium >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			prometheus prometheus-alertmanager chromium postgresql; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) servers lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/nab.py --detector all

# Numba caches compiled kernels beside the sources; it does not notice a change in a helper a
# kernel inlines from another module (src/relia/detect/_kernels.py), so clear them after one.
clean-jit:
	find src -name '*.nbi' -delete -o -name '*.nbc' -delete

clean: clean-jit
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
