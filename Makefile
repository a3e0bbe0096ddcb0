# Cutover: everything a developer or CI runs goes through these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHONPATH := operator

.PHONY: install lint test crds docs demo clean controlplane cluster cluster-down mutation mutation-ci

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

lint: install
	$(BIN)/ruff check operator tests bench devtools
	$(BIN)/ruff format --check operator tests bench devtools
	$(BIN)/mypy operator/cutover
	PYTHONPATH=. $(BIN)/mypy devtools
	# bench/ scripts import each other as top-level modules (bench/_common) and the tests' helpers.
	MYPYPATH=bench:. $(BIN)/mypy --explicit-package-bases bench
	$(BIN)/lint-imports

# The integration suites run on a real control plane (devtools/controlplane): built from Go
# modules on first use and cached in ~/.cache/cutover (CUTOVER_CACHE_DIR), one per test session.
# Two workers (pytest-xdist), each with its own control plane, Prometheus and databases: most
# of an integration test is waiting for a run's steps, so two share 2 cores well (29 min -> 18
# on this machine). A file's tests stay on one worker, in order. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: install controlplane
	$(BIN)/pytest -q -rs --durations=25 -n $(TEST_WORKERS) --dist loadfile

# --- the local control plane (etcd, kube-apiserver, controller manager, scheduler, kwok) -------
# Build once (a cold build took 13 min on 2 cores; later runs find the cache in a second).
controlplane:
	devtools/controlplane/build.sh >/dev/null

# Start it in .cluster/ (kubeconfig: .cluster/kubeconfig, logs: .cluster/logs/); stop it again.
cluster: install controlplane
	PYTHONPATH=operator:. $(BIN)/python -m devtools.controlplane up --dir .cluster

cluster-down:
	PYTHONPATH=operator:. $(BIN)/python -m devtools.controlplane down --dir .cluster

crds: install
	$(BIN)/python -m cutover.cli crd > crds/migrations.cutover.io.yaml
	$(BIN)/python -m cutover.cli crd GateTemplate > crds/gatetemplates.cutover.io.yaml
	$(BIN)/python -m cutover.cli crd ClusterGateTemplate > crds/clustergatetemplates.cutover.io.yaml

docs: install
	$(BIN)/python -m cutover.docgen > docs/state-machine.md

# `make demo` (SCENARIO=all|good|bad-green|playground): a migration succeeding and one rolling
# back on a real Kubernetes control plane run as local processes in .cluster/ (the one
# `make cluster` left there, else the demo's own, stopped at the end). The first run on a
# machine builds it from Go modules: tens of minutes on 2 cores, once; later runs start it in
# seconds. Another cluster: make demo DEMO_ARGS="--kubeconfig ~/.kube/config --context kind-x"
# (your contexts are never switched). Prometheus powers the health gates: as root with apt-get
# we install Debian's package; otherwise the demo says how, and runs with the gates skipped.
SCENARIO ?= all
DEMO_ARGS ?=

demo: install
	@if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Prometheus for the demo's health gates (Debian package)..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
	      || { apt-get update -qq && apt-get install -y --no-install-recommends prometheus >/dev/null; } \
	      || echo "Could not install prometheus; the demo runs with its gates skipped."; \
	  else \
	    echo "Prometheus is not installed: the demo runs with its health gates skipped."; \
	    echo "To see them: sudo apt-get install -y --no-install-recommends prometheus"; \
	    echo "(or put a prometheus binary from https://prometheus.io/download/ on PATH)."; \
	  fi; \
	fi
	PYTHONPATH=operator:. $(BIN)/python -m devtools.demo --scenario $(SCENARIO) $(DEMO_ARGS)

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

# --- reliability soak (issue 9): the long version of tests/reliability -------------------------
.PHONY: soak
soak: install
	CUTOVER_SOAK=1 $(BIN)/pytest -q -s -m reliability tests/reliability

# --- benchmarks (appended): moderate sizes, a few minutes in all; figures in docs/performance.md
.PHONY: bench

BENCH_QPS ?= 1000
BENCH_BURST ?= 2000

bench: install
	$(BIN)/pip install --quiet psutil py-spy
	$(BIN)/python bench/first_step.py --migrations 20
	$(BIN)/python bench/concurrency.py --migrations 100 --qps $(BENCH_QPS) --burst $(BENCH_BURST)
	$(BIN)/python bench/api_economy.py --migrations 20 --rollbacks 10 --idle-seconds 30
	$(BIN)/python bench/api_economy.py --migrations 20 --rollbacks 10 --idle-seconds 30 --router gatewayapi
	$(BIN)/python bench/memory.py --migrations 200 --idle-seconds 30 --soak-seconds 60
	$(BIN)/python bench/write_cost.py --writes 300 --rounds 5
	$(BIN)/python bench/shard_spread.py --shards 3
	@if [ -x /usr/bin/prometheus ] || command -v prometheus >/dev/null 2>&1; then \
	  $(BIN)/python bench/gate_cost.py --migrations 10 --interval 1s --window 20; \
	  $(BIN)/python bench/breach_to_rollback.py --runs 5 --interval 1s; \
	else echo "prometheus not installed: gate_cost.py and breach_to_rollback.py skipped"; fi

# Issue 16's sizes: 2.5-3.5 h on 2 cores (the 10,000-cycle soak alone took 26 min on 2026-11-30,
# 65-80 min before; 10,000 held over 3 shards ~12 min), and only meaningful on an otherwise idle
# machine.
# The soak runs apart from the 1,000 idle ones: the memory those freed would hide a leak.
.PHONY: bench-scale
bench-scale: install
	$(BIN)/pip install --quiet psutil py-spy
	$(BIN)/python bench/concurrency.py --migrations 1000 --runs 3 --qps $(BENCH_QPS) --burst $(BENCH_BURST) \
	  --timeout 1500 --blue-replicas 4 --progress-deadline 1h
	$(BIN)/python bench/concurrency.py --migrations 1000 --runs 3 --qps $(BENCH_QPS) --burst $(BENCH_BURST) \
	  --timeout 1500 --blue-replicas 4 --progress-deadline 1h --router gatewayapi
	$(BIN)/python bench/concurrency.py --migrations 1000 --runs 3 --qps $(BENCH_QPS) --burst $(BENCH_BURST) \
	  --timeout 1500 --blue-replicas 4 --progress-deadline 1h --router gatewayapi --admission
	$(BIN)/python bench/concurrency.py --migrations 200 --qps 200 --burst 400
	$(BIN)/python bench/first_step.py --migrations 1000 --existing
	$(BIN)/python bench/memory.py --migrations 1000 --idle-seconds 60 --lanes 20 --cycles 400
	$(BIN)/python bench/memory.py --migrations 0 --lanes 40 --cycles 10000
	$(BIN)/python bench/memory.py --migrations 0 --lanes 40 --cycles 2400 --soak-keep
	$(BIN)/python bench/shards.py --migrations 10000 --shards 3 --namespaces 30

# Mutation testing of operator/cutover/core/ (devtools/mutation.py; mutmut in build/mutation/).
# `mutation` runs all of core/ (about an hour on 2 cores); `mutation-ci` the subset CI keeps its
# floor on. Scores and the time they took: docs/testing.md.
MUTATION_FLOOR ?= 90

mutation: install
	PYTHONPATH=. $(BIN)/python -m devtools.mutation

mutation-ci: install
	PYTHONPATH=. $(BIN)/python -m devtools.mutation --ci --floor $(MUTATION_FLOOR)
