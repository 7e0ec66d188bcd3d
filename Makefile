# The two commands README gives for a fresh machine (Python 3.10+, network):
#   make run    creates .venv, installs mnistlab (only what training needs), trains the default experiment
#   make test   creates .venv, installs mnistlab with its test tools and the cluster extras (.[dev]),
#               runs the whole suite (one worker per core)
#   make test-fast  the unit and in-process tests (under 3 minutes): the loop while changing code
#   make lint       ruff (lint, format) and the import contract
#   make docs       the documentation site into site/ (mkdocs build --strict); make docs-serve: on 127.0.0.1:8000
# Extra arguments: make run ARGS="model=tiny_cnn trainer.epochs=5"   make test PYTEST_ARGS="-m 'not slow'"

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the Python that ruff checks and formats (tests/test_layout.py checks the same)
LINTED := src tests benchmarks docs_hooks run.py

.PHONY: install install-dev install-docs run test test-fast lint ui docs docs-serve

# one stamp per set of packages: `make run` never installs the test tools, `make test` adds them
install: $(BIN)/.installed
install-dev: $(BIN)/.installed-dev
install-docs: $(BIN)/.installed-docs

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("mnistlab needs Python 3.10+, found " + sys.version.split()[0]) if sys.version_info < (3, 10) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(BIN)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

run: install
	$(BIN)/python run.py $(ARGS)

# a test file's tests stay on one worker (--dist loadfile): its module fixtures (a sweep, a server)
# are built once, and the files run side by side, one per core
test: install-dev
	$(BIN)/python -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

test-fast: install-dev
	$(BIN)/python -m pytest -m fast $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# the reference pages are generated from conf/ and the mnistlab parser as the site is built (docs_hooks/)
# NO_MKDOCS_2_WARNING: Material 9.7+ prints a notice about MkDocs 2 and its own end of life on every build
docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: install-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:8000
