# Developer entry points; README lists what each does.
UV ?= uv
PYTEST_ARGS ?=

.PHONY: setup run test test-fast lint docs bench

# `uv run` afterwards never removes these extras (its sync is inexact).
setup:
	$(UV) sync --frozen --extra train --extra math-verify

run: setup
	$(UV) run mmzero spec validate examples/run.yaml
	$(UV) run mmzero plan examples/run.yaml

test: setup
	$(UV) run pytest $(PYTEST_ARGS)

test-fast: setup
	$(UV) run pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports

docs: setup
	$(UV) run python -m mmzero_runtime.docs

bench: setup
	$(UV) run python benchmarks/render.py
