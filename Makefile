# The two commands a newcomer needs:
#   make example   run the example platform on http://127.0.0.1:5000 (SQLite, in-process jobs)
#   make test      lint, type-check (mypy --strict), build the docs and run the whole suite (both stacks; real-stack tests need PostgreSQL
#                  and Redis, browser tests need Chromium, which this target installs)
# And for CI: make test-lowest   the suite on the lowest dependency versions setup.cfg declares
VENV ?= .venv
LOWEST_VENV ?= .venv-lowest
PYTHON ?= python3
BIN = $(VENV)/bin
SHELL := /bin/bash
EXTRAS = test,scim,rq,postgres

# axe-core (from the npm registry) is injected into every page by the browser tests.
AXE = tests/.node/node_modules/axe-core/axe.min.js

.PHONY: example test test-lowest install bench docs axe

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
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
	$(BIN)/mypy
	$(MAKE) docs
	$(BIN)/python -m pytest

# The Sphinx site (MyST pages + API reference from the docstrings); any warning fails it.
docs: $(BIN)/.installed
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Every runtime dependency pinned to its declared lower bound (scripts/lowest-constraints.py);
# browser and packaging tests are left to `make test` (they do not depend on these versions).
test-lowest: setup.cfg
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(PYTHON) scripts/lowest-constraints.py > $(LOWEST_VENV)/constraints.txt
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet -c $(LOWEST_VENV)/constraints.txt -e ".[$(EXTRAS)]"
	$(LOWEST_VENV)/bin/python -m pip list --format=freeze | grep -i -f <(cut -d= -f1 $(LOWEST_VENV)/constraints.txt) || true
	$(LOWEST_VENV)/bin/python -m pytest -q -m "not browser and not packaging"

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_sync.py
