"""auditor_lite.resize: exact integer area means against a float64 reference, ties, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from auditor_lite import preprocess
from auditor_lite.resize import area_mean_uint8, area_sums, mask_coverage_at_least


def reference_area_mean(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """float64 area means through explicit overlap matrices (slow, obviously right)."""
    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for j in range(n_out):
            lo, hi = j * n_in / n_out, (j + 1) * n_in / n_out
            for k in range(int(np.floor(lo)), int(np.ceil(hi))):
                m[j, k] = min(hi, k + 1) - max(lo, k)
        return m / m.sum(1, keepdims=True)
    wy, wx = weights(image.shape[0], height), weights(image.shape[1], width)
    rows = np.tensordot(wy, image.astype(np.float64), axes=(1, 0))        # (height, W, C)
    return np.tensordot(wx, rows, axes=(1, 1)).transpose(1, 0, 2)         # (height, width, C)


@pytest.mark.parametrize("shape,size", [((720, 1280), (128, 128)), ((97, 61), (128, 128)), ((130, 250), (17, 40)),
                                        ((128, 128), (128, 128)), ((256, 384), (128, 128)), ((5, 7), (11, 3))])
def test_means_equal_the_float64_reference_rounded_once(shape, size):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    ours = area_mean_uint8(image, *size)
    expected = reference_area_mean(image, *size)
    assert ours.dtype == np.float32 and ours.shape == size + (3,)
    np.testing.assert_allclose(ours, expected, rtol=2e-7, atol=1e-9)      # float32 rounding only
    np.testing.assert_allclose(ours, preprocess.area_resize(image, *size), atol=1e-4)


def test_sums_are_exact_integers_with_their_denominator():
    image = np.full((720, 1280, 3), 255, np.uint8)
    sums, denominator = area_sums(image, 128, 128)
    assert sums.dtype == np.uint32 and np.all(sums == 255 * denominator)
    with pytest.raises(ValueError, match="uint8 or bool"):
        area_sums(image.astype(np.float32), 128, 128)


def test_a_mask_pixel_is_inside_at_exactly_half_coverage():
    # 256 -> 128: every output pixel covers 2 x 2 inputs; two of four set is exactly one half
    masks = np.zeros((1, 256, 256), bool)
    masks[0, :, 0::4] = True                             # output columns 0, 2, 4 ... half covered
    inside = mask_coverage_at_least(masks, 128, 128)
    assert inside[0, :, 0::2].all() and not inside[0, :, 1::2].any()
    odd = np.zeros((1, 720, 1280), bool)
    odd[0, :300, :500] = True
    sums, denominator = area_sums(odd[..., None], 128, 128)
    np.testing.assert_array_equal(mask_coverage_at_least(odd, 128, 128), 2 * sums[..., 0] >= denominator)


def test_non_canonical_bool_bytes_count_as_true():
    raw = np.zeros((1, 4, 4), np.uint8)
    raw[0, :2] = 255                                     # what some decoders leave in a bool array
    assert mask_coverage_at_least(raw.view(bool), 2, 2).tolist() == [[[True, True], [False, False]]]


def test_prepare_functions_use_it_and_keep_unchanged_sizes_exact():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (10, 128, 128, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess.prepare_frames(frames, 128)[0].transpose(0, 2, 3, 1) * 255,
                                  frames.astype(np.float32) * np.float32(preprocess.PIXEL_SCALE) * 255)
    big = rng.integers(0, 256, (10, 360, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess.prepare_frames(big, 128)[0, 3],
                                  area_mean_uint8(big[3], 128, 128).transpose(2, 0, 1) * np.float32(1 / 255))
    masks = rng.random((3, 360, 640)) > 0.5
    np.testing.assert_array_equal(preprocess.prepare_masks(masks, 128)[:, 0],
                                  mask_coverage_at_least(masks, 128, 128).astype(np.float32))
