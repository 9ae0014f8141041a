# ssot-warehouse: `make run` builds the demo warehouse, `make test` runs the tests (what CI runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= 1
SEED   ?= 42
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.DEFAULT_GOAL := help
.PHONY: help install run demo test test-fast lint format ui bench clean lock

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project from pyproject.toml + requirements.lock

demo_data/state.json: | $(STAMP)
	$(BIN)/ssot demo init --scale $(SCALE) --seed $(SEED)

demo: $(STAMP) ## (re)generate the demo operational systems (SCALE=1 SEED=42)
	$(BIN)/ssot demo init --scale $(SCALE) --seed $(SEED)

run: $(STAMP) demo_data/state.json ## set up, generate the demo systems if missing, build the warehouse
	$(BIN)/ssot run

# The BigQuery emulator for the integration tests: Python >= 3.13 in its own virtualenv.
PYTHON_EMULATOR ?= $(shell for p in $(HOME)/.pyenv/versions/3.1[3-9]*/bin/python python3.13 python3; do $$p -c 'import sys; assert sys.version_info >= (3, 13)' 2>/dev/null && { echo $$p; break; }; done)
EMU_VENV  ?= .venv-bq-emulator
EMU_STAMP := $(EMU_VENV)/.installed

$(EMU_STAMP): tests/emulator/requirements-bigquery.txt
	@test -n "$(PYTHON_EMULATOR)" || { echo "the BigQuery emulator needs Python 3.13 (python3.13 on PATH or under ~/.pyenv)"; exit 1; }
	$(PYTHON_EMULATOR) -m venv $(EMU_VENV)
	$(EMU_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EMU_VENV)/bin/python -m pip install --quiet -r tests/emulator/requirements-bigquery.txt
	$(EMU_VENV)/bin/python tests/emulator/install_extensions.py
	touch $(EMU_STAMP)

.PHONY: emulator
emulator: $(EMU_STAMP) ## install the local BigQuery emulator the integration tests start

# Under CI the emulator is required; elsewhere, without Python 3.13, its tests skip with the reason.
.PHONY: emulator-for-tests
emulator-for-tests:
	@if [ -n "$(PYTHON_EMULATOR)" ] || [ "$$CI" = "true" ]; then \
		$(MAKE) --no-print-directory $(EMU_STAMP); \
	else \
		echo "no Python >= 3.13 found: the BigQuery emulator tests will be skipped"; \
	fi

test: $(STAMP) emulator-for-tests ## run the test suite, servers and the BigQuery emulator included (what CI runs)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(STAMP) ## unit tests only: no servers, no end-to-end runs
	$(BIN)/python -m pytest tests/unit -m "not integration and not slow"

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: $(STAMP) ## open the Dagster UI on http://127.0.0.1:3000 (lineage, runs, re-execution)
	$(BIN)/ssot ui --port 3000

bench: $(STAMP) ## benchmarks (not part of the tests): demo generator, PostgreSQL extraction, models
	$(BIN)/python bench/demo_scale.py
	$(BIN)/python bench/extract.py $(EXTRACT_ARGS)
	$(BIN)/python bench/models.py $(MODELS_ARGS)
	$(BIN)/python bench/incremental.py $(INCREMENTAL_ARGS)
	$(BIN)/python bench/gate.py $(GATE_ARGS)

.PHONY: bench-gate
bench-gate: $(STAMP) ## quality-gate benchmark only: auditing a 5 M-row fact table against building it
	$(BIN)/python bench/gate.py $(GATE_ARGS)

.PHONY: bench-incremental
bench-incremental: $(STAMP) ## incremental cost: one demo day at scale 100 against a full refresh
	$(BIN)/python bench/incremental.py $(INCREMENTAL_ARGS)

.PHONY: bench-models
bench-models: $(STAMP) ## modelling benchmark only: 200 models vs plain DuckDB, dbt-duckdb, dagster-dbt
	$(BIN)/python bench/models.py $(MODELS_ARGS)

.PHONY: bench-extract
bench-extract: $(STAMP) ## extraction benchmark only (PostgreSQL on 127.0.0.1:5432; EXTRACT_ARGS=...)
	$(BIN)/python bench/extract.py $(EXTRACT_ARGS)

clean: ## remove the generated demo data, warehouse and Dagster history
	rm -rf demo_data warehouse .dagster target $(EMU_VENV)

lock: $(STAMP) ## re-pin requirements.lock from the current environment
	{ sed -n '1,2p' requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
