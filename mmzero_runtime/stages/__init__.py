"""Stages of a run: the pure stage graph and one module per stage kind."""
