# Developer entry points; README lists what each does.
UV ?= uv
PYTEST_ARGS ?=

CLUSTER_RUN_DIR ?= $(HOME)/.cache/mmzero/cluster-run

# Container images (images/): `make images REGISTRY=registry.example/team`, then push them.
CONTAINER ?= docker
REGISTRY ?= mmzero
VERSION := $(shell awk -F'"' '/^version = / {print $$2; exit}' pyproject.toml)

.PHONY: setup run test test-fast lint docs bench cluster-build cluster cluster-down test-cluster images

# `uv run` afterwards never removes these extras (its sync is inexact).
setup:
	$(UV) sync --frozen --extra train --extra math-verify --extra operator --extra deepspeed

# The README's first command: build the tiny model once (cached), run one iteration of all
# seven stages on it, and write runs/tiny/report.html. Rerunning resumes where it stopped.
run: setup
	$(UV) run mmzero init-tiny
	$(UV) run mmzero run examples/run.yaml

test: setup
	$(UV) run pytest $(PYTEST_ARGS)

test-fast: setup
	$(UV) run pytest -m "not slow and not cluster" $(PYTEST_ARGS)

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports

# Regenerate every file made from the code: the README's spec reference, the chart's CRD and
# its Grafana dashboard (tests fail while one of them is stale).
docs: setup
	$(UV) run mmzero spec docs --write README.md
	$(UV) run python -m mmzero_operator.crd --write charts/mmzero/crds/mmzero.dev_mmzeroruns.yaml
	$(UV) run python -m mmzero_operator.dashboard --write charts/mmzero/dashboards/mmzero.json

bench: setup
	$(UV) run python benchmarks/render.py

cluster-build:
	bash hack/cluster/build.sh

cluster: setup
	$(UV) run python hack/cluster/cluster.py up --run-dir $(CLUSTER_RUN_DIR)

cluster-down: setup
	$(UV) run python hack/cluster/cluster.py down --run-dir $(CLUSTER_RUN_DIR)

test-cluster: setup
	$(UV) run pytest -m cluster $(PYTEST_ARGS)

images:
	for image in runtime render operator; do \
		$(CONTAINER) build -f images/$$image/Dockerfile -t $(REGISTRY)/$$image:$(VERSION) . || exit 1; \
	done
