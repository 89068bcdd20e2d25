"""What one stage process works with: its context, its ranks and shards, its progress bar,
provenance checks, TensorBoard scalars and the measurements kept beside the artifacts."""
