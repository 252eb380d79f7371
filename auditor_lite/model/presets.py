"""Named model sizes: the one registry of teacher/student dimensions.

Every value here becomes a field of :class:`~auditor_lite.model.configuration.AuditorConfig` and is
saved in ``config.json`` with the weights, so a checkpoint always knows its own shape. Torch-free.

``key_motion`` adds what moved to the key-frame stem's input: the key frame minus the clip's mean
frame, and each frame's grey level minus the mean (13 channels upsampled from the frames), so the
key-frame tokens know which pixels belong to moving (and pulsing, i.e. sounding) objects.

``grounding_stages`` is the small CNN of the grounding head (:mod:`auditor_lite.model.grounding`);
its map has ``key_size / prod(strides)`` cells per side.

Stage lists are ``[[channels, stride], ...]`` for a strided CNN: each stage is a stride-``s``
convolution with kernel ``s + 1`` (``3`` for stride 1), BatchNorm and GELU, so the token grid side is
``input_size / prod(strides)``. Token counts per clip (the context the trunk attends over)::

    1 (grounding) + text_tokens + 10 * audio_tokens_per_second + 10 * frame_grid**2 + key_grid**2

The student is sized for the issue-6 latency goals on a 2-core CPU (13 masks per clip); the teacher
for accuracy within about an hour of CPU training on ~2k clips.
"""

from __future__ import annotations

import copy

PRESETS: dict[str, dict] = {
    "student": {
        "d_model": 192,
        "num_heads": 6,
        "mlp_ratio": 2.0,
        "context_depth": 3,
        "decoder_depth": 2,
        "dropout": 0.0,
        "frame_size": 64,
        "frame_stages": [[24, 4], [48, 2], [96, 2], [192, 2]],        # 64 px -> 2x2 tokens/frame
        "key_size": 128,
        "key_stages": [[24, 4], [48, 2], [48, 1], [96, 2], [96, 1]],  # 128 px -> 8x8 tokens
        "mask_stages": [[24, 4], [48, 2], [96, 2], [192, 2]],         # 128 px -> 4x4 tokens/mask
        "audio_channels": 128,
        "audio_strides": [5, 5],                                       # 50 frames/s -> 2 tokens/s
        "text_tokens": 1,
        "grounding_channels": 48,
        "grounding_stages": [[24, 2], [48, 2]],                       # 128 px -> 32x32 map
        "key_motion": True,
    },
    "teacher": {
        # Sized so that ~5 epochs of ~1,450 expressions fit in 45 minutes of this 2-core CPU: a
        # wider, deeper trunk than the student (and an 8x8 key-frame grid), the same cheap
        # stride-4 stems (the stride-2 stems cost 3x the step time for little gain).
        "d_model": 256,
        "num_heads": 8,
        "mlp_ratio": 4.0,
        "context_depth": 4,
        "decoder_depth": 2,
        "dropout": 0.0,
        "frame_size": 64,
        "frame_stages": [[32, 4], [64, 2], [128, 2], [256, 2]],            # 64 px -> 2x2 tokens/frame
        "key_size": 128,
        "key_stages": [[32, 4], [64, 2], [64, 1], [128, 2], [128, 1]],    # 128 px -> 8x8 tokens
        "mask_stages": [[32, 4], [64, 2], [128, 2], [256, 2]],            # 128 px -> 4x4 tokens/mask
        "audio_channels": 256,
        "audio_strides": [5, 5],
        "text_tokens": 2,
        "grounding_channels": 64,
        "grounding_stages": [[32, 2], [64, 2]],                       # 128 px -> 32x32 map
        "key_motion": True,
    },
}


def preset(name: str) -> dict:
    """A deep copy of preset ``name`` (callers may edit it freely)."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])
