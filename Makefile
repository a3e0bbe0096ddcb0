# Cutover: everything a developer or CI runs goes through these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHONPATH := operator

.PHONY: install lint test crds docs demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,sandbox]'

lint: install
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/mypy operator/cutover
	$(BIN)/lint-imports

test: install
	$(BIN)/pytest -q

crds: install
	$(BIN)/python -m cutover.cli crd > crds/migrations.cutover.io.yaml

docs: install
	$(BIN)/python -m cutover.docgen > docs/state-machine.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
