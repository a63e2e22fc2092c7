# a3s-serverless. Everything sets itself up: a fresh machine needs only Python 3.11 and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml layers/core/pyproject.toml local/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install lint demo test unit coverage dev fuzz bench validate clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The three distributions of this checkout: the core (the layer), the local stack, the SDK.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e layers/core -e local -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)                 ## create .venv with everything pinned

demo: install                     ## the seed examples end to end on the embedded local stack
	$(BIN)/python scripts/demo.py

lint: install                     ## ruff and mypy over layers/, functions/, sdk/, local/ (config in pyproject.toml): no finding passes
	$(BIN)/ruff check
	$(BIN)/mypy

test: install lint                ## lint, then the whole suite: unit, integration (moto), e2e
	$(BIN)/python -m pytest

unit: install                     ## tests/unit alone, with moto made unimportable: they must not need it
	$(BIN)/python -c "import sys; sys.modules['moto'] = None; import pytest; sys.exit(pytest.main(['tests/unit']))"

coverage: install                 ## the whole suite with branch coverage of layers/ and sdk/: missing lines, figure per module
	$(BIN)/python -m pytest --cov=layers --cov=sdk --cov=local --cov-branch --cov-report=term-missing $(COVERAGE_ARGS)

dev: install                      ## the local stack as an HTTP API on 127.0.0.1:8787
	$(BIN)/python -m a3s_local.server --port $${PORT:-8787}

fuzz: install                     ## Schemathesis against `make dev` on 127.0.0.1 (budget: FUZZ_EXAMPLES, FUZZ_MAX_TIME)
	$(BIN)/python -m a3s_local.fuzz

bench: install                    ## benchmarks; figures go to bench-results/
	$(BIN)/python scripts/bench_lanes.py
	$(BIN)/python scripts/bench_fanout.py
	$(BIN)/python scripts/bench_isolation.py
	$(BIN)/python scripts/bench_cost.py
	$(BIN)/python scripts/bench_coldstart.py

validate: install                 ## SAM transform + cfn-lint of template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -c "from pathlib import Path; from a3s_local.template import load_stack; load_stack(Path('template.yaml')); print('SAM transform ok')"

clean:
	rm -rf $(VENV) .pytest_cache bench-results .coverage
