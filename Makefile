# sqlgym-pipelines: one command to run the project on its local stack, one to test it.
# Every target installs what it needs first (from the committed lock file).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 3000
DATE   ?=
TABLES ?=
LOCAL  := $(BIN)/python -m sqlgym_pipelines.local
export UV_PYTHON_DOWNLOADS := never
# Trust the machine's CA store (uv defaults to its bundled roots, which a TLS proxy breaks).
export UV_SYSTEM_CERTS := 1

.DEFAULT_GOAL := help
.PHONY: lock help install dev test demo stack-up stack-down stack-status stack-destroy stack-env seed invoke invoke-full validate monitor athena-ddl forecast-sync etl-manual etl-validate lint format check-defs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed: run make PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q uv==0.13.8
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create/refresh .venv from requirements.lock (fast when nothing changed)

dev: install ## local stack + demo data + dagster dev on http://127.0.0.1:$(PORT); Ctrl-C stops all
	$(LOCAL) dev --port $(PORT)

test: install ## the whole test suite (starts and stops its own Postgres and S3 servers)
	$(BIN)/python -m pytest pipelines_tests

demo: install ## local stack + demo data + materialize the graph for yesterday (DATE=...), then stop
	$(LOCAL) demo $(if $(DATE),--date $(DATE))

stack-up: install ## start the local stack (Postgres + moto) in the background
	$(LOCAL) up

stack-down: install ## stop exactly the processes stack-up started
	$(LOCAL) down

stack-status: install ## show the local stack's processes and endpoints
	$(LOCAL) status

stack-destroy: install ## stop the stack and delete its Postgres data
	$(LOCAL) destroy

stack-env: install ## print the running stack's variables (eval "$$(make -s stack-env)")
	@$(LOCAL) env | sed 's/^/export /'

seed: install ## (re)load the demo data into the running local stack
	$(LOCAL) seed

invoke: install ## sync the lake's today partition of every table through Dagster (DATE=, TABLES=)
	$(BIN)/python -m sqlgym_pipelines.cli lake-sync $(if $(DATE),--date $(DATE)) $(if $(TABLES),--tables $(TABLES))

invoke-full: install ## re-extract whole days into the lake, superseding their files (DATE=, TABLES=)
	$(BIN)/python -m sqlgym_pipelines.cli lake-sync --full $(if $(DATE),--date $(DATE)) $(if $(TABLES),--tables $(TABLES))

validate: install ## run the lake's data-quality checks for DATE (default today); non-zero on failure
	$(BIN)/python -m sqlgym_pipelines.cli lake-validate $(if $(DATE),--date $(DATE)) $(if $(TABLES),--tables $(TABLES))

monitor: install ## sync history per lake table from _metadata: last sync, rows, bytes, failures, lag
	$(BIN)/python -m sqlgym_pipelines.cli lake-monitor

athena-ddl: install ## print the Athena DDL (partition projection) and <table>_current view of every lake table
	$(BIN)/python -m sqlgym_pipelines.cli lake-athena-ddl

forecast-sync: install ## forecast_data sync for ENV=production|dev (or BRANCH=preview/pr-N), MODE=incremental|full
	$(BIN)/python -m sqlgym_pipelines.cli forecast-sync $(if $(ENV),--env $(ENV)) $(if $(BRANCH),--git-branch $(BRANCH)) $(if $(MODE),--mode $(MODE))

etl-manual: install ## manual Athena -> Neon ETL from CONFIG=etl-config.json (or BRANCH=, MODE=, FILTER=, DAYS=)
	$(BIN)/python -m sqlgym_pipelines.cli etl-manual $(if $(CONFIG),--config $(CONFIG)) $(if $(BRANCH),--target-branch $(BRANCH)) $(if $(MODE),--data-mode $(MODE)) $(if $(FILTER),--table-filter $(FILTER)) $(if $(DAYS),--date-range-days $(DAYS))

etl-validate: install ## the seed's validate:etl: check a branch without changing it (CONFIG= or BRANCH=, MODE=)
	$(BIN)/python -m sqlgym_pipelines.cli etl-manual --validate-only $(if $(CONFIG),--config $(CONFIG)) $(if $(BRANCH),--target-branch $(BRANCH)) $(if $(MODE),--data-mode $(MODE))

lint: install ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## ruff fix + format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check-defs: install ## dagster definitions validate
	@# an empty DAGSTER_HOME: without one the CLI would read ./dagster.yaml (Postgres storage)
	d=$$(mktemp -d) && DAGSTER_HOME=$$d $(BIN)/dagster definitions validate -w workspace.yaml; s=$$?; rm -rf $$d; exit $$s

lock: ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --extra snowflake --python-version 3.11 -o requirements.lock

clean: ## stop the stack, remove .venv and .local
	-$(LOCAL) down
	rm -rf $(VENV) .local
