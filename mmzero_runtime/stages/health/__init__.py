"""After a stage: its health figures, and checkpoint retention over the run's store."""
