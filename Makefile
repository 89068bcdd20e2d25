# Developer entry points; the README and docs/testing.md say what each does.
UV ?= uv
PYTEST_ARGS ?=

CLUSTER_RUN_DIR ?= $(HOME)/.cache/mmzero/cluster-run

# Container images (images/): `make images REGISTRY=registry.example/team`, then push them.
CONTAINER ?= docker
REGISTRY ?= mmzero
VERSION := $(shell awk -F'"' '/^version = / {print $$2; exit}' pyproject.toml)

.PHONY: setup run test test-fast lint docs bench cluster-build cluster cluster-down test-cluster images
.PHONY: debian-tools tools

# `uv run` afterwards never removes these extras (its sync is inexact).
setup:
	@command -v $(UV) >/dev/null 2>&1 || { echo "make: uv is not installed; install it with: pip install uv" >&2; exit 1; }
	$(UV) sync --frozen --extra train --extra math-verify --extra operator --extra deepspeed

# The README's first command: build the tiny model once (cached), run one iteration of all
# seven stages on it, and write runs/tiny/report.html. Rerunning resumes where it stopped.
run: setup
	$(UV) run mmzero init-tiny
	$(UV) run mmzero run examples/run.yaml

# The whole suite, with what its tests start (each a no-op once installed or cached): Debian's
# tools, the local control plane, MinIO and helm (docs/testing.md). Here a tool that cannot be
# had is named in one line with how to get it, and its tests skip, listed at the end of the run;
# under CI=true, or with TOOL_MISSING=stop (.ci/run), it stops the run instead. pytest exits 5
# when it collects nothing: said in words, since every tier has tests.
test: TOOL_MISSING = skip
test: setup debian-tools cluster-build tools
	$(UV) run pytest $(PYTEST_ARGS) || { status=$$?; [ $$status -ne 5 ] \
		|| echo "make: pytest collected no tests; check testpaths and markers in pyproject.toml" >&2; \
		exit $$status; }

# How a tool recipe that failed ends: $(call tool_missing,what is missing and how to get it).
TOOL_MISSING ?= stop
tool_missing = case "$(TOOL_MISSING):$$(printf %s "$${CI:-}" | tr A-Z a-z)" in \
	stop:* | *:1 | *:true | *:yes) echo "make: $(1)" >&2; exit 1;; \
	*) echo "make: $(1) (the tests that need it skip until then)" >&2;; esac

# chromium opens the HTML report in a test, a real Prometheus scrapes the stages and the
# operator in others, and the stages push to a real Pushgateway. Installed when run as root.
DEBIAN_TOOLS := chromium prometheus prometheus-pushgateway
debian-tools:
	@missing=""; for tool in $(DEBIAN_TOOLS); do \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make: installing Debian's$$missing" >&2; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
		|| { $(call tool_missing,apt-get could not install$$missing); }; \
	else \
		$(call tool_missing,missing Debian tools:$$missing; install them with: sudo apt-get install$$missing); \
	fi

# MinIO (the S3 store's tests) and helm (the chart's), each from its Go module, cached in
# ~/.cache/mmzero/tools (cold times in benchmarks/RESULTS.md).
tools:
	@bash hack/build-tool.sh minio >/dev/null \
		|| { $(call tool_missing,no MinIO for the S3 tests: install Go >= 1.26 and run make tools); }
	@bash hack/build-tool.sh helm >/dev/null \
		|| { $(call tool_missing,no helm for the chart tests: install Go >= 1.26 and run make tools); }

test-fast: setup
	$(UV) run pytest -m "not slow and not cluster" $(PYTEST_ARGS)

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports

# Regenerate every file made from the code: the spec reference (docs/spec.md), the chart's CRD
# and its Grafana dashboard (tests fail while one of them is stale).
docs: setup
	$(UV) run mmzero spec docs --write docs/spec.md
	$(UV) run python -m mmzero_operator.crd --write charts/mmzero/crds/mmzero.dev_mmzeroruns.yaml
	$(UV) run python -m mmzero_operator.dashboard --write charts/mmzero/dashboards/mmzero.json

bench: setup
	$(UV) run python benchmarks/render.py

# The local control plane for tests/cluster, built from Go modules (Go >= 1.26 and openssl;
# about 9 min cold on 2 cores, then cached in ~/.cache/mmzero/cluster).
cluster-build:
	@bash hack/cluster/build.sh >/dev/null \
		|| { $(call tool_missing,no local control plane for tests/cluster: install Go >= 1.26 and openssl and run make cluster-build); }

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

# The bad-input search, long (tests/fuzz): thousands of inputs per entry point instead of the
# few dozen every `pytest` tries; a failure prints the input (and a blob to reproduce it).
.PHONY: fuzz
fuzz: setup
	MMZERO_FUZZ_PROFILE=fuzz-long $(UV) run pytest tests/fuzz --timeout 3600 $(PYTEST_ARGS)
