"""`mmzero serve`: a frozen role behind an OpenAI-compatible HTTP API (see `server.py`)."""
