"""Which samples share a model call: a pure plan, so reproducibility is a checked property.

`request` batching puts only the samples of one request in a call (identical prompts, no
padding), so a request's outputs are bit-for-bit the same whatever else is generated in the
run. `mixed` fills calls with samples of several requests that share sampling settings (sorted
by prompt length to limit padding): faster for small `n`, but padding and batch shape change
the floating-point sums, so outputs are reproducible only for the same list of requests.
Either way each sample draws from its own seeded stream (`sample_seeds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mmzero_runtime.generation.base import GenerationRequest, sample_seeds
from mmzero_runtime.spec import SamplingSpec

Batching = Literal["request", "mixed"]


@dataclass(frozen=True)
class Row:
    """One sample to draw: the index of its request in the call, its index and its seed."""

    request: int
    sample: int
    seed: int


def plan_batches(
    requests: Sequence[GenerationRequest],
    prompt_tokens: Sequence[int],
    *,
    batch_size: int,
    batching: Batching,
    skip: frozenset[int] = frozenset(),
) -> list[list[Row]]:
    """Model calls of at most `batch_size` rows; every row of a call shares one `SamplingSpec`.

    Requests whose index is in `skip` (failed before generation) get no rows.

    >>> from mmzero_runtime.roles import build_proposer_messages
    >>> spec = SamplingSpec(max_tokens=4)
    >>> reqs = [GenerationRequest(f"r{i}", build_proposer_messages("maps"), (), 3, spec, i)
    ...         for i in range(2)]
    >>> [[(row.request, row.sample) for row in call]
    ...  for call in plan_batches(reqs, [5, 5], batch_size=2, batching="request")]
    [[(0, 0), (0, 1)], [(0, 2)], [(1, 0), (1, 1)], [(1, 2)]]
    >>> [len(call) for call in plan_batches(reqs, [5, 5], batch_size=4, batching="mixed")]
    [4, 2]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size}; at least 1 row per call is needed")
    groups: dict[SamplingSpec | int, list[Row]] = {}
    for index, request in enumerate(requests):
        if index in skip:
            continue
        # `request` groups by request index, `mixed` by sampling settings (first-seen order).
        key: SamplingSpec | int
        match batching:
            case "request":
                key = index
            case "mixed":
                key = request.sampling
        rows = groups.setdefault(key, [])
        rows.extend(
            Row(index, i, seed) for i, seed in enumerate(sample_seeds(request.seed, request.n))
        )
    calls: list[list[Row]] = []
    for rows in groups.values():
        ordered = sorted(rows, key=lambda row: prompt_tokens[row.request])  # stable
        calls.extend(
            ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)
        )
    return calls
