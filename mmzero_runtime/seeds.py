"""Seeds derived from (run seed, iteration, stage, item), so every random choice is reproducible.

A stage never draws from a global random state: it asks for the seed of what it is doing, so
rerunning one stage (or one item) gives the same result whatever ran before it.
"""

from __future__ import annotations

import hashlib


def derive_seed(run_seed: int, *parts: object) -> int:
    """A 63-bit seed from the run seed and any path of names and numbers.

    >>> derive_seed(1, 2, "coder-data", "p17") == derive_seed(1, 2, "coder-data", "p17")
    True
    >>> derive_seed(1, 2, "coder-data", "p17") != derive_seed(1, 2, "coder-data", "p18")
    True
    """
    text = "\x1f".join(str(p) for p in (run_seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
