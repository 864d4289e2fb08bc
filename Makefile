# Lifeboat: the obvious targets. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-faults lint typecheck unit integration crds bench clean system-deps

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    rm -rf $(VENV); apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq python3-venv python3-pip >/dev/null && $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install it with 'apt-get install -y python3-venv'"; false; fi; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## The main job on an embedded default: SQLite -> local directory -> restore, with live progress.
demo: setup
	$(BIN)/lifeboat demo

## Database servers and client tools the integration tests run for real (needs root, Debian),
## and promtool (Debian's prometheus package), which checks the chart's alert rules.
system-deps:
	@if ! command -v pg_dump >/dev/null || ! command -v mariadb-dump >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql mariadb-server >/dev/null; \
	  else echo "system-deps: run as root, or install postgresql and mariadb-server yourself"; exit 1; fi; \
	fi
	@if ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; } \
	      || echo "system-deps: prometheus (promtool) could not be installed: the alert-rule tests skip"; \
	  else echo "system-deps: promtool is missing (apt-get install prometheus): the alert-rule tests skip"; fi; \
	fi

lint: setup
	$(BIN)/ruff check operator tests benchmarks integrations
	$(BIN)/ruff format --check operator tests benchmarks integrations
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

## The whole suite: lint, types, then every test against real servers, the long fault tests
## (S3 outages of ~30 s, marked `faults`) included. A bare `pytest` leaves those out. Two
## pytest-xdist workers: much of the suite waits on servers and processes, so two overlap well
## (each worker starts its own database servers).
PYTEST_WORKERS ?= 2
test: system-deps setup lint typecheck
	$(BIN)/pytest -m '' -n $(PYTEST_WORKERS)

## Only the long fault tests.
test-faults: system-deps setup
	$(BIN)/pytest -m faults -n $(PYTEST_WORKERS)

unit: setup
	$(BIN)/pytest tests/unit

integration: system-deps setup
	$(BIN)/pytest tests/integration

## Regenerate crds/*.yaml (and the chart's copies) and docs/api.md from the pydantic models.
crds: setup
	$(BIN)/lifeboat crds --output crds --docs docs/api.md
	cp crds/*.yaml charts/lifeboat/crds/

## Throughput and memory against baselines measured in the same run (docs/benchmarks.md); the
## peers need pigz (Debian) and awscli (installed by the benchmark into .venv/awscli).
bench: system-deps setup
	@command -v pigz >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pigz >/dev/null; } \
	  || echo "bench: pigz is missing (apt-get install pigz): the PostgreSQL peer is skipped"
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache demo-output
