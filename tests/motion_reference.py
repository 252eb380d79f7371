"""The first (slower) numpy block matching, frozen: ``auditor_lite.motion.cell_flows`` must stay
bit-identical to it, since the shipped grounder was trained on these exact features
(tests/test_motion.py); ``cell_motion``'s post-processing of the flows did not change."""

from __future__ import annotations

import numpy as np

from auditor_lite.motion import CELL, LEVELS, PAD, _parabola  # noqa: F401  (shared settings and formula)


def _pyramid(grey: np.ndarray) -> list[np.ndarray]:
    """(T, S, S) -> one padded copy per level, flattened per frame: (T, (S/f + 2 PAD)^2)."""
    levels = []
    for factor, _, _ in LEVELS:
        t, s = grey.shape[0], grey.shape[1] // factor
        img = grey.reshape(t, s, factor, s, factor).mean((2, 4)) if factor > 1 else grey
        levels.append(np.pad(img, ((0, 0), (PAD, PAD), (PAD, PAD)), mode="edge").reshape(t, -1))
    return levels


def _offsets(side: int, start: int, stride: int) -> np.ndarray:
    d = np.arange(start, start + side)
    return (d[:, None] * stride + d[None, :]).ravel()


def _match(src: np.ndarray, dst: np.ndarray, a: np.ndarray, guess: np.ndarray, size: int,
           win: int, radius: int):
    """Blocks of the flattened padded frames ``src`` (M, P) centred at integer ``a`` (M, N, 2),
    searched in ``dst`` (M, P) within ``radius`` of ``guess`` (M, N, 2). Returns the integer best
    position (M, N, 2), its sub-pixel correction and the mean absolute difference there (M, N)."""
    m, n = a.shape[:2]
    stride = size + 2 * PAD
    span, side = win + 2 * radius, 2 * radius + 1
    a = np.clip(a, 0, size - 1)
    guess = np.clip(guess, 0, size - 1)
    frame = (np.arange(m) * src.shape[1])[:, None]
    base_a = (frame + (a[..., 0] + PAD) * stride + a[..., 1] + PAD).reshape(-1)
    base_b = (frame + (guess[..., 0] + PAD) * stride + guess[..., 1] + PAD).reshape(-1)
    # cells on the last axis: every candidate is then a few long contiguous rows
    block = src.reshape(-1)[_offsets(win, -(win // 2), stride)[:, None] + base_a].reshape(win, win, -1)
    region = dst.reshape(-1)[_offsets(span, -(win // 2) - radius, stride)[:, None] + base_b]
    region = region.reshape(span, span, -1)
    cost = np.empty((side * side, m * n), np.float32)
    for c in range(side * side):
        dy, dx = divmod(c, side)
        cost[c] = np.abs(region[dy:dy + win, dx:dx + win] - block).sum((0, 1))
    best = cost.argmin(0)
    iy, ix = best // side, best % side
    cells = np.arange(m * n)
    grid = cost.reshape(side, side, -1)
    sub_y = _parabola(grid[np.maximum(iy - 1, 0), ix, cells], grid[iy, ix, cells], grid[np.minimum(iy + 1, side - 1), ix, cells])
    sub_x = _parabola(grid[iy, np.maximum(ix - 1, 0), cells], grid[iy, ix, cells], grid[iy, np.minimum(ix + 1, side - 1), cells])
    pos = guess + np.stack([iy, ix], -1).reshape(m, n, 2) - radius
    # a minimum on the search border has one neighbour only: no sub-pixel fit there
    sub_y = np.where((iy > 0) & (iy < side - 1), sub_y, 0.0)
    sub_x = np.where((ix > 0) & (ix < side - 1), sub_x, 0.0)
    sub = np.stack([sub_y, sub_x], -1).reshape(m, n, 2)
    return pos, sub, (cost[best, cells] / (win * win)).reshape(m, n)


def cell_flows(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first implementation of ``auditor_lite.motion.cell_flows`` (same contract)."""
    frames = np.asarray(frames, np.float32)
    # the channel mean as two adds and a divide: the same float32 operations, in the same order, as
    # numpy's mean over the 3-wide axis (bit-identical, tested), without its slow small-axis reduce
    # (4.4 of the 21 ms a clip took)
    r, g, b = (frames[..., k] for k in range(3)) if frames.shape[-1] == 3 else (frames[:, k] for k in range(3))
    grey = (r + g + b) / np.float32(3)
    t_count, size = grey.shape[0], grey.shape[-1]
    if size % (CELL * LEVELS[0][0]) or grey.shape[1] != size or t_count < 2:
        raise ValueError(f"frames: at least 2 square frames with a side divisible by "
                         f"{CELL * LEVELS[0][0]} expected, got {grey.shape}")
    levels = _pyramid(grey)
    centres = np.arange(CELL // 2, size, CELL)
    start = np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    src_t = np.r_[np.arange(t_count - 1), np.arange(1, t_count)]         # forward, then backward
    dst_t = np.r_[np.arange(1, t_count), np.arange(t_count - 1)]
    pos = np.broadcast_to(start.astype(np.float32), (len(src_t),) + start.shape)
    shift = None
    for level, (factor, win, radius) in enumerate(LEVELS):
        a = np.rint(pos / factor).astype(np.int64)
        guess = a if shift is None else shift
        best, sub, cost = _match(levels[level][src_t], levels[level][dst_t], a, guess, size // factor,
                                 win, radius)
        shift = best * 2
    flow = (best + sub - a).astype(np.float32)
    return flow.reshape(2, t_count - 1, -1, 2), cost.reshape(2, t_count - 1, -1)
