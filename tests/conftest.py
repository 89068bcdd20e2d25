"""Shared test configuration: tier markers are registered in pyproject.toml (--strict-markers)."""
