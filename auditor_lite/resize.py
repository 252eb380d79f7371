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

Two routes to the same integers. :func:`area_mean_uint8` / :func:`mask_coverage_at_least` (the
reference the tests pin) take both passes on integers; their second pass (over columns) works on
``(..., W, 3)`` views whose innermost run is 3 values long, and costs as much as the first. The fast
route (:func:`area_means`, :func:`masks_inside`; what :mod:`auditor_lite.preprocess` uses) takes
the row pass the same way (on the frames as ``(H, W * 3)`` bytes: innermost runs of ``W * 3``) with
fewer calls, then does the column pass as small matrix products in float32 on the row sums, a few
rows at a time (the float copy stays in cache; there is never a float image at full resolution,
and each product stays under OpenBLAS's threshold for waking its own threads). The weights are the
same whole numbers and every partial sum is an integer below 2**24, so float32 holds it exactly in
whatever order the BLAS adds (float64 past that bound: only sizes sharing a tiny gcd with 128, like
481 x 643); the results are the reference's bit for bit (tests/test_resize.py). Frames and masks
are independent, so ``threads`` shares them over a small pool (numpy and the BLAS release the GIL).

Measured side by side (bench/preprocess_speed.py, 2-core AMD EPYC, load average ~1, p50): 10
frames at 720p 16.9 ms on the reference route, 10.6 ms on the fast one, 8.3 ms on 2 threads; 13
masks 4.1 / 3.4 / 3.2 ms; at 1080p frames 25.3 / 16.0 / 9.8 ms, masks 9.5 / 7.1 / 5.2 ms. The row
pass (reading every byte once, adding in uint16) is about two thirds of it.

Pillow is no shortcut: its ``BOX`` filter weights each input pixel 1 or 0 by where its centre
falls (not by the area it covers) and rounds to uint8 after each pass, so at 720p it is off by up
to 21 grey levels (mean 1.6) on the benchmark's clip, and flips 280 of its 13 x 128 x 128 mask
pixels (248 of them exact half-coverage ties, thresholded at 128/255);
and with its RGB -> RGBX conversion it is slower here (22 ms for 720p frames, 44 ms at 1080p).
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

from auditor_lite.parallel import in_shares, worker_count


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


# --- The fast route: the same integer sums, bit for bit ---------------------------------------------
FLOAT32_EXACT = 1 << 24          # integers below this are exact in float32, and so are their sums
COLUMN_CHUNK = 64                # row-pass rows converted to float at a time (stays in the cache)
# Every product stays at most this many multiply-adds (m * n * k), under OpenBLAS's threshold for
# going multi-threaded (65536 x GEMM_MULTITHREAD_THRESHOLD 4): its worker threads spin after a
# call and took the cores from ONNX Runtime's (as the log-mel's product did: preprocess.py).
# Measured: with 64-row chunks (737,280 per product) the BLAS worker ran through the next graph
# run and 15 audits of a 720p clip took 2.7 s instead of 1.2 s (2 cores, loaded).
BLAS_ONE_THREAD_MNK = 1 << 18
PERIODIC_MAX_OUTPUTS = 8         # column periods of at most this many outputs: one batched product
BAND_OUTPUTS = 8                 # otherwise, bands of this many output columns
PARALLEL_MIN_BYTES = 2 << 20     # smaller inputs are resized on the calling thread (a hand-off costs more)


def _row_sums(x: np.ndarray, n_out: int, dtype) -> tuple[np.ndarray, int]:
    """uint8 ``(B, H, R)`` -> ``(B, n_out, R)`` area sums over rows (times q, as :func:`_axis_sums`
    along axis 1), with fewer passes: the first two whole rows are added in one call, and the
    partial rows of an output without whole rows are multiplied straight into it."""
    b, n_in, r = x.shape
    p, q, plan = _axis_plan(n_in, n_out)
    periods = n_in // p
    xv = x.reshape(b, periods, p, r)
    out = np.empty((b, periods, q, r), dtype)
    scratch = None
    for j, terms in plan:
        target = out[:, :, j]
        whole = [k for k, w in terms if w == q]
        partial = [(k, w) for k, w in terms if w != q]
        if len(whole) >= 2:
            np.add(xv[:, :, whole[0]], xv[:, :, whole[1]], out=target, dtype=dtype)
            for k in whole[2:]:
                np.add(target, xv[:, :, k], out=target, dtype=dtype)
        elif whole:
            np.copyto(target, xv[:, :, whole[0]], casting="unsafe")
        if whole and q != 1:
            np.multiply(target, q, out=target, dtype=dtype)
        for i, (k, w) in enumerate(partial):
            if i == 0 and not whole:
                np.multiply(xv[:, :, k], w, out=target, dtype=dtype)
                continue
            if scratch is None:
                scratch = np.empty(target.shape, dtype)
            np.multiply(xv[:, :, k], w, out=scratch, dtype=dtype)
            np.add(target, scratch, out=target)
    return out.reshape(b, periods * q, r), p


@lru_cache(maxsize=64)
def _column_plan(n_in: int, n_out: int, channels: int, float_name: str) -> tuple:
    """The column pass as matrix products: ``(p, "periodic", weights)`` with weights
    ``(p * C, q * C)`` for one period (every period alike), or ``(p, "bands", ((k0, k1, j0, j1,
    weights), ...))`` for bands of output columns. Weights are the overlaps of :func:`_axis_plan`."""
    p, q, _ = _axis_plan(n_in, n_out)
    eye = np.eye(channels)

    def overlaps(k0, k1, j0, j1):          # input k covers [kq, (k+1)q), output j [jp, (j+1)p)
        k = np.arange(k0, k1)[:, None]
        j = np.arange(j0, j1)[None, :]
        w = np.minimum((k + 1) * q, (j + 1) * p) - np.maximum(k * q, j * p)
        return np.kron(np.maximum(w, 0), eye).astype(float_name)

    if q <= PERIODIC_MAX_OUTPUTS:
        return p, "periodic", overlaps(0, p, 0, q)
    bands = []
    for j0 in range(0, n_out, BAND_OUTPUTS):
        j1 = min(j0 + BAND_OUTPUTS, n_out)
        k0, k1 = j0 * p // q, min(n_in, -(-j1 * p // q))
        bands.append((k0, k1, j0, j1, overlaps(k0, k1, j0, j1)))
    return p, "bands", tuple(bands)


def _column_sums(rows: np.ndarray, n_out: int, channels: int, float_dtype) -> tuple[np.ndarray, int]:
    """Integer row sums ``(M, W * C)`` -> float ``(M, n_out * C)`` area sums over columns (times
    q_x), exact while they stay below the float type's integer range (the caller checks)."""
    m, width = rows.shape
    p, kind, plan = _column_plan(width // channels, n_out, channels, np.dtype(float_dtype).name)
    out = np.empty((m, n_out * channels), float_dtype)
    if kind == "periodic":                               # multiply-adds per row of the chunk
        per_row = (width // plan.shape[0]) * plan.size
    else:
        per_row = max(weights.size for *_, weights in plan)
    chunk = max(1, min(COLUMN_CHUNK, m, BLAS_ONE_THREAD_MNK // per_row))
    buffer = np.empty((chunk, width), float_dtype)
    for a in range(0, m, chunk):
        b = min(a + chunk, m)
        part = buffer[:b - a]
        np.copyto(part, rows[a:b], casting="unsafe")
        if kind == "periodic":
            np.matmul(part.reshape(-1, plan.shape[0]), plan, out=out[a:b].reshape(-1, plan.shape[1]))
        else:
            for k0, k1, j0, j1, weights in plan:
                out[a:b, j0 * channels:j1 * channels] = part[:, k0 * channels:k1 * channels] @ weights
    return out, p


def _in_parallel(work, count: int, threads: int | None, nbytes: int) -> None:
    """``work(start, stop)`` over ``range(count)`` in up to ``threads`` contiguous shares
    (:func:`auditor_lite.parallel.in_shares`); inputs under ``PARALLEL_MIN_BYTES`` (``nbytes``) stay
    on the calling thread (a hand-off costs more)."""
    in_shares(work, count, worker_count(threads) if nbytes >= PARALLEL_MIN_BYTES else 1)


def _items(images, ndim: int, what: str) -> tuple[list | np.ndarray, tuple]:
    """An ``(N, ...)`` array, or a sequence of equally shaped arrays (no stacked copy is made)."""
    if isinstance(images, np.ndarray):
        if images.ndim != ndim + 1:
            raise ValueError(f"{what}: expected {ndim + 1} dimensions, got shape {images.shape}")
        return images, images.shape[1:]
    items = [np.asarray(i) for i in images]
    shapes = {i.shape for i in items}
    if len(shapes) != 1 or len(next(iter(shapes))) != ndim:
        raise ValueError(f"{what}: expected equally shaped {ndim}-D arrays, got {sorted(shapes)}")
    return items, items[0].shape


def _batch(items, start: int, stop: int, dtype) -> np.ndarray:
    """Items ``start:stop`` as one ``(n, H, R)`` array: a view of an array's slice, or one item."""
    part = items[start:stop] if isinstance(items, np.ndarray) else np.asarray(items[start])[None]
    if part.dtype != dtype:
        raise ValueError(f"expected {np.dtype(dtype).name} arrays, got {part.dtype}")
    return part.reshape(part.shape[0], part.shape[1], -1)


def area_means(images, height: int, width: int, *, threads: int | None = 1, scale: float | None = None,
               channels_first: bool = False) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` images (or a list of ``(H, W, C)``) -> float32 ``(N, height, width,
    C)`` area means: :func:`area_mean_uint8`'s numbers bit for bit, faster (module docstring).

    ``scale``: multiply by ``float32(scale)`` afterwards (one more rounding, as
    ``area_mean_uint8(...) * np.float32(scale)``); ``channels_first``: return ``(N, C, height,
    width)``; ``threads``: share the images over up to that many threads (at most the CPUs)."""
    items, (h_in, w_in, channels) = _items(images, 3, "area_means")
    n = len(items)
    out = np.empty((n, channels, height, width) if channels_first else (n, height, width, channels), np.float32)
    factor = None if scale is None else np.float32(scale)
    if (h_in, w_in) == (height, width):                 # the pixels as they are (then scaled)
        for i in range(n):
            target = out[i].transpose(1, 2, 0) if channels_first else out[i]
            source = np.asarray(items[i])
            if source.dtype != np.uint8:
                raise ValueError(f"area_means: expected uint8 images, got {source.dtype}")
            if factor is None:
                np.copyto(target, source)
            else:
                np.multiply(source, factor, out=target, dtype=np.float32)
        return out
    p_y, p_x = _axis_plan(h_in, height)[0], _axis_plan(w_in, width)[0]
    middle = np.uint16 if 255 * p_y <= 65535 else np.uint32
    exact32 = 255 * p_y * p_x < FLOAT32_EXACT
    denominator = (np.float32 if exact32 else np.float64)(p_y * p_x)

    def work(start: int, stop: int) -> None:
        for first in range(start, stop) if isinstance(items, list) else (start,):
            last = first + 1 if isinstance(items, list) else stop
            x = _batch(items, first, last, np.uint8)
            rows, _ = _row_sums(x, height, middle)
            sums, _ = _column_sums(rows.reshape(-1, w_in * channels), width, channels,
                                   np.float32 if exact32 else np.float64)
            # float32 / float32 is correctly rounded, as the reference's float64 division then
            # float32 rounding is for these integers (no double-rounding case below 2**24)
            means = np.divide(sums, denominator, out=sums if exact32 else None).astype(np.float32, copy=False)
            means = means.reshape(-1, height, width, channels)
            target = out[first:last]
            if channels_first:
                target = target.transpose(0, 2, 3, 1)
            if factor is None:
                target[...] = means
            else:
                np.multiply(means, factor, out=target)

    _in_parallel(work, n, threads, n * h_in * w_in * channels)
    return out


def masks_inside(masks, height: int, width: int, fraction: float = 0.5, *, threads: int | None = 1) -> np.ndarray:
    """bool ``(N, H, W)`` masks (or a list of ``(H, W)``) -> bool ``(N, height, width)``: the pixels
    whose exact covered area is at least ``fraction``; :func:`mask_coverage_at_least`'s answer bit
    for bit (non-canonical bool bytes count as True), faster (module docstring)."""
    items, (h_in, w_in) = _items(masks, 2, "masks_inside")
    n = len(items)
    out = np.empty((n, height, width), bool)
    p_y, p_x = _axis_plan(h_in, height)[0], _axis_plan(w_in, width)[0]
    middle = np.uint8 if p_y <= 255 else (np.uint16 if p_y <= 65535 else np.uint32)
    float_dtype = np.float32 if p_y * p_x < FLOAT32_EXACT else np.float64
    denominator = p_y * p_x

    def work(start: int, stop: int) -> None:
        for first in range(start, stop) if isinstance(items, list) else (start,):
            last = first + 1 if isinstance(items, list) else stop
            x = _batch(items, first, last, bool).view(np.uint8)
            if x.size and x.max() > 1:                   # bool bytes other than 0/1: count them as 1
                x = np.not_equal(x, 0).view(np.uint8)
            if (h_in, w_in) == (height, width):
                out[first:last] = x.reshape(-1, height, width).view(bool)
                continue
            rows, _ = _row_sums(x, height, middle)
            sums, _ = _column_sums(rows.reshape(-1, w_in), width, 1, float_dtype)
            sums = sums.reshape(-1, height, width)
            if fraction == 0.5:
                np.greater_equal(2 * sums, denominator, out=out[first:last])
            else:
                np.greater_equal(sums, fraction * denominator, out=out[first:last])

    _in_parallel(work, n, threads, n * h_in * w_in)
    return out
