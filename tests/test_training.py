"""Training, distillation and prediction on a tiny synthetic benchmark with a tiny model config."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from auditor_lite.data.schema import ACTIONS, MASK_TYPES, DataError  # noqa: E402
from auditor_lite.data.synth import synthesize  # noqa: E402
from auditor_lite.eval.predictions import read_prediction_lines, write_predictions  # noqa: E402
from auditor_lite.data.reader import Benchmark  # noqa: E402
from auditor_lite.training import features as feat  # noqa: E402
from auditor_lite.training.batches import heldout_split  # noqa: E402
from auditor_lite.training.distill import Distiller, _log_probs  # noqa: E402
from auditor_lite.training.losses import grounding_loss, soft_kl  # noqa: E402
from auditor_lite.training.predict import SILENT_SUFFIX, predict  # noqa: E402
from auditor_lite.training.train import Trainer, TrainOptions  # noqa: E402

# Every part of the real model, a few ten thousand parameters, 32-px inputs (10-s audio stays).
TINY = dict(d_model=32, num_heads=2, mlp_ratio=2.0, context_depth=1, decoder_depth=1, dropout=0.1,
            frame_size=32, frame_stages=[[8, 4], [16, 4]], key_size=32,
            key_stages=[[8, 4], [16, 2]], mask_stages=[[8, 4], [16, 2]], audio_channels=16,
            audio_strides=[10, 5], text_tokens=2)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    # seed 1, 8 clips: train 5, test_s 2, test_u 1 clips -> every split and mode is present.
    root = tmp_path_factory.mktemp("bench") / "b"
    synthesize(root, clips=8, seed=1, size=32, procedural=True, progress=False, workers=1)
    return root


def options(bench, out, **kw) -> TrainOptions:
    base = dict(bench=str(bench), out=str(out), preset="teacher", overrides=TINY, batch_clips=2,
                epochs=3, log_every=1, progress=False, cache_dir=str(bench.parent / "cache"))
    base.update(kw)
    return TrainOptions(**base)


def log_lines(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def step_losses(out):
    return {r["step"]: r["loss"] for r in log_lines(out) if "loss" in r}


@pytest.fixture(scope="module")
def teacher_dir(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    Trainer(options(bench, out, max_steps=3)).run()
    return out


# ------------------------------------------------------------------------------------ features
def test_feature_cache_matches_the_benchmark_and_is_reused(bench, tmp_path):
    f1, path, hit = feat.load_or_build_features(bench, tmp_path, 32, 32, progress=False)
    assert not hit and path.is_file()
    records = list(Benchmark(bench).records("train", "train"))
    assert list(f1.uids) == [r.uid for r in records]
    assert f1.num_masks == sum(len(r.candidates) for r in records)
    assert f1.frames.shape == (len(records), 10, 32, 32, 3) and f1.frames.dtype == np.uint8
    first = records[0].candidates[0]
    assert f1.iou[0] == pytest.approx(first.iou_to_gt)
    assert MASK_TYPES[f1.type_index[0]] == first.mask_type and ACTIONS[f1.action_index[0]] == first.action
    np.testing.assert_allclose(np.linalg.norm(f1.text, axis=1), 1.0, atol=1e-5)  # MiniLM is L2-normalised
    # Unpacked masks equal the reader's masks prepared at 32 px.
    expect = feat.load_candidate_masks(records[0].candidates, 32)
    np.testing.assert_array_equal(f1.unpack_masks(f1.mask_rows(0)), expect.astype(np.uint8))
    # The grounding target is the key frame's ground truth: the perfect candidate's mask for a
    # referring expression, empty (and still valid) for a null one.
    assert f1.gt_valid.all()
    gt = f1.unpack_gt(np.arange(len(records)))
    for e, record in enumerate(records):
        if record.is_null:
            assert gt[e].sum() == 0
            continue
        perfect = [i for i, c in enumerate(record.candidates)
                   if c.mask_type == "perfect" and c.frame == record.kfid]
        np.testing.assert_array_equal(gt[e], f1.unpack_masks(f1.mask_rows(e)[perfect])[0])
    f2, path2, hit2 = feat.load_or_build_features(bench, tmp_path, 32, 32, progress=False)
    assert hit2 and path2 == path
    np.testing.assert_array_equal(f2.masks, f1.masks)
    # Another input size is another cache file, not a stale hit.
    _, path3, hit3 = feat.load_or_build_features(bench, tmp_path, 32, 64, progress=False)
    assert not hit3 and path3 != path


def test_category_auxiliary_reads_uids_and_is_trained(teacher_dir):
    from auditor_lite.training.category import category_of, category_targets

    assert category_of("syn0001_00990_0_10000_triangle_1") == "triangle"
    assert category_of("null_syn0001_00990_0_10000_null_1") is None
    vocab, index = category_targets(np.array(["a_0_10000_cat_1", "b_0_10000_dog_2", "null_c_0_10000_null_1"]))
    assert vocab == ["cat", "dog"] and index.tolist() == [0, 1, -1]
    summary = json.loads((teacher_dir / "training_summary.json").read_text())
    assert summary["category_aux"] >= 2
    assert all("category" in r for r in log_lines(teacher_dir) if "loss" in r)


def test_heldout_split_is_by_clip_and_seeded():
    vids = np.array(["a", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
    train, held = heldout_split(vids, 0.2, seed=3)
    assert set(train) | set(held) == set(range(len(vids))) and not set(train) & set(held)
    assert len(set(vids[held])) == 2 and not set(vids[held]) & set(vids[train])
    assert np.array_equal(held, heldout_split(vids, 0.2, seed=3)[1])


# ------------------------------------------------------------------------------------ training
def test_train_writes_model_log_summary_and_heldout(teacher_dir):
    for name in ("config.json", "model.safetensors", "training_summary.json", "heldout_uids.txt",
                 "checkpoint/model.safetensors", "checkpoint/trainer_state.pt"):
        assert (teacher_dir / name).is_file(), name
    summary = json.loads((teacher_dir / "training_summary.json").read_text())
    assert summary["steps"] == 3 and summary["stop_reason"] == "max_steps reached"
    assert summary["scheduled_steps"] == 6  # 3 epochs x ceil(4 train expressions / 2): max_steps only stops
    assert summary["heldout_expressions"] >= 1 and summary["val"]["masks"] > 0
    assert len((teacher_dir / "heldout_uids.txt").read_text().split()) == summary["heldout_expressions"]
    assert sorted(step_losses(teacher_dir)) == [1, 2, 3]


def test_resume_equals_uninterrupted_and_seed_is_deterministic(bench, tmp_path):
    whole, again, split = tmp_path / "whole", tmp_path / "again", tmp_path / "split"
    Trainer(options(bench, whole, max_steps=4)).run()
    Trainer(options(bench, again, max_steps=4)).run()
    Trainer(options(bench, split, max_steps=2)).run()
    Trainer(options(bench, split, max_steps=4, resume=True)).run()
    reference = step_losses(whole)
    assert step_losses(again) == reference  # same seed, same losses, bit for bit
    resumed = step_losses(split)
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):  # steps after the interruption: dropout, augmentation and data order replayed
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5)
    a = torch.load(whole / "checkpoint" / "trainer_state.pt", weights_only=False)["state"]
    b = torch.load(split / "checkpoint" / "trainer_state.pt", weights_only=False)["state"]
    assert a["step"] == b["step"] == 4 and a["batch_in_epoch"] == b["batch_in_epoch"]
    other = tmp_path / "other_seed"
    Trainer(options(bench, other, max_steps=2, seed=1)).run()
    assert step_losses(other)[1] != reference[1]


def test_max_minutes_sizes_the_schedule_within_the_epoch_cap(bench, tmp_path):
    # A minute fits far more than 4 epochs of this tiny model: the schedule, sized from the speed
    # of steps 2-5, is capped by the epochs (4 x 2 batches).
    summary = Trainer(options(bench, tmp_path / "timed", epochs=4, max_minutes=1.0)).run()
    assert summary["scheduled_steps"] == 8 and summary["steps"] == 8
    assert summary["stop_reason"] == "schedule finished" and summary["minutes"] < 1.0


# ------------------------------------------------------------------------------------ distillation
def test_distill_from_teacher_dir_uses_all_terms_and_the_teachers_heldout(bench, teacher_dir, tmp_path):
    out = tmp_path / "student"
    summary = Distiller(options(bench, out, preset="student", max_steps=2), teacher_dir=teacher_dir).run()
    assert summary["distilled"] and summary["teacher_coverage"] > 0.7  # held-out masks have no targets
    assert (out / "heldout_uids.txt").read_text() == (teacher_dir / "heldout_uids.txt").read_text()
    record = log_lines(out)[0]
    for term in ("kd_iou_mse", "kd_type_kl", "kd_action_kl", "kd_query_mse", "kd_context_mse"):
        assert term in record and np.isfinite(record[term]), term
    assert record["loss"] == pytest.approx(record["total"] + record["kd_total"], rel=1e-4)
    assert len(list(bench.parent.glob("cache/teacher_*.npz"))) == 1  # teacher outputs cached once


def test_distill_from_predictions_file(bench, tmp_path):
    records = list(Benchmark(bench).records("train", "train"))
    lines = []
    for i, r in enumerate(records):
        for c in r.candidates:
            lines.append({"uid": r.uid, "frame": c.frame, "cand_id": c.cand_id, "iou": 0.5,
                          "mask_type": "cutout", "action": "reject" if i == 0 else "accept",
                          **({"type_probs": {"erode": 0.75, "dilate": 0.25}} if i == 1 else {})})
    lines[0]["iou"] = None  # an unparsed field teaches nothing for that mask
    pred = tmp_path / "teacher_pred.jsonl"
    write_predictions(pred, lines[:-1])  # the last candidate has no teacher line at all
    distiller = Distiller(options(bench, tmp_path / "student", preset="student", max_steps=1),
                          teacher_pred=pred)
    summary = distiller.run()
    t = distiller.targets
    assert summary["teacher_coverage"] == pytest.approx((len(lines) - 1) / len(lines), abs=1e-4)
    assert not t["valid_iou"][0] and t["valid_type"][0] and not t["valid_type"][-1]
    assert t["iou"][1] == pytest.approx(0.5)
    # No probabilities: smoothed one-hot (0.9 on the class, 0.1 / 6 elsewhere for 7 types).
    np.testing.assert_allclose(np.exp(t["type_log_probs"][0])[MASK_TYPES.index("cutout")], 0.9, atol=1e-6)
    np.testing.assert_allclose(np.exp(t["type_log_probs"][0])[MASK_TYPES.index("null")], 0.1 / 6, atol=1e-6)
    row = int(np.flatnonzero(t["valid_type"])[0]) + len(records[0].candidates)  # first mask of expression 1
    assert np.exp(t["type_log_probs"][row])[MASK_TYPES.index("erode")] == pytest.approx(0.75, abs=1e-3)
    assert "kd_query_mse" not in log_lines(tmp_path / "student")[0]  # output-level terms only
    with pytest.raises(DataError, match="no prediction matches"):
        other = tmp_path / "unrelated.jsonl"
        write_predictions(other, [{"uid": "nope", "frame": 0, "cand_id": "perfect-0", "iou": 1.0,
                                   "mask_type": "perfect", "action": "accept"}])
        Distiller(options(bench, tmp_path / "s2", preset="student", max_steps=1), teacher_pred=other).run()


def test_grounding_loss_prefers_the_right_map_and_skips_invalid_rows():
    gt = torch.zeros(2, 1, 8, 8)
    gt[0, 0, 2:6, 2:6] = 1.0                                 # row 1: a null expression (empty)
    right = (gt * 2 - 1) * 8.0                                 # confident and correct logits
    wrong = -right
    valid = torch.tensor([True, True])
    assert grounding_loss(right, gt, valid) < 0.05 < 1.0 < grounding_loss(wrong, gt, valid)
    # Masks at twice the map's resolution are pooled to it.
    big = torch.nn.functional.interpolate(gt, scale_factor=2.0)
    assert grounding_loss(right, big, valid) == pytest.approx(float(grounding_loss(right, gt, valid)))
    assert float(grounding_loss(wrong, gt, torch.tensor([False, False]))) == 0.0


def test_soft_kl_by_hand():
    # Teacher (0.75, 0.25), student logits (0, 0) at T = 1: KL = 0.75 ln 1.5 + 0.25 ln 0.5.
    teacher = torch.log(torch.tensor([[0.75, 0.25]]))
    kl = soft_kl(torch.zeros(1, 2), teacher, temperature=1.0)
    assert float(kl) == pytest.approx(0.75 * np.log(1.5) + 0.25 * np.log(0.5), abs=1e-6)
    assert float(soft_kl(teacher.clone(), teacher, temperature=2.0)) == pytest.approx(0.0, abs=1e-7)
    assert _log_probs(None, None, ACTIONS, 0.1) is None


# ------------------------------------------------------------------------------------ prediction
def test_predict_writes_one_line_per_candidate_per_split_and_mode(bench, teacher_dir, tmp_path):
    out = tmp_path / "pred.jsonl"
    counts = predict(teacher_dir, bench, out, batch_masks=5, progress=False)
    benchmark = Benchmark(bench)
    expected = {f"{s}/{m}": sum(len(r.candidates) for r in benchmark.records(s, m))
                for s, m in benchmark.available() if s != "train"}
    assert counts == expected and len(expected) == 4
    lines = [p for _, p in read_prediction_lines(out)]
    assert len(lines) == sum(expected.values())
    keys = {(p.split, p.mode, p.uid, p.frame, p.cand_id) for p in lines}
    assert len(keys) == len(lines)
    assert all(p.method == "auditor-lite-teacher" and p.type_probs and p.action_probs for p in lines)
    # Image mode = video mode's key-frame candidates with the same key frame: same numbers.
    by_key = {(p.mode, p.uid, p.frame, p.cand_id): p.iou for p in lines}
    shared = [(k[1:], v) for k, v in by_key.items() if k[0] == "image" and ("video",) + k[1:] in by_key]
    assert shared and all(by_key[("video",) + k] == pytest.approx(v, abs=1e-5) for k, v in shared)
    silent = tmp_path / "silent.jsonl"
    predict(teacher_dir, bench, silent, splits=["test_s"], modes=["image"], silence_audio=True,
            progress=False)
    silent_lines = [p for _, p in read_prediction_lines(silent)]
    assert len(silent_lines) == expected["test_s/image"]
    assert silent_lines[0].method == "auditor-lite-teacher" + SILENT_SUFFIX
