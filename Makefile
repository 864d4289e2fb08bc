# Lifeboat: the obvious targets. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit integration crds bench clean system-deps

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

## Database servers and client tools the integration tests run for real (needs root, Debian).
system-deps:
	@if ! command -v pg_dump >/dev/null || ! command -v mariadb-dump >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql mariadb-server >/dev/null; \
	  else echo "system-deps: run as root, or install postgresql and mariadb-server yourself"; exit 1; fi; \
	fi

lint: setup
	$(BIN)/ruff check operator tests benchmarks integrations
	$(BIN)/ruff format --check operator tests benchmarks integrations
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

## The whole suite: lint, types, then every test against real servers.
test: system-deps setup lint typecheck
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

integration: system-deps setup
	$(BIN)/pytest tests/integration

## Regenerate crds/*.yaml from the pydantic models.
crds: setup
	$(BIN)/lifeboat crds --output crds

## Throughput and memory against baselines measured in the same run.
bench: system-deps setup
	$(BIN)/python -m benchmarks --breakdown

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache demo-output
