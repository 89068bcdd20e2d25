"""Running a run: the local executor, the stage runner both executors call, models in and out
of a run's store, and a cluster run's status."""
