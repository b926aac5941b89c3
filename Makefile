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
# Prefect's state (its database, and the servers `make serve` starts); `make serve PREFECT_HOME=…` moves it.
PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_HOME
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: setup run test test-slow test-fast check format lint docs serve stop sample clean bench-classify bench-redaction bench-transforms bench-privacy bench-assess bench-backup bench-scale bench-erasure bench-risk bench-guarantees bench-utility bench-tradeoff bench-dp

setup: $(VENV)/.synced

# uv itself lives in a small tool venv so that `uv sync` owns .venv completely.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# Bytecode compiled once at install: every later process (CLI, tests, Prefect's server, workers)
# then starts in a third of the time, even where PYTHONDONTWRITEBYTECODE is set.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@echo "setting up $(VENV): the locked dependencies (uv.lock), their bytecode compiled once (a minute or two the first time)..."
	@$(UV) sync --frozen --compile-bytecode --quiet --python $(PYTHON)
	@echo "$(VENV) ready: $$($(UV) pip list --quiet 2>/dev/null | tail -n +3 | wc -l) packages"
	@touch $@

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

# One worker more than cores (at most 4): the flow tests wait on subprocesses and Prefect servers
# part of the time (one clean clone on 2 cores: 3 workers 4m37s, 2 workers 5m02s). Each test file
# whole on one worker, so that its fixtures are built once.
WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n + 1 > 4 ? 4 : n + 1 )))
PYTEST := $(BIN)/pytest --numprocesses=$(WORKERS) --dist loadfile
test: setup
	$(PYTEST) -m "not slow" --durations=12

# The statistical and scale checks of half a minute or more each (marked slow): CI runs them after
# make test.
test-slow: setup
	$(PYTEST) -m slow

# Everything that needs no Prefect (flow tests are marked by their fixtures, tests/conftest.py);
# temporary servers are forbidden here, so a test that needs one and is not marked fails. Property
# tests try a quarter of their examples here (tests/examples.py); `make test` tries them all.
test-fast: setup
	PREFECT_SERVER_ALLOW_EPHEMERAL_MODE=false TUOMIN_EXAMPLES=0.25 $(PYTEST) -m "not flow and not slow"

docs: setup
	$(BIN)/tuomin docs

# A Prefect server on loopback (state in $(PREFECT_HOME)), then the daily deployment served to it.
# The UI is at http://127.0.0.1:4200; Ctrl-C stops serving, `make stop` stops both.
PREFECT_PORT ?= 4200
serve: setup sample
	@if [ ! -f $(PREFECT_HOME)/server.pid ] || ! kill -0 $$(cat $(PREFECT_HOME)/server.pid) 2>/dev/null; then \
		mkdir -p $(PREFECT_HOME); \
		nohup $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) > $(PREFECT_HOME)/server.log 2>&1 & \
		echo $$! > $(PREFECT_HOME)/server.pid; \
	fi
	@for i in $$(seq 90); do curl -sf http://127.0.0.1:$(PREFECT_PORT)/api/health >/dev/null && break; sleep 1; done
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)  (make stop stops the server)"
	@$(DEMO_KEYS); PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/tuomin serve --pid-file $(PREFECT_HOME)/serve.pid

# What `make serve` started, the deployments first (they pause their schedules on the server as
# they stop), then the server; each waited for, and killed if it has not stopped in 30 s.
STOP = if [ -f $(PREFECT_HOME)/$(1).pid ]; then pid=$$(cat $(PREFECT_HOME)/$(1).pid); kill $$pid 2>/dev/null; \
		for i in $$(seq 60); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
		kill -9 $$pid 2>/dev/null; rm -f $(PREFECT_HOME)/$(1).pid; echo "$(2) stopped"; fi
stop:
	@$(call STOP,serve,tuomin serve); $(call STOP,server,Prefect server)

# What CI checks before the tests (and .pre-commit-config.yaml before a commit): the format, the
# lint rules with the 130-character line, and the types of the three layers (pyproject.toml).
CODE := flows transforms expectations sample_data tests tools benchmarks
check: setup
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/ruff check $(CODE)
	$(BIN)/mypy

lint: check

format: setup
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

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
# Issue 30's cases (about an hour and a half on 2 cores, most of it the year of history).
bench-scale: setup
	$(BIN)/python benchmarks/scale.py --case day --rows 1000000 --members 100000
	$(BIN)/python benchmarks/scale.py --case day --rows 2000000 --members 100000
	$(BIN)/python benchmarks/scale.py --case refuse --rows 10000000 --members 1000000
	$(BIN)/python benchmarks/scale.py --case history --days 365 --rows 27400 --members 1000000

bench-erasure: setup
	$(BIN)/python benchmarks/erasure.py --sizes 1000000 3000000

# The release as a motivated intruder sees it: the sample and a larger landing (~2 minutes).
bench-risk: setup
	@$(DEMO_KEYS); $(BIN)/python benchmarks/risk.py

bench-guarantees: setup
	$(BIN)/python benchmarks/guarantees.py

bench-utility: setup
	@$(DEMO_KEYS); $(BIN)/python benchmarks/utility.py

# Which declared questions the release answers at each k, m and unit grain (issue 32): real runs on
# the bundled sample, scored by the runs themselves; the shipped policies are the first row.
bench-tradeoff: setup
	@$(DEMO_KEYS); $(BIN)/python benchmarks/tradeoff.py

# The DP tables against the exact answer (error, and how often the 95% bars hold it) on the bundled
# sample, at the shop's declared size over a quarter (91 days of 1,500 POS lines), and at two
# customer shapes: 4 x 50,000 POS lines and 100,000 members (about three lines a member),
# published too for the anonymized rows' answers; and 4 x 250,000 lines over the same 100,000
# members (about ten a member). About 20 minutes.
BENCH_DP_ROWS ?= 50000
BENCH_DP_MEMBERS ?= 100000
bench-dp: setup
	$(BIN)/python benchmarks/dp_utility.py --landing $(SAMPLE) --repeats 20 --out benchmarks/utility/dp_sample.json
	@$(DEMO_KEYS); work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT && \
	$(BIN)/tuomin generate --out $$work/landing --days 91 --rows 1500 --snapshots last && \
	$(BIN)/python benchmarks/dp_utility.py --landing $$work/landing --repeats 5 --out benchmarks/utility/dp_shop_91days.json && \
	rm -rf $$work/landing && \
	$(BIN)/tuomin generate --out $$work/landing --days 4 --rows $(BENCH_DP_ROWS) --members $(BENCH_DP_MEMBERS) && \
	PREFECT_LOGGING_LEVEL=WARNING $(BIN)/tuomin run --landing $$work/landing --warehouse $$work/warehouse \
		--restricted $$work/restricted --all >/dev/null 2>&1 && \
	$(BIN)/python benchmarks/dp_utility.py --landing $$work/landing --warehouse $$work/warehouse --repeats 10 \
		--out benchmarks/utility/dp_4x$(BENCH_DP_ROWS)_members$(BENCH_DP_MEMBERS).json && \
	rm -rf $$work/landing && $(BIN)/tuomin generate --out $$work/landing --days 4 --rows 250000 --members 100000 && \
	$(BIN)/python benchmarks/dp_utility.py --landing $$work/landing --repeats 5 \
		--out benchmarks/utility/dp_4x250000_members100000.json

bench-transforms: setup
	$(BIN)/python benchmarks/transforms.py --values 1000000

clean:
	rm -rf warehouse restricted .prefect .pytest_cache .hypothesis
