"""Where the shipped student checkpoint lives (torch-free: only a path).

``auditor_lite/assets/student_checkpoint`` holds the trained student in the Hugging Face layout
(``config.json`` + ``model.safetensors``, weights stored in float16 to halve the download; they load
as float32). It is the source the shipped ONNX default model was exported from::

    import auditor_lite.model
    from transformers import AutoModel
    model = AutoModel.from_pretrained(default_checkpoint_dir())
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKPOINT_DIR_NAME = "student_checkpoint"


def default_checkpoint_dir() -> Path:
    return Path(str(resources.files("auditor_lite") / "assets" / CHECKPOINT_DIR_NAME))
