"""The edge runtime: audit candidate masks with an exported model directory. Imports no torch.

``Auditor.load(dir).audit(frames, audio, expression, masks, frame_index=k)`` -> ``list[AuditResult]``;
``Auditor.session(expression, frames, audio)`` -> :class:`ClipSession` for many masks / frames of a
clip. See docs/runtime.md.
"""

from auditor_lite.runtime.auditor import DEFAULT_MODEL_DIR, Auditor, ModelNotFoundError  # noqa: F401
from auditor_lite.runtime.backends import ModelFileError  # noqa: F401
from auditor_lite.runtime.inputs import InputError  # noqa: F401
from auditor_lite.runtime.results import AuditResult  # noqa: F401
from auditor_lite.runtime.session import ClipSession  # noqa: F401

__all__ = ["Auditor", "AuditResult", "ClipSession", "InputError", "ModelFileError", "ModelNotFoundError",
           "DEFAULT_MODEL_DIR"]
