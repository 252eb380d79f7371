"""The auditor model: Hugging Face classes, presets, the in-graph audio front end.

Importing this package registers the classes with transformers, so that after
``import auditor_lite.model`` the generic loaders work::

    AutoConfig.from_pretrained(checkpoint_dir)   # -> AuditorConfig
    AutoModel.from_pretrained(checkpoint_dir)    # -> AuditorModel

``presets`` is a pure-Python module (preprocessing lives outside this package, in
``auditor_lite.preprocess``, for the torch-free edge runtime); the torch part (and the registration) is loaded only where torch and transformers are
installed. On a machine with torch installed, importing any submodule therefore also imports torch
and transformers (several seconds of start-up), which is the price of registering on import.
"""

from __future__ import annotations

import importlib.util

from auditor_lite.model.presets import PRESETS, preset  # noqa: F401

__all__ = ["PRESETS", "preset"]
_HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))

if _HAS_TORCH:
    from transformers import AutoConfig, AutoModel

    from auditor_lite.model.configuration import AuditorConfig
    from auditor_lite.model.modeling import AuditorModel, AuditorOutput  # noqa: F401

    AutoConfig.register(AuditorConfig.model_type, AuditorConfig, exist_ok=True)
    AutoModel.register(AuditorConfig, AuditorModel, exist_ok=True)
    __all__ += ["AuditorConfig", "AuditorModel", "AuditorOutput"]
