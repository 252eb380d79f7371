"""auditor_lite.resize: exact integer area means against a float64 reference, ties, dtypes; the fast
route against the exact one (bit for bit), at real video sizes, odd sizes and over threads."""

from __future__ import annotations


import numpy as np
import pytest

from auditor_lite import preprocess
from auditor_lite.resize import area_mean_uint8, area_means, area_sums, mask_coverage_at_least, masks_inside


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


# --- the fast route (area_means, masks_inside): the reference's numbers, bit for bit -----------------
REAL_SIZES = [(720, 1280), (1080, 1920), (481, 643), (480, 854), (97, 61)]


def structured_frames(height: int, width: int) -> np.ndarray:
    """Four frames that stress the sums: random noise, 1-pixel checkerboard, all 255, gradients."""
    rng = np.random.default_rng(height * width)
    yy, xx = np.mgrid[:height, :width]
    checker = ((yy + xx) % 2 * 255).astype(np.uint8)
    gradient = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + 3 * yy) % 256], -1)
    return np.stack([rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                     np.repeat(checker[..., None], 3, axis=-1),
                     np.full((height, width, 3), 255, np.uint8),
                     gradient.astype(np.uint8)])


@pytest.mark.parametrize("shape", REAL_SIZES)
def test_fast_frames_equal_the_exact_reference_bit_for_bit(shape):
    frames = structured_frames(*shape)
    expected = area_mean_uint8(frames, 128, 128)
    for threads in (1, 2):
        ours = area_means(frames, 128, 128, threads=threads)
        assert ours.dtype == np.float32 and ours.shape == (4, 128, 128, 3)
        np.testing.assert_array_equal(ours, expected)
    # a list of frames (no stacked copy), channels first and scaled: the prepare_frames layout
    scaled = area_means(list(frames), 128, 128, threads=2, scale=preprocess.PIXEL_SCALE, channels_first=True)
    assert scaled.shape == (4, 3, 128, 128) and scaled.flags.c_contiguous
    np.testing.assert_array_equal(scaled, (expected * np.float32(preprocess.PIXEL_SCALE)).transpose(0, 3, 1, 2))


@pytest.mark.parametrize("shape,size", [((130, 250), (17, 40)), ((5, 7), (11, 3)), ((256, 384), (128, 128)),
                                        ((2160, 3840), (128, 128))])
def test_fast_frames_at_other_ratios(shape, size):
    image = np.random.default_rng(sum(shape)).integers(0, 256, (2,) + shape + (3,), dtype=np.uint8)
    np.testing.assert_array_equal(area_means(image, *size, threads=2), area_mean_uint8(image, *size))


def structured_masks(height: int, width: int) -> np.ndarray:
    """Masks with many exact half-coverage ties (stripes, checkerboard), random ones, rectangles at
    odd offsets, all-in and all-out."""
    rng = np.random.default_rng(height + width)
    yy, xx = np.mgrid[:height, :width]
    rectangles = np.zeros((3, height, width), bool)
    for r in rectangles:
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        r[y:y + rng.integers(1, height // 2), x:x + rng.integers(1, width // 2)] = True
    return np.concatenate([np.stack([(yy + xx) % 2 == 0, xx % 2 == 0, yy % 4 < 2,
                                     rng.random((height, width)) > 0.5,
                                     np.ones((height, width), bool), np.zeros((height, width), bool)]),
                           rectangles])


@pytest.mark.parametrize("shape", REAL_SIZES)
def test_fast_masks_equal_the_exact_reference_bit_for_bit(shape):
    masks = structured_masks(*shape)
    expected = mask_coverage_at_least(masks, 128, 128)
    for threads in (1, 3):
        ours = masks_inside(masks, 128, 128, threads=threads)
        assert ours.dtype == bool and ours.shape == (len(masks), 128, 128)
        np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(masks_inside(list(masks), 128, 128, threads=2), expected)
    for fraction in (0.25, 0.9):
        np.testing.assert_array_equal(masks_inside(masks, 128, 128, fraction),
                                      mask_coverage_at_least(masks, 128, 128, fraction))


def test_fast_masks_count_non_canonical_bool_bytes_as_true():
    raw = np.zeros((2, 720, 1280), np.uint8)
    raw[0, :360] = 255
    raw[1, :, :640] = 7
    inside = masks_inside(raw.view(bool), 128, 128)
    np.testing.assert_array_equal(inside, mask_coverage_at_least(raw.view(bool), 128, 128))
    assert inside[0, :64].all() and not inside[0, 64:].any() and inside[1, :, :64].all()
    assert masks_inside(np.full((1, 4, 4), 9, np.uint8).view(bool), 4, 4).all()   # unchanged size too


def test_fast_route_keeps_the_model_size_unchanged_and_checks_dtypes():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (10, 128, 128, 3), dtype=np.uint8)
    np.testing.assert_array_equal(area_means(frames, 128, 128, threads=2), frames.astype(np.float32))
    masks = rng.random((3, 128, 128)) > 0.5
    np.testing.assert_array_equal(masks_inside(masks, 128, 128, threads=2), masks)
    with pytest.raises(ValueError, match="uint8"):
        area_means(frames.astype(np.uint16), 64, 64)
    with pytest.raises(ValueError, match="uint8"):
        area_means(frames.astype(np.float32), 128, 128)
    with pytest.raises(ValueError, match="bool"):
        masks_inside(masks.astype(np.uint8), 64, 64)
    with pytest.raises(ValueError, match="equally shaped"):
        area_means([frames[0], frames[1, :64]], 32, 32)


def test_prepare_functions_take_lists_and_threads_with_the_same_numbers():
    frames = structured_frames(481, 643)
    frames = np.concatenate([frames, frames[::-1], frames[:2]])               # 10 frames
    tensor = preprocess.prepare_frames(frames, 128)
    assert tensor.shape == (1, 10, 3, 128, 128) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    np.testing.assert_array_equal(preprocess.prepare_frames(list(frames), 128, threads=2), tensor)
    np.testing.assert_array_equal(tensor[0, 5], preprocess.prepare_key_frame(frames[5], 128)[0])
    with pytest.raises(ValueError, match="same size"):
        preprocess.prepare_frames([frames[0]] * 9 + [frames[0, :100]], 128)
    with pytest.raises(ValueError, match="10 frames"):
        preprocess.prepare_frames(list(frames[:9]), 128)
    masks = structured_masks(481, 643)
    np.testing.assert_array_equal(preprocess.prepare_masks(masks, 128, threads=2),
                                  mask_coverage_at_least(masks, 128, 128).astype(np.float32)[:, None])


def test_concurrent_callers_share_the_pool_and_get_their_own_numbers():
    from concurrent.futures import ThreadPoolExecutor

    clips = [structured_frames(360, 640)[:, :, :, ::-1] for _ in range(3)]   # non-contiguous views
    clips = [c + np.uint8(i) for i, c in enumerate(clips)]
    expected = [area_mean_uint8(c, 128, 128) for c in clips]
    with ThreadPoolExecutor(6) as callers:
        results = list(callers.map(lambda i: area_means(clips[i % 3], 128, 128, threads=2), range(12)))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[i % 3])
    frames = list(structured_frames(720, 1280))
    frames[3] = frames[3].astype(np.uint16)               # same shape, wrong type: a share raises
    with pytest.raises(ValueError, match="uint8"):
        area_means(frames, 128, 128, threads=2)
