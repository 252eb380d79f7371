"""Re-export of :mod:`auditor_lite.preprocess`, which lives outside this package so that the
torch-free runtime can import it without triggering the torch/transformers registration here."""

from auditor_lite.preprocess import *  # noqa: F401,F403
from auditor_lite.preprocess import (  # noqa: F401
    MASK_THRESHOLD,
    PIXEL_SCALE,
    TEXT_EMBEDDING_DIM,
    area_resize,
)
