"""Turn decoded media into the model's input arrays. numpy only: the edge runtime (no torch) uses it.

Definitions (the model was trained on exactly these; change them only with a retrain):

* Pixels: RGB ``uint8`` scaled by :data:`PIXEL_SCALE` to ``[0, 1]``. No mean/std normalisation:
  every image branch starts with a convolution followed by BatchNorm, which learns that affine.
* Resizing: area averaging (each output pixel is the mean of the input area it covers, like
  OpenCV's ``INTER_AREA``), the same for frames, key frame and masks. Images are squashed to a
  square (no crop, no letterbox): frames and masks are resized the same way, so they stay aligned.
* Masks: boolean ``(H, W)``; after area resizing a pixel is inside when at least
  :data:`MASK_THRESHOLD` of its area was inside (so an unchanged size is an exact copy).
* Audio: float32 mono at :data:`SAMPLE_RATE`; zero-padded at the end or cut to :data:`CLIP_SAMPLES`.
  No resampling here: other rates are an error (resample when decoding).

Layouts (B = 1 clip, N masks): frames ``(1, 10, 3, S, S)``, key frame ``(1, 3, K, K)``, masks
``(N, 1, K, K)``, audio ``(1, CLIP_SAMPLES)``, text embedding ``(1, 384)``; all float32. ``S`` and
``K`` are the config's ``frame_size`` and ``key_size`` (``config.json`` of a checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from auditor_lite.data.schema import CLIP_SAMPLES, NUM_FRAMES, SAMPLE_RATE

PIXEL_SCALE = 1.0 / 255.0
MASK_THRESHOLD = 0.5
TEXT_EMBEDDING_DIM = 384


def _block_mean(x: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Integer-factor area resize of ``(..., H, W, C)``: the mean of each ``fy x fx`` block.

    Summing the ``fy * fx`` strided views is several times faster than ``reshape(...).mean(axes)``,
    which matters: the clip's 10 frames are resized on every new clip of the runtime.
    """
    total = np.array(x[..., 0::fy, 0::fx, :], dtype=np.float32)
    for dy in range(fy):
        for dx in range(fx):
            if dy or dx:
                total += x[..., dy::fy, dx::fx, :]
    total *= np.float32(1.0 / (fy * fx))
    return total


def _area_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area-average one axis to ``n_out`` samples for any ratio (up or down), exactly.

    Output ``i`` is the mean of the piecewise-constant input over ``[e_i, e_i+1)`` with
    ``e_i = i * n_in / n_out``: the whole pixels from ``ceil(e_i)`` to ``ceil(e_i+1)`` (one
    ``add.reduceat`` pass), plus the part of the pixel cut by ``e_i`` that lies right of it, minus
    the part of the pixel cut by ``e_i+1`` that lies right of that edge.
    """
    x = np.moveaxis(x, axis, 0)
    n_in = x.shape[0]
    edges = np.arange(n_out + 1) * (n_in / n_out)
    first_whole = np.minimum(np.ceil(edges - 1e-9).astype(int), n_in)  # first pixel right of edge
    cut = np.minimum(np.floor(edges + 1e-9).astype(int), n_in - 1)     # pixel holding the edge
    whole = np.add.reduceat(x, np.minimum(first_whole[:-1], n_in - 1), axis=0, dtype=np.float32)
    whole[first_whole[1:] <= first_whole[:-1]] = 0  # reduceat yields x[start] for empty segments
    right_of_edge = (first_whole - edges).clip(0, 1).astype(np.float32)
    partial = x[cut].astype(np.float32) * right_of_edge.reshape(-1, *[1] * (x.ndim - 1))
    out = (whole + partial[:-1] - partial[1:]) * np.float32(n_out / n_in)
    return np.moveaxis(out, 0, axis)


def area_resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average ``(..., H, W, C)`` images to ``(..., height, width, C)`` float32.

    Each output pixel is the mean of the input area it covers (fractional pixels weighted by the
    covered fraction), like OpenCV's ``INTER_AREA`` when shrinking.
    """
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"area_resize: expected (..., H, W, C) images, got shape {images.shape}")
    h_in, w_in = images.shape[-3], images.shape[-2]
    if (h_in, w_in) == (height, width):
        return images.astype(np.float32)
    if h_in % height == 0 and w_in % width == 0 and (h_in // height) * (w_in // width) <= 16:
        return _block_mean(images, h_in // height, w_in // width)
    return _area_axis(_area_axis(images, height, images.ndim - 3), width, images.ndim - 2)


def _rgb_uint8(name: str, array, ndim: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim or array.shape[-1] != 3 or array.dtype != np.uint8:
        want = "(10, H, W, 3)" if ndim == 4 else "(H, W, 3)"
        raise ValueError(f"{name}: expected uint8 RGB {want}, got {array.dtype} {array.shape}")
    return array


def prepare_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(10, H, W, 3)`` clip frames -> float32 ``(1, 10, 3, size, size)`` in [0, 1]."""
    frames = _rgb_uint8("frames", frames, 4)
    if frames.shape[0] != NUM_FRAMES:
        raise ValueError(f"frames: expected {NUM_FRAMES} frames, got {frames.shape[0]}")
    x = area_resize(frames, size, size) * np.float32(PIXEL_SCALE)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)[None])


def prepare_key_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` audited frame -> float32 ``(1, 3, size, size)`` in [0, 1].

    In image mode this is the clip's key frame; in video mode, the frame being audited.
    """
    frame = _rgb_uint8("key_frame", frame, 3)
    x = area_resize(frame, size, size) * np.float32(PIXEL_SCALE)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def prepare_masks(masks: np.ndarray | Sequence[np.ndarray], size: int) -> np.ndarray:
    """Boolean masks ``(N, H, W)`` (or a list of ``(H, W)``) -> float32 ``(N, 1, size, size)`` in {0, 1}."""
    if isinstance(masks, np.ndarray):
        stack = masks[None] if masks.ndim == 2 else masks
    else:
        if len(masks) == 0:
            raise ValueError("masks: need at least one mask")
        shapes = {np.shape(m) for m in masks}
        if len(shapes) != 1:
            raise ValueError(f"masks: all masks must have the same size, got {sorted(shapes)}")
        stack = np.stack([np.asarray(m) for m in masks])
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"masks: expected (N, H, W) or (H, W) masks, got shape {np.shape(masks)}")
    coverage = area_resize(stack.astype(bool)[..., None], size, size)[..., 0]
    return (coverage >= MASK_THRESHOLD).astype(np.float32)[:, None]


def prepare_audio(wave: np.ndarray, sample_rate: int, num_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """Mono float samples at 16 kHz -> float32 ``(1, num_samples)``, zero-padded or cut at the end."""
    wave = np.asarray(wave)
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio: sample rate {sample_rate} Hz, the model needs {SAMPLE_RATE} Hz "
                         "(resample when decoding)")
    if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"audio: expected 1-D float mono samples, got {wave.dtype} {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("audio: samples contain NaN or infinity")
    out = np.zeros((1, num_samples), dtype=np.float32)
    keep = min(len(wave), num_samples)
    out[0, :keep] = wave[:keep]
    return out


def prepare_text_embedding(embedding: np.ndarray) -> np.ndarray:
    """A MiniLM sentence embedding ``(384,)`` or ``(1, 384)`` -> float32 ``(1, 384)``."""
    x = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
    if x.shape[1] != TEXT_EMBEDDING_DIM or not np.all(np.isfinite(x)):
        raise ValueError(f"text_embedding: expected {TEXT_EMBEDDING_DIM} finite values, "
                         f"got shape {np.shape(embedding)}")
    return x
