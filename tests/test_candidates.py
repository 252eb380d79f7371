"""Candidate generation: bands, exact IoU labels, actions, determinism, counts and fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from auditor_lite.data import candidates as cand
from auditor_lite.data.candidates import (
    RANK_IOU_BANDS, in_band, make_candidates, make_null_expression_candidates, mask_iou, pop_skip_counts,
)
from auditor_lite.data.schema import MASK_TYPES, action_from_iou

SIZE = 128
YY, XX = np.mgrid[:SIZE, :SIZE]


def _disk() -> np.ndarray:
    return (YY - 60) ** 2 + (XX - 50) ** 2 < 28 ** 2


def _rectangle() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[20:60, 30:100] = True
    return mask


def _irregular_blob() -> np.ndarray:
    # Thresholded smooth noise inside a disk, largest component: a non-convex shape with holes.
    field = ndimage.gaussian_filter(np.random.default_rng(5).standard_normal((SIZE, SIZE)), 8)
    blob = (field > 0.02) & ((YY - 64) ** 2 + (XX - 64) ** 2 < 45 ** 2)
    labels, count = ndimage.label(blob)
    sizes = ndimage.sum(blob, labels, range(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def _thin_bar(width: int = 3) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[60:60 + width, 10:110] = True
    return mask


def _box(y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y0:y1, x0:x1] = True
    return mask


SHAPES = {"disk": _disk, "rectangle": _rectangle, "blob": _irregular_blob, "thin_bar": _thin_bar}
OTHERS = [_box(80, 110, 80, 120), _box(5, 25, 5, 40), _box(100, 125, 5, 30)]


def _by_setting(specs):
    return {(s.mask_type, s.rank): s for s in specs if s.mask_type in cand.RANKED_PERTURBATIONS}


def test_mask_iou_hand_computed():
    a, b = _box(0, 10, 0, 10), _box(0, 10, 5, 15)  # 100 px each, overlap 50, union 150
    assert mask_iou(a, b) == pytest.approx(50 / 150)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(a, np.zeros((3, 3), bool))


def test_band_edges_and_rounding():
    assert in_band(0.70, 1) and not in_band(0.70, 2)  # 0.70 belongs to rank 1 only
    assert in_band(0.90, 1) and not in_band(0.9001, 1)
    assert in_band(0.45, 2) and not in_band(0.4499, 2)
    assert not in_band(0.69996, 2)  # written as 0.7000, it would leave the rank-2 band


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranked_candidates_land_in_their_band(shape, seed):
    gt = SHAPES[shape]()
    specs = make_candidates(gt, OTHERS, np.random.default_rng(seed), frame=4)
    ranked = _by_setting(specs)
    if shape != "thin_bar":  # a 3-px bar may not erode into every band; the rest must all exist
        assert set(ranked) == {(k, r) for k in cand.RANKED_PERTURBATIONS for r in (1, 2)}
    for (kind, rank), spec in ranked.items():
        low, high = RANK_IOU_BANDS[rank]
        assert low <= spec.iou_to_gt <= high and (rank == 1 or spec.iou_to_gt < high), (kind, rank)
    pop_skip_counts()


@pytest.mark.parametrize("shape", SHAPES)
def test_labels_are_exact_and_actions_follow_the_schema(shape):
    gt = SHAPES[shape]()
    for spec in make_candidates(gt, OTHERS, np.random.default_rng(7), frame=2):
        assert spec.frame == 2 and spec.mask_type in MASK_TYPES
        assert spec.mask.shape == gt.shape and spec.mask.dtype == bool
        assert spec.iou_to_gt == mask_iou(spec.mask, gt)  # exact, not approximately
        assert spec.action == action_from_iou(spec.iou_to_gt, spec.mask_type)
        assert spec.rank in ((1, 2) if spec.mask_type in cand.RANKED_PERTURBATIONS else (1,))
    pop_skip_counts()


def test_perturbations_have_their_geometric_meaning():
    gt = _disk()
    ranked = _by_setting(make_candidates(gt, OTHERS, np.random.default_rng(3), frame=0))
    for rank in (1, 2):
        for kind in ("cutout", "erode"):  # strictly inside the GT
            mask = ranked[(kind, rank)].mask
            assert not (mask & ~gt).any() and mask.sum() < gt.sum()
        dilated = ranked[("dilate", rank)].mask  # a strict superset of the GT
        assert (dilated | gt).sum() == dilated.sum() and dilated.sum() > gt.sum()
    # Erosion removes a boundary layer: the eroded disk keeps every pixel deeper than ~6 px, a
    # cutout removes a chunk that reaches deep inside.
    depth = ndimage.distance_transform_edt(gt)
    assert ranked[("erode", 1)].mask[depth > 6].all()
    assert not ranked[("cutout", 2)].mask[depth > 6].all()


def test_merge_full_neg_null_and_perfect():
    gt = _disk()
    specs = make_candidates(gt, OTHERS, np.random.default_rng(11), frame=0)
    perfect = [s for s in specs if s.mask_type == "perfect"]
    assert len(perfect) == 1 and np.array_equal(perfect[0].mask, gt) and perfect[0].iou_to_gt == 1.0
    merges = [s for s in specs if s.mask_type == "merge"]
    assert len(merges) >= 2
    for spec in merges:
        assert (spec.mask & gt).sum() == gt.sum() and spec.iou_to_gt <= cand.MERGE_MAX_IOU
        assert spec.action in ("minor revision", "major revision")
    full_negs = [s for s in specs if s.mask_type == "full_neg"]
    assert len(full_negs) == 3 and np.array_equal(full_negs[0].mask, OTHERS[0])  # others[0] first
    assert all(s.action == "reject" for s in full_negs)
    null = [s for s in specs if s.mask_type == "null"]
    assert len(null) == 1 and not null[0].mask.any() and null[0].iou_to_gt == 0.0
    assert null[0].action == "reject"


def test_full_neg_iou_is_exact_when_objects_overlap():
    gt = _box(0, 20, 0, 20)                     # 400 px
    overlapping = _box(10, 30, 0, 20)           # overlaps 200 px: IoU 200 / 600
    far = _box(100, 120, 100, 120)
    specs = make_candidates(gt, [overlapping, far], np.random.default_rng(0), frame=0)
    first = [s for s in specs if s.mask_type == "full_neg"][0]
    assert not np.array_equal(first.mask, overlapping)  # IoU 1/3 > FULL_NEG_MAX_IOU: skipped
    assert first.iou_to_gt <= cand.FULL_NEG_MAX_IOU
    slight = _box(18, 38, 0, 20)                # overlaps 40 px: IoU 40 / 760
    specs = make_candidates(gt, [slight, far], np.random.default_rng(0), frame=0)
    first = [s for s in specs if s.mask_type == "full_neg"][0]
    assert np.array_equal(first.mask, slight) and first.iou_to_gt == pytest.approx(40 / 760)
    pop_skip_counts()


def test_single_other_gets_a_shifted_copy_and_no_other_gets_blobs():
    gt = _disk()
    specs = make_candidates(gt, [OTHERS[0]], np.random.default_rng(1), frame=0)
    full_negs = [s.mask for s in specs if s.mask_type == "full_neg"]
    assert len(full_negs) == 2 and np.array_equal(full_negs[0], OTHERS[0])
    assert not np.array_equal(full_negs[1], OTHERS[0]) and full_negs[1].sum() * 2 >= OTHERS[0].sum()
    alone = make_candidates(gt, [], np.random.default_rng(1), frame=0)
    assert sum(s.mask_type == "merge" for s in alone) >= 2
    assert sum(s.mask_type == "full_neg" for s in alone) == 2


def test_candidate_count_is_about_thirteen():
    rng = np.random.default_rng(0)
    counts = [len(make_candidates(gt(), OTHERS[: n % 4], rng, frame=0))
              for gt in (_disk, _irregular_blob) for n in range(12)]
    # 1 perfect + 6 ranked + 2-3 merges + 2-3 full_negs + 1 null; the blob's thin arms may cost an erode.
    assert min(counts) >= 11 and max(counts) <= 13
    assert 12.5 <= np.mean(counts) <= 13.0
    pop_skip_counts()


def test_deterministic_for_a_seed():
    def run(seed):
        return make_candidates(_irregular_blob(), OTHERS, np.random.default_rng(seed), frame=1)

    first, again, other = run(42), run(42), run(43)
    assert [(s.mask_type, s.rank, s.iou_to_gt) for s in first] == [(s.mask_type, s.rank, s.iou_to_gt) for s in again]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first, again))
    assert [s.iou_to_gt for s in first] != [s.iou_to_gt for s in other]


def test_iou_targets_spread_over_the_band():
    # Targets are drawn uniformly in the band, so erode r1 on a large disk should cover it widely.
    rng = np.random.default_rng(0)
    ious = [_by_setting(make_candidates(_disk(), OTHERS, rng, frame=0))[("erode", 1)].iou_to_gt
            for _ in range(20)]
    assert min(ious) < 0.76 and max(ious) > 0.84


def test_small_gt_skips_unreachable_bands_and_counts_them():
    pop_skip_counts()
    pixel = _box(5, 6, 5, 6)  # removing anything empties it; growing gives 1/2, 1/3, ...
    specs = make_candidates(pixel, OTHERS, np.random.default_rng(0), frame=0)
    ranked = _by_setting(specs)
    assert set(ranked) == {("dilate", 2)} and ranked[("dilate", 2)].iou_to_gt == 0.5
    skips = pop_skip_counts()
    assert skips == {"cutout_r1": 1, "cutout_r2": 1, "erode_r1": 1, "erode_r2": 1, "dilate_r1": 1}
    assert pop_skip_counts() == {}  # popping resets
    # A 2-px-wide bar cannot be eroded without breaking it apart (that would be a cutout).
    specs = make_candidates(_thin_bar(2), OTHERS, np.random.default_rng(0), frame=0)
    assert not any(s.mask_type == "erode" for s in specs)
    assert pop_skip_counts()["erode_r1"] == 1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="empty"):
        make_candidates(np.zeros((8, 8), bool), [], np.random.default_rng(0), frame=3)
    with pytest.raises(ValueError, match=r"others\[0\]"):
        make_candidates(_disk(), [np.ones((4, 4), bool)], np.random.default_rng(0), frame=0)


def test_null_expression_candidates():
    specs = make_null_expression_candidates([OTHERS[0], np.zeros((SIZE, SIZE), bool), OTHERS[1]],
                                            np.random.default_rng(0), frame=5)
    assert [s.mask_type for s in specs] == ["full_neg", "full_neg", "null"]  # the empty object is dropped
    assert all(s.iou_to_gt == 0.0 and s.action == "reject" and s.frame == 5 for s in specs)
    assert np.array_equal(specs[0].mask, OTHERS[0]) and not specs[-1].mask.any()
