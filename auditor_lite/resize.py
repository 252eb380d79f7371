"""Exact area resize of uint8 images and boolean masks on integers: real-resolution inputs, fast.

A 720p clip is 10 frames of 1280 x 720 x 3 bytes plus a dozen 1280 x 720 masks; the model reads
them at 128 x 128. The float area resize (:func:`auditor_lite.preprocess.area_resize`) converts
every full-resolution pixel to float32 first: 334 ms for such a clip with 13 masks on one core.
Here the sums stay integers, and the first pass (over rows) reads the uint8 bytes directly:
43 ms for the same clip (measured side by side, `bench/preprocess_speed.py`).

Why exact: resizing ``n_in`` to ``n_out`` samples, with ``g = gcd(n_in, n_out)``, ``p = n_in / g``
and ``q = n_out / g``, every ``p`` input samples map onto ``q`` output samples, and input sample
``k`` overlaps output sample ``j`` by a whole number ``w_jk`` of ``1/q``-sample units
(``sum_k w_jk = p``). So ``q`` times an output's area sum is an integer, computed exactly in
uint16/uint32; the mean is that sum over ``p_y * p_x``. As float32 it is the correctly rounded mean
(the float resize agrees within its own rounding, ~6e-5 grey levels); a mask pixel is inside when
its exact coverage is at least one half (the float resize decided exact halves by its rounding).
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np


@lru_cache(maxsize=64)
def _axis_plan(n_in: int, n_out: int) -> tuple[int, int, tuple]:
    """``(p, q, rows)``: for each output sample ``j`` of one period, its ``(k, w)`` input terms."""
    g = gcd(n_in, n_out)
    p, q = n_in // g, n_out // g
    rows = []
    for j in range(q):
        lo, hi = j * p, (j + 1) * p                       # the output sample, in 1/q units
        terms = []
        for k in range(lo // q, min(p, -(-hi // q))):
            w = min(hi, (k + 1) * q) - max(lo, k * q)
            if w > 0:
                terms.append((k, w))
        rows.append((j, tuple(terms)))
    return p, q, tuple(rows)


def _axis_sums(x: np.ndarray, axis: int, n_out: int, dtype) -> tuple[np.ndarray, int]:
    """Integer area sums (times q) along ``axis`` to ``n_out`` samples; returns ``(sums, p)``."""
    n_in = x.shape[axis]
    p, q, rows = _axis_plan(n_in, n_out)
    periods = n_in // p
    x = x.reshape(x.shape[:axis] + (periods, p) + x.shape[axis + 1:])
    out = np.empty(x.shape[:axis] + (periods, q) + x.shape[axis + 2:], dtype)
    within = (slice(None),) * (axis + 1)                  # indexes the sample within a period
    scratch = None
    for j, terms in rows:
        target = out[within + (j,)]
        whole = [k for k, w in terms if w == q]           # input samples inside output j entirely
        if whole:
            np.copyto(target, x[within + (whole[0],)], casting="unsafe")
            for k in whole[1:]:
                np.add(target, x[within + (k,)], out=target, dtype=dtype)
            if q != 1:
                np.multiply(target, q, out=target, dtype=dtype)
        else:
            target[...] = 0
        for k, w in terms:
            if w == q:
                continue
            if scratch is None:
                scratch = np.empty(target.shape, dtype)
            np.multiply(x[within + (k,)], w, out=scratch, dtype=dtype)
            np.add(target, scratch, out=target)
    return out.reshape(out.shape[:axis] + (n_out,) + out.shape[axis + 2:]), p


def area_sums(images: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int]:
    """uint8 or bool ``(..., H, W, C)`` -> ``(sums, denominator)``: uint32 ``(..., height, width,
    C)`` integers whose ratio to ``denominator`` is each output pixel's exact area mean."""
    x = np.asarray(images)
    if x.dtype == bool:                                   # bool bytes may be non-canonical: 0/1 first
        x = np.not_equal(x.view(np.uint8), 0).view(np.uint8)
    elif x.dtype != np.uint8:
        raise ValueError(f"area_sums: expected uint8 or bool images, got {x.dtype}")
    p_y = _axis_plan(x.shape[-3], height)[0]
    # the row pass's sums reach 255 * p_y (1 * p_y for masks): the narrowest type that holds them
    limit = p_y if images.dtype == bool else 255 * p_y
    middle = np.uint8 if limit <= 255 else (np.uint16 if limit <= 65535 else np.uint32)
    rows, p_y = _axis_sums(x, x.ndim - 3, height, middle)
    sums, p_x = _axis_sums(rows, x.ndim - 2, width, np.uint32)
    return sums, p_y * p_x


def area_mean_uint8(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``(..., H, W, C)`` -> float32 ``(..., height, width, C)``: exact area means, correctly
    rounded to float32 (unchanged pixels when the size is the same)."""
    images = np.asarray(images)
    if images.shape[-3:-1] == (height, width):
        return images.astype(np.float32)
    sums, denominator = area_sums(images, height, width)
    return (sums / np.float64(denominator)).astype(np.float32)


def mask_coverage_at_least(masks: np.ndarray, height: int, width: int, fraction: float = 0.5) -> np.ndarray:
    """bool ``(N, H, W)`` -> bool ``(N, height, width)``: the output pixels whose exact covered
    area is at least ``fraction`` (a rational comparison on integers; no float mask is made)."""
    masks = np.asarray(masks)
    if masks.shape[-2:] == (height, width):
        return masks.astype(bool)
    sums, denominator = area_sums(masks[..., None], height, width)
    if fraction == 0.5:
        return 2 * sums[..., 0].astype(np.int64) >= denominator
    return sums[..., 0] >= fraction * denominator
