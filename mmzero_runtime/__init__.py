"""MM-Zero runtime: everything that runs inside a stage, and the local executor."""
