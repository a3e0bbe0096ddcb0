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

# --- image, chart and end-to-end (appended) ---------------------------------------------------
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= cutover:$(VERSION)
BASE_IMAGE ?= python:3.11-slim
DOCKER ?= docker

.PHONY: image e2e chart-crds

image:
	$(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) -t $(IMAGE) .

# The chart ships the generated CRDs byte for byte; tests/chart fails when they drift.
chart-crds:
	mkdir -p charts/cutover/crds
	cp crds/*.yaml charts/cutover/crds/

# Needs kind and a Docker engine; skips (with the reason) otherwise.
e2e: install
	CUTOVER_E2E_IMAGE=$(IMAGE) $(BIN)/pytest -q -m e2e -rs tests/e2e
