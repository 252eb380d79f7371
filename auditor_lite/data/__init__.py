"""Benchmark data: the MQ-RAVSBench layout (reader, writer, validation) and a scene generator."""

from auditor_lite.data.schema import (  # noqa: F401
    ACTIONS,
    MASK_TYPES,
    SPLITS,
    Candidate,
    Clip,
    DataError,
    ExpressionRecord,
    action_from_iou,
    normalize_action,
    normalize_mask_type,
)
