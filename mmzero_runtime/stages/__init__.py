"""Stages of a run, grouped by job: the stage graph (`graph`), the executors (`execution`), one
module per stage kind (`kinds`), what a stage process works with (`process`), health figures and
retention (`health`), and `mmzero plan`'s estimates (`planning`); docs/design.md has the table."""
