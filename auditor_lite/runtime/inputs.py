"""Validate what a caller hands the auditor, before any of it reaches a graph.

The graphs accept any float tensor of the right shape, so a NaN frame, stereo audio or a soft
probability map given as a "mask" would produce a confident, silently wrong answer. Every check
here raises :class:`InputError` naming the argument (and the frame or mask index) instead.

Rules (the runtime's documented choices; docs/runtime.md section 3):

* frames: 10 RGB frames, ``uint8`` (10, H, W, 3), or float in [0, 1] (converted to uint8 by
  ``round(255 x)``); H and W at least :data:`MIN_SIDE`; finite.
* audio (low-level API): 1-D float mono at exactly 16 kHz in [-1, 1], finite, at least
  :data:`MIN_AUDIO_SECONDS` long (shorter than 10 s is zero-padded at the end, longer is cut), and
  not silent (peak below :data:`SILENCE_PEAK`) unless ``allow_silent=True``. Files are decoded,
  mixed down and resampled by :mod:`auditor_lite.runtime.files`, not here.
* masks: one (H, W) or a list / (N, H, W) array, the size of the frame; ``bool``, or numbers whose
  values are {0, 1} or {0, 255}. Empty masks are legal (the model was trained with empty ``null``
  candidates) and reported back so the explanation can flag them.
* expression: a non-blank string of at most :data:`MAX_EXPRESSION_CHARS` characters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from auditor_lite.data.schema import NUM_FRAMES, SAMPLE_RATE
from auditor_lite.preprocess import prepare_audio

MIN_SIDE = 8                   # smaller frames carry no usable picture (the benchmark's are >= 128)
MIN_AUDIO_SECONDS = 1.0        # shorter than this is not a clip's soundtrack but a glitch
SILENCE_PEAK = 1e-4            # -80 dBFS: below the PCM16 noise floor of any real recording
MAX_EXPRESSION_CHARS = 1000    # a referring expression is ~8 words; 1000 characters is not one


class InputError(ValueError):
    """An argument of an audit call is unusable; the message starts with the argument's name."""

    def __init__(self, argument: str, message: str):
        self.argument = argument
        self.message = message          # without the argument's name: callers that know the file use it
        super().__init__(f"{argument}: {message}")

    @property
    def mask_index(self) -> int:
        """The position ``masks[i]`` names in the list of masks (0 when the error is about all of them)."""
        return int(self.argument[6:-1]) if self.argument.startswith("masks[") else 0


def _pixels(array: np.ndarray, argument: str) -> np.ndarray:
    """uint8 pixels as they are; float pixels in [0, 1] as ``round(255 x)``; anything else refused."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
        if not finite.all():
            where = f"frame {int(np.argmin(finite))}" if argument == "frames" else "the frame"
            raise InputError(argument, f"{where} contains NaN or infinity")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InputError(argument, f"float pixels must lie in [0, 1], got values in "
                             f"[{low:.3g}, {high:.3g}] (pass uint8 for 0..255 pixels)")
        return np.rint(array * 255.0).astype(np.uint8)
    raise InputError(argument, f"expected uint8 (0..255) or float (0..1) pixels, got {array.dtype}")


def _check_size(height: int, width: int, argument: str) -> None:
    if min(height, width) < MIN_SIDE:
        raise InputError(argument, f"frames are {width}x{height}; need at least {MIN_SIDE}x{MIN_SIDE} pixels")


def check_frames(frames) -> np.ndarray:
    """The clip's frames as uint8 ``(10, H, W, 3)``; InputError naming the problem otherwise."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise InputError("frames", f"expected {NUM_FRAMES} RGB frames shaped ({NUM_FRAMES}, H, W, 3), "
                         f"got shape {array.shape}")
    if array.shape[0] != NUM_FRAMES:
        raise InputError("frames", f"expected {NUM_FRAMES} frames (10 s at 1 fps), got {array.shape[0]}")
    _check_size(*array.shape[1:3], "frames")
    return _pixels(array, "frames")


def check_frame(frame) -> np.ndarray:
    """One RGB frame as uint8 ``(H, W, 3)`` (streaming: ``ClipSession.push_frame``)."""
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise InputError("frame", f"expected one RGB frame shaped (H, W, 3), got shape {array.shape}")
    _check_size(*array.shape[:2], "frame")
    return _pixels(array[None], "frame")[0]


def check_frame_index(frame_index) -> int:
    if isinstance(frame_index, (bool, np.bool_)) or not isinstance(frame_index, (int, np.integer)):
        raise InputError("frame_index", f"expected an integer 0..{NUM_FRAMES - 1}, got {frame_index!r}")
    if not 0 <= int(frame_index) < NUM_FRAMES:
        raise InputError("frame_index", f"{int(frame_index)} is outside 0..{NUM_FRAMES - 1}")
    return int(frame_index)


def check_audio(wave, sample_rate: int = SAMPLE_RATE, *, allow_silent: bool = False) -> np.ndarray:
    """Mono 16 kHz samples -> float32 ``(CLIP_SAMPLES,)``, zero-padded or cut at the end."""
    if sample_rate != SAMPLE_RATE:
        raise InputError("audio", f"sample rate {sample_rate} Hz; the model needs {SAMPLE_RATE} Hz "
                         "(auditor_lite.runtime.files.load_audio_file resamples a file)")
    array = np.asarray(wave)
    if array.ndim == 2 and min(array.shape) <= 8:
        raise InputError("audio", f"got {min(array.shape)} channels (shape {array.shape}); pass mono 1-D "
                         "samples (e.g. wave.mean(axis=1)) -- load_audio_file mixes a file down")
    if array.ndim != 1:
        raise InputError("audio", f"expected 1-D mono samples, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError("audio", f"expected float samples in [-1, 1], got {array.dtype} "
                         "(divide PCM16 by 32768)")
    if not np.all(np.isfinite(array)):
        raise InputError("audio", "samples contain NaN or infinity")
    seconds = len(array) / SAMPLE_RATE
    if seconds < MIN_AUDIO_SECONDS:
        raise InputError("audio", f"{seconds:.2f} s is too short; a clip needs at least "
                         f"{MIN_AUDIO_SECONDS:g} s (up to 10 s, shorter is zero-padded)")
    peak = float(np.abs(array).max())
    if peak > 1.0:
        raise InputError("audio", f"samples must lie in [-1, 1], peak is {peak:.3g}")
    if peak < SILENCE_PEAK and not allow_silent:
        raise InputError("audio", f"the audio is silent (peak {peak:.1e}); pass allow_silent=True "
                         "(--allow-silent on the command line) to audit a silent clip on purpose "
                         "(the auditor then has no sound cue)")
    return prepare_audio(array, SAMPLE_RATE)[0]      # the one place that pads or cuts to 10 s


def _binary(mask: np.ndarray, index: int) -> np.ndarray:
    if mask.dtype == bool:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise InputError(f"masks[{index}]", f"expected a bool or numeric mask, got {mask.dtype}")
    if mask.dtype == np.uint8:      # the ROS mono8 case: a histogram is 4x faster than sorting
        values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).astype(np.uint8)
    else:
        values = np.unique(mask)
    if values.size and not np.all(np.isfinite(values.astype(np.float64))):
        raise InputError(f"masks[{index}]", "contains NaN or infinity")
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        shown = ", ".join(f"{v:g}" for v in values[:6].astype(np.float64)) + (", ..." if values.size > 6 else "")
        raise InputError(f"masks[{index}]", f"not a binary mask (values {shown}); expected bool, 0/1 or "
                         "0/255 -- threshold a soft mask or probability map first")
    return mask != 0


def check_masks(masks, frame_shape: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """Candidate masks as bool ``(N, H, W)`` and the indices of the empty ones.

    ``frame_shape`` is the (H, W) of the frame the masks belong to; every mask must match it.
    A bool ``(N, H, W)`` array of that size is returned as it is (stacking a copy of 13 masks
    costs 1 ms at 720p, 3 ms at 1080p); nothing downstream writes to it.
    """
    if (isinstance(masks, np.ndarray) and masks.dtype == bool and masks.ndim == 3 and len(masks)
            and masks.shape[1:] == tuple(frame_shape)):
        return masks, [i for i in range(len(masks)) if not masks[i].any()]
    if isinstance(masks, np.ndarray):
        items = [masks] if masks.ndim == 2 else list(masks) if masks.ndim == 3 else None
        if items is None:
            raise InputError("masks", f"expected (H, W) or (N, H, W), got shape {masks.shape}")
    elif isinstance(masks, Sequence) and not isinstance(masks, (str, bytes)):
        items = list(masks)
    else:
        raise InputError("masks", f"expected an array or a list of (H, W) masks, got {type(masks).__name__}")
    if not items:
        raise InputError("masks", "no masks given; pass at least one candidate")
    checked = []
    for index, item in enumerate(items):
        mask = np.asarray(item)
        if mask.ndim != 2:
            raise InputError(f"masks[{index}]", f"expected a 2-D (H, W) mask, got shape {mask.shape}")
        if mask.shape != tuple(frame_shape):
            raise InputError(f"masks[{index}]", f"is {mask.shape[1]}x{mask.shape[0]} but its frame is "
                             f"{frame_shape[1]}x{frame_shape[0]}; masks must have the frame's size")
        checked.append(_binary(mask, index))
    stack = np.stack(checked)
    empty = [i for i in range(len(stack)) if not stack[i].any()]
    return stack, empty


def check_expression(expression) -> str:
    """The expression, stripped; InputError when it is not text, blank, has no letter or digit in
    any script, or is implausibly long."""
    if not isinstance(expression, str):
        raise InputError("expression", f"expected text, got {type(expression).__name__}")
    text = expression.strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:   # a lone surrogate: the tokenizer would raise a TypeError
        raise InputError("expression", f"is not valid Unicode (character {exc.start}: "
                         f"{text[exc.start]!r}); pass UTF-8 text") from None
    if not text:
        raise InputError("expression", "is empty; give the referring expression, e.g. "
                         "'the dog barking on the left'")
    if not any(c.isalnum() for c in text):   # only punctuation, emoji or invisible characters
        raise InputError("expression", f"has no letters or digits ({text[:20]!r}); give the referring "
                         "expression, e.g. 'the dog barking on the left'")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InputError("expression", f"{len(text)} characters is too long for a referring expression "
                         f"(limit {MAX_EXPRESSION_CHARS}); give the phrase that names the object")
    return text
