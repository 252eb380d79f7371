"""Baselines on a tiny benchmark: they fit, cover every candidate, and read back through eval."""

from __future__ import annotations

import numpy as np
import pytest

from auditor_lite.baselines.features import FEATURE_NAMES, mask_features
from auditor_lite.baselines.predictors import make_baseline, run_baseline
from auditor_lite.data.candidates import make_candidates
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import NUM_FRAMES, SAMPLE_RATE
from auditor_lite.data.writer import BenchmarkWriter
from auditor_lite.eval.predictions import read_predictions

S = 40


def _disk(cx, cy, r):
    yy, xx = np.mgrid[:S, :S]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    with BenchmarkWriter(root) as writer:
        for i in range(6):
            vid = f"clip{i}_0_10000"
            gts = {f: _disk(12 + f, 14, 6 + i % 3) for f in range(NUM_FRAMES)}
            others = {f: _disk(30, 28 - f, 5) for f in range(NUM_FRAMES)}
            frames = np.full((NUM_FRAMES, S, S, 3), 80, np.uint8)
            writer.add_clip(vid, frames, np.zeros(SAMPLE_RATE * 10, np.float32))
            split = "train" if i < 4 else ("test_s" if i == 4 else "test_u")
            frames_used = [3] if split == "train" else range(NUM_FRAMES)
            cands = [c for f in frames_used for c in make_candidates(gts[f], [others[f]], rng, f)]
            writer.add_expression(split=split, uid=f"{vid}_disk_0", vid=vid, fid=0,
                                  exp="the disk", kfid=3,
                                  gt_masks={f: gts[f] for f in frames_used}, candidates=cands)
    return root


def test_mask_features_hand_values():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True  # a 10x10 square
    f = dict(zip(FEATURE_NAMES, mask_features(mask)))
    assert f["area_frac"] == pytest.approx(100 / 400)
    assert f["n_components"] == 1 and f["n_holes"] == 0
    assert f["bbox_fill"] == pytest.approx(1.0)
    assert f["perimeter_ratio"] == pytest.approx(36 / 10)  # 36 boundary pixels / sqrt(100)
    holed = mask.copy()
    holed[9:11, 9:11] = False
    g = dict(zip(FEATURE_NAMES, mask_features(holed)))
    assert g["n_holes"] == 1 and g["hole_frac"] == pytest.approx(4 / 100)
    empty = dict(zip(FEATURE_NAMES, mask_features(np.zeros((8, 8), bool))))
    assert empty["is_empty"] == 1 and empty["area_frac"] == 0


@pytest.mark.parametrize("name", ["constant", "geometry", "temporal"])
def test_baseline_covers_every_candidate(bench, tmp_path, name):
    out = tmp_path / f"{name}.jsonl"
    counts = run_baseline(name, bench, out, progress=False)
    b = Benchmark(bench)
    for split in ("test_s", "test_u"):
        for mode in ("image", "video"):
            keys = {(r.uid, c.frame, c.cand_id) for r in b.records(split, mode)
                    for c in r.candidates}
            preds = read_predictions(out, mode=mode, split=split)
            assert keys <= set(preds), f"{name} misses {split}/{mode} samples"
            assert counts[f"{split}/{mode}"] == len(keys)
            assert all(0.0 <= p.iou <= 1.0 for p in preds.values())


def test_constant_baseline_uses_train_statistics(bench):
    model = make_baseline("constant").fit(Benchmark(bench))
    train = [c for r in Benchmark(bench).records("train", "train") for c in r.candidates]
    assert model.iou == pytest.approx(np.mean([c.iou_to_gt for c in train]))


def test_unknown_baseline():
    with pytest.raises(ValueError, match="unknown baseline 'oracle'"):
        make_baseline("oracle")


def test_geometry_fits_on_a_seeded_sample_of_training_masks(bench):
    total = sum(len(r.candidates) for r in Benchmark(bench).records("train", "train"))
    half = total // 2
    first = make_baseline("geometry", max_train_masks=half).fit(Benchmark(bench), progress=False)
    again = make_baseline("geometry", max_train_masks=half).fit(Benchmark(bench), progress=False)
    assert first.train_masks == half
    x = np.random.default_rng(0).random((5, first.iou_model.n_features_in_))
    np.testing.assert_array_equal(first.iou_model.predict(x), again.iou_model.predict(x))
    assert make_baseline("geometry").fit(Benchmark(bench), progress=False).train_masks == total
