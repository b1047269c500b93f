# The two commands a newcomer needs:
#   make example   run the example platform on http://127.0.0.1:5000 (SQLite, in-process jobs)
#   make test      lint and run the whole suite (both stacks; real-stack tests need PostgreSQL
#                  and Redis, browser tests need Chromium, which this target installs)
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

# axe-core (from the npm registry) is injected into every page by the browser tests.
AXE = tests/.node/node_modules/axe-core/axe.min.js

.PHONY: example test install bench axe

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

$(AXE):
	bash scripts/ensure-axe.sh

axe: $(AXE)

example: $(BIN)/.installed
	$(BIN)/flask --app example_app run --port $${PORT:-5000}

test: $(BIN)/.installed $(AXE)
	bash scripts/ensure-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_sync.py
