"""Where the shipped grounded checkpoint lives (torch-free: only a path).

``auditor_lite/assets/grounded_checkpoint`` holds stage A (``grounder.safetensors`` +
``grounder_config.json``) and stage B (``scorer.safetensors`` + ``scorer_config.json``) with the
score calibration fitted on held-out clips: the source the shipped ONNX default model was exported
from (``auditor-lite export onnx --model <this dir>``)::

    from auditor_lite.model.grounded import load_grounded
    model = load_grounded(default_checkpoint_dir())
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKPOINT_DIR_NAME = "grounded_checkpoint"


def default_checkpoint_dir() -> Path:
    return Path(str(resources.files("auditor_lite") / "assets" / CHECKPOINT_DIR_NAME))
