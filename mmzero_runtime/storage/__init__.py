"""Artifact storage: the store interface, the local-directory backend and stage manifests."""
