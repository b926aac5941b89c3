# Two commands on a fresh machine: `make run` and `make test`. Everything else is built on demand.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := sample_data/landing
KEY_FILE := .secrets/pseudonym.key
BACKUP_KEY_FILE := .secrets/backup.key

export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON_DOWNLOADS := never
export PREFECT_HOME := $(CURDIR)/.prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: setup run test lint docs serve stop sample clean bench-classify bench-redaction bench-transforms bench-privacy bench-assess bench-backup bench-scale bench-erasure

setup: $(VENV)/.synced

# uv itself lives in a small tool venv so that `uv sync` owns .venv completely.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# Bytecode compiled once at install: every later process (CLI, tests, Prefect's server, workers)
# then starts in a third of the time, even where PYTHONDONTWRITEBYTECODE is set.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

# The committed sample; regenerated only if it is missing.
$(SAMPLE)/requests/erasure.csv: | $(VENV)/.synced
	$(BIN)/tuomin generate --out $(SAMPLE)

sample: $(SAMPLE)/requests/erasure.csv

# Without keys in the environment, run with local demo keys (created once, mode 0600).
DEMO_KEYS = if [ -z "$$TUOMIN_PSEUDONYM_KEY$$TUOMIN_PSEUDONYM_KEY_FILE$$TUOMIN_PSEUDONYM_KEY_BLOCK" ]; then \
		$(BIN)/tuomin key init --path $(KEY_FILE) && export TUOMIN_PSEUDONYM_KEY_FILE=$(CURDIR)/$(KEY_FILE); \
	fi; \
	if [ -z "$$TUOMIN_BACKUP_KEY$$TUOMIN_BACKUP_KEY_FILE$$TUOMIN_BACKUP_KEY_BLOCK" ]; then \
		$(BIN)/tuomin key init --backup --path $(BACKUP_KEY_FILE) && export TUOMIN_BACKUP_KEY_FILE=$(CURDIR)/$(BACKUP_KEY_FILE); \
	fi

run: setup sample
	@$(DEMO_KEYS); $(BIN)/tuomin run

test: setup
	$(BIN)/pytest

docs: setup
	$(BIN)/tuomin docs

# A Prefect server on loopback (state in .prefect/), then the daily deployment served to it.
# The UI is at http://127.0.0.1:4200; Ctrl-C stops serving, `make stop` stops the server.
PREFECT_PORT ?= 4200
serve: setup sample
	@if [ ! -f .prefect/server.pid ] || ! kill -0 $$(cat .prefect/server.pid) 2>/dev/null; then \
		mkdir -p .prefect; \
		nohup $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) > .prefect/server.log 2>&1 & \
		echo $$! > .prefect/server.pid; \
	fi
	@for i in $$(seq 90); do curl -sf http://127.0.0.1:$(PREFECT_PORT)/api/health >/dev/null && break; sleep 1; done
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)  (make stop stops the server)"
	@$(DEMO_KEYS); PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/tuomin serve

stop:
	@if [ -f .prefect/server.pid ]; then kill $$(cat .prefect/server.pid) 2>/dev/null; rm -f .prefect/server.pid; echo "Prefect server stopped"; fi

lint: setup
	$(BIN)/ruff check flows transforms expectations sample_data tests tools benchmarks

# Benchmarks: long measurements, run by hand (never part of `make test`).
bench-classify: setup
	$(BIN)/python benchmarks/classify.py --seeds 5 --rows 3000

bench-redaction: setup
	$(BIN)/python benchmarks/redaction.py --notes 20000

bench-privacy: setup
	$(BIN)/python benchmarks/privacy.py

bench-assess: setup
	$(BIN)/python benchmarks/assess.py --rows 1000000

bench-backup: setup
	$(BIN)/python benchmarks/backup.py --mib 2048

# 1M, 3M and 10M POS lines in one export date, against a plain CSV->Parquet pass (~15 minutes).
bench-scale: setup
	$(BIN)/python benchmarks/scale.py --sizes 1000000 3000000 10000000

bench-erasure: setup
	$(BIN)/python benchmarks/erasure.py --sizes 1000000 3000000

bench-transforms: setup
	$(BIN)/python benchmarks/transforms.py --values 1000000

clean:
	rm -rf warehouse restricted .prefect .pytest_cache .hypothesis
