"""Errors of the artifact store."""


class StoreError(RuntimeError):
    """A store operation failed; the message names the key or path and what to do."""


class ManifestError(StoreError):
    """A stage's outputs do not match its manifest, or the manifest is unreadable."""


class RecordError(StoreError):
    """A row of a stored table does not match the table's schema; the message names the table,
    the line and the field."""
