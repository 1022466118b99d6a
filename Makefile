# Two commands matter: `make run` and `make test`. Everything else builds on `make setup`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist; tests/parallel.py gives each its own var dir and Redis database).
TEST_WORKERS ?= auto
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 3

.PHONY: setup run test lint format bench bench-smoke bench-scale clean venv

$(BIN)/python:
	@echo "==> creating virtual environment in $(VENV)"
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes, so a second `make run` starts in seconds.
$(STAMP): pyproject.toml | $(BIN)/python
	@echo "==> installing the project with its training and dev extras (first run takes a few minutes)"
	$(BIN)/pip install --progress-bar on -e '.[train,dev]'
	@touch $(STAMP)

venv: $(STAMP)

setup: $(STAMP)
	@$(BIN)/python manage.py bootstrap

run: setup
	@$(BIN)/python manage.py serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

# The tests bring their own models (trained once per configuration into var/cache), so the
# demo models `make run` serves are not trained here: migrations, static files, demo tenant.
test: $(STAMP)
	@$(BIN)/python manage.py bootstrap --skip-model
	@set +e; $(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/run.py

bench-smoke: setup
	$(BIN)/python bench/run.py --smoke

# Not part of `make bench`: a year of one tenant's traffic on PostgreSQL, 10 million events by default
# (hours). Smaller: make bench-scale BENCH_SCALE_ARGS="--steps 10000,100000,1000000"
BENCH_SCALE_ARGS ?=
bench-scale: setup
	$(BIN)/python bench/scale.py $(BENCH_SCALE_ARGS)

clean:
	rm -rf $(VENV) var/cache var/broker
