"""Cell motion (auditor_lite.motion): block-matched flows and the vibration they reveal."""

import numpy as np
import pytest

from auditor_lite.motion import (ACCEL_SCALE, CELL, NUM_MOTION_FEATURES, VELOCITY_SCALE, cell_flows, cell_motion,
                             motion_from_flows)

SIZE = 128


def _texture(rng, side: int, blobs: int) -> np.ndarray:
    """Smooth random grey texture (bilinear-upsampled noise): structure at every pyramid level."""
    from PIL import Image

    noise = Image.fromarray(rng.integers(0, 256, (blobs, blobs)).astype(np.uint8))
    return np.asarray(noise.resize((side, side), Image.BILINEAR))[..., None].repeat(3, -1)


def _scene(vibrate: float, velocity=(0.0, 3.0), seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A textured 32 px square moving over a textured background; its position alternates by
    ``vibrate`` px from frame to frame on top of the smooth motion. Returns frames and the
    square's top-left corner per frame."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, SIZE, 16)
    square = _texture(rng, 32, 6)
    frames, corners = [], []
    for t in range(10):
        frame = background.copy()
        y = int(round(40 + velocity[0] * t + vibrate * (-1) ** t))
        x = int(round(30 + velocity[1] * t + vibrate * (-1) ** t))
        frame[y:y + 32, x:x + 32] = square
        frames.append(frame)
        corners.append((y, x))
    return np.stack(frames), corners


def _inside_cells(corner: tuple[int, int]) -> np.ndarray:
    """Cells whose whole matching window lies on the square."""
    centres = np.arange(CELL // 2, SIZE, CELL)
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    y, x = corner
    inside = (yy >= y + 6) & (yy < y + 26) & (xx >= x + 6) & (xx < x + 26)
    return inside.reshape(-1)


def test_flows_follow_a_moving_square_and_the_static_background():
    frames, corners = _scene(vibrate=0.0, velocity=(2.0, 3.0))
    flow, residual = cell_flows(frames)
    assert flow.shape == (2, 9, (SIZE // CELL) ** 2, 2) and residual.shape == (2, 9, (SIZE // CELL) ** 2)
    on_square = _inside_cells(corners[4])
    assert on_square.sum() >= 4
    np.testing.assert_allclose(flow[0, 4, on_square], np.tile([2.0, 3.0], (on_square.sum(), 1)), atol=0.35)
    np.testing.assert_allclose(flow[1, 3, _inside_cells(corners[4])], np.tile([-2.0, -3.0], (on_square.sum(), 1)),
                               atol=0.35)
    far = np.zeros(SIZE // CELL, bool)
    far[-3:] = True
    background = np.outer(far, far).reshape(-1)          # bottom-right corner: never covered
    assert np.abs(flow[:, :, background]).max() < 0.35


def test_vibration_separates_a_vibrating_square_from_a_smoothly_moving_one():
    still, corners = _scene(vibrate=0.0)
    shaking, _ = _scene(vibrate=2.0)
    cells = _inside_cells(corners[5])
    calm = cell_motion(still)[1:-1, cells, 0] / ACCEL_SCALE
    vib = cell_motion(shaking)[1:-1, cells, 0] / ACCEL_SCALE
    # the position alternates by +-2 px on both axes: |p(t-1) + p(t+1) - 2 p(t)| = 8 * sqrt(2)
    assert np.median(calm) < 1.0
    assert np.median(vib) > 6.0
    velocity = cell_motion(still)[4, cells, 2:] / VELOCITY_SCALE
    np.testing.assert_allclose(np.median(velocity, 0), [0.0, 3.0], atol=0.35)


def test_cell_motion_layouts_agree_and_bad_frames_are_named():
    frames, _ = _scene(vibrate=1.0)
    hwc = cell_motion(frames)
    chw = cell_motion(frames.transpose(0, 3, 1, 2))
    assert hwc.shape == (10, (SIZE // CELL) ** 2, NUM_MOTION_FEATURES) and hwc.dtype == np.float32
    np.testing.assert_allclose(hwc, chw, atol=1e-5)
    with pytest.raises(ValueError, match="frames"):
        cell_motion(frames[:, :100])
    with pytest.raises(ValueError, match="frames"):
        cell_motion(frames[0])


def test_channel_layouts_give_identical_motion():
    """(T, S, S, 3) and (T, 3, S, S) frames: the same grey image (the channel mean as adds, in
    numpy's own order), hence bit-identical motion features."""
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (10, 64, 64, 3)).astype(np.float32)
    last = cell_motion(frames)
    first = cell_motion(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
    assert np.array_equal(last, first)
    grey_reference = frames.mean(-1)
    assert np.array_equal((frames[..., 0] + frames[..., 1] + frames[..., 2]) / np.float32(3), grey_reference)


@pytest.mark.parametrize("case", ["noise", "shapes", "flat", "nan", "64px"])
def test_bit_identical_to_the_first_implementation(case):
    """The grounder was trained on the first implementation's numbers: the faster one must give the
    same bytes (noise, moving shapes, flat frames with cost ties, NaN frames, another size)."""
    from motion_reference import cell_flows as reference

    rng = np.random.default_rng(7)
    size = 64 if case == "64px" else 128
    frames = rng.integers(0, 256, (10, size, size, 3)).astype(np.float32)
    if case == "shapes":
        frames[:] = 40.0
        for t in range(10):
            y, x = 20 + 2 * t + (t % 2), 30 + 3 * t
            frames[t, y:y + 24, x:x + 30] = (200.0, 90.0, 30.0)
            frames[t, 80:100, 90 - t:110 - t] = 250.0
    elif case == "flat":
        frames[:] = 128.0
        frames[4, 10:20, 10:20] = 129.0
    elif case == "nan":
        frames[3, 5:9, 40:60] = np.nan
    theirs = reference(frames)
    channels_first = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    for ours in (cell_flows(frames), cell_flows(channels_first)):
        for mine, first in zip(ours, theirs):          # flows, then residuals
            assert mine.dtype == first.dtype and mine.shape == first.shape
            assert mine.tobytes() == first.tobytes()


def test_the_pairs_of_a_stream_give_the_clips_motion_bit_for_bit():
    """The streaming auditor computes each consecutive pair's flows once (runtime/stream_prep.py)."""
    frames, _ = _scene(vibrate=1.5, seed=3)
    pairs = [cell_flows(frames[i:i + 2]) for i in range(len(frames) - 1)]
    joined = motion_from_flows(np.concatenate([f for f, _ in pairs], 1), np.concatenate([r for _, r in pairs], 1))
    assert np.array_equal(joined, cell_motion(frames))
