"""Sampling from the model in its three roles through one interface (`Generator`).

Stages build `GenerationRequest`s (messages, image paths, n, sampling, seed) and get
`GenerationResult`s back in request order. The in-process transformers backend is
`mmzero_runtime.generation.hf.HFGenerator` (imported from there: it pulls in torch).
"""

from mmzero_runtime.generation.base import (
    MAX_SEED,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    Generator,
    Progress,
    ProgressCallback,
    Sample,
    check_unique_ids,
    image_count,
    join_results,
    sample_seeds,
)
from mmzero_runtime.generation.errors import (
    DuplicateRequestIdError,
    FailureReason,
    GenerationRequestError,
    ImageReadError,
    ResultMismatchError,
)
from mmzero_runtime.generation.images import load_image

__all__ = [
    "MAX_SEED",
    "DuplicateRequestIdError",
    "FailureReason",
    "FinishReason",
    "GenerationRequest",
    "GenerationRequestError",
    "GenerationResult",
    "Generator",
    "ImageReadError",
    "Progress",
    "ProgressCallback",
    "ResultMismatchError",
    "Sample",
    "check_unique_ids",
    "image_count",
    "join_results",
    "load_image",
    "sample_seeds",
]
