"""media.py, writer.py and reader.py: a writer->reader round trip, the upstream-layout fixture, bad input."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from auditor_lite import media
from auditor_lite.data.reader import Benchmark, training_response
from auditor_lite.data.schema import Clip, DataError, DataWarning
from auditor_lite.data.writer import BenchmarkWriter, MaskSpec, audit_response

META = "train_test_meta_files"


# ------------------------------------------------------------------------------- media
def test_mask_roundtrip_and_nonzero_rule(tmp_path):
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    media.save_mask(tmp_path / "a" / "m.png", mask)
    assert np.array_equal(media.load_mask(tmp_path / "a" / "m.png"), mask)
    assert set(np.unique(np.asarray(Image.open(tmp_path / "a" / "m.png")))) == {0, 255}
    # Any nonzero colour is foreground (value 1 included); alpha is not part of the mask.
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 2] = 1
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert media.load_mask(tmp_path / "rgba.png").tolist() == [[True, False], [False, False]]
    # A palette image is read by colour: index 0 mapped to white is foreground.
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    pal.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    assert media.load_mask(tmp_path / "pal.png").tolist() == [[True, False]]


def test_media_errors_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image")
    (tmp_path / "junk.wav").write_bytes(b"RIFF....not audio")
    with pytest.raises(DataError, match=r"junk\.png: not a readable image"):
        media.load_mask(tmp_path / "junk.png")
    with pytest.raises(DataError, match=r"nope\.jpg: file not found"):
        media.load_frame(tmp_path / "nope.jpg")
    with pytest.raises(DataError, match=r"junk\.wav: not a decodable audio file"):
        media.load_audio(tmp_path / "junk.wav")
    with pytest.raises(ValueError, match="2-D"):
        media.save_mask(tmp_path / "x.png", np.zeros((2, 2, 2)))


def test_audio_roundtrip_and_mono_mixdown(tmp_path):
    wave = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    media.save_audio(tmp_path / "a.wav", wave)
    back, rate = media.load_audio(tmp_path / "a.wav")
    assert rate == 16000 and back.dtype == np.float32
    assert np.max(np.abs(back - wave)) <= 1 / 32767  # PCM16 quantisation
    assert media.audio_info(tmp_path / "a.wav") == (16000, 1, pytest.approx(0.1))
    stereo = np.stack([np.full(100, 0.5), np.full(100, -0.25)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="PCM_16")
    mono, rate = media.load_audio(tmp_path / "s.wav")
    assert rate == 8000 and np.allclose(mono, 0.125, atol=1e-4)


def test_load_frames_checks_count_and_size(tmp_path):
    clip = Clip("v", tmp_path / "frames", tmp_path / "audio.wav")
    for i in range(10):
        media.save_frame(clip.frame_path(i), np.full((4, 6, 3), i * 20, np.uint8))
    frames = media.load_frames(clip)
    assert frames.shape == (10, 4, 6, 3) and abs(int(frames[3].mean()) - 60) <= 2
    media.save_frame(clip.frame_path(5), np.zeros((6, 6, 3), np.uint8))
    with pytest.raises(DataError, match=r"frames: frame 5\.jpg is 6x6, frame 0\.jpg is 6x4"):
        media.load_frames(clip)
    clip.frame_path(7).unlink()
    with pytest.raises(DataError, match=r"frames: frame 7\.jpg is missing"):
        media.load_frames(clip)


# -------------------------------------------------------------------- writer -> reader
TYPES = [("cutout", 1, 0.8, "minor revision"), ("cutout", 2, 0.5, "major revision"),
         ("erode", 1, 0.85, "minor revision"), ("dilate", 2, 0.55, "major revision"),
         ("merge", 1, 0.0, "reject"), ("full_neg", 1, 0.0, "reject"), ("null", 1, 0.0, "reject")]


def _specs(rng, frame, gt):
    specs = [MaskSpec(frame, "perfect", 1, 1.0, "accept", gt)]
    specs += [MaskSpec(frame, t, r, iou, a, rng.random(gt.shape) > 0.5) for t, r, iou, a in TYPES]
    return specs


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A 3-clip benchmark written by BenchmarkWriter, with everything that was given to it."""
    root = tmp_path_factory.mktemp("written")
    rng = np.random.default_rng(3)
    given = {"clips": {}, "expressions": {}}
    with BenchmarkWriter(root) as writer:
        for vid in ("v0_0_10", "v1_0_10", "v2_0_10"):
            # Smooth frames, so that the JPEG round trip can be held to a tight tolerance.
            ramp = np.add.outer(np.arange(16), np.arange(16)) * 6
            frames = np.stack([np.stack([ramp + 3 * t, ramp[::-1] + 40, 255 - ramp], axis=-1)
                               for t in range(10)]).clip(0, 255).astype(np.uint8)
            audio = rng.uniform(-0.5, 0.5, 1600).astype(np.float32)
            cross = rng.uniform(-0.5, 0.5, 1600).astype(np.float32)
            writer.add_clip(vid, frames, audio, cross_audio=cross)
            given["clips"][vid] = (frames, audio, cross)
        plan = [("train", "v0_0_10_dog_1", "v0_0_10", 2), ("test_s", "v1_0_10_cat_1", "v1_0_10", 0),
                ("test_u", "v2_0_10_saw_1", "v2_0_10", 9), ("test_u", "null_v2_0_10_null_1", "v2_0_10", 9)]
        for split, uid, vid, kfid in plan:
            gts = {} if uid.startswith("null_") else {f: rng.random((16, 16)) > 0.6 for f in range(10)}
            specs = [s for f in range(10)
                     for s in (_specs(rng, f, gts[f]) if gts else _specs(rng, f, np.zeros((16, 16), bool))[-2:])]
            writer.add_expression(split=split, uid=uid, vid=vid, fid=1, exp=f"the {uid}, loud", kfid=kfid,
                                  gt_masks=gts, candidates=specs)
            given["expressions"][uid] = (split, vid, kfid, gts, specs)
    return root, given


def test_roundtrip_records_match_what_was_written(written):
    root, given = written
    bench = Benchmark(root, check_media=True)
    assert bench.available() == [("train", "train"), ("test_s", "image"), ("test_s", "video"),
                                 ("test_u", "image"), ("test_u", "video")]
    assert set(bench.metadata()) == set(given["expressions"])
    seen = 0
    for split, mode in bench.available():
        for rec in bench.records(split, mode):
            g_split, vid, kfid, gts, specs = given["expressions"][rec.uid]
            assert (rec.split, rec.vid, rec.kfid, rec.fid, rec.exp) == (g_split, vid, kfid, 1, f"the {rec.uid}, loud")
            frames = range(10) if mode == "video" else [kfid]
            assert set(rec.gt_masks) == ({f for f in frames} if gts else set())
            expected, counts = {}, {}
            for s in (s for s in specs if s.frame in frames):
                k = counts.setdefault((s.frame, s.mask_type), 0)
                counts[(s.frame, s.mask_type)] += 1
                expected[(s.frame, f"{s.mask_type}-{k}")] = s
            got = {(c.frame, c.cand_id): c for c in rec.candidates}
            assert set(got) == set(expected)
            for key, cand in got.items():
                spec = expected[key]
                assert (cand.mask_type, cand.rank, cand.iou_to_gt, cand.action) == \
                    (spec.mask_type, spec.rank, spec.iou_to_gt, spec.action)
                assert np.array_equal(media.load_mask(cand.mask_path), spec.mask)
                if mode == "train":
                    assert cand.response == audit_response(spec.mask_type, spec.action)
            for frame, path in rec.gt_masks.items():
                assert np.array_equal(media.load_mask(path), gts[frame])
            seen += 1
    assert seen == 1 + 2 * 3  # train once; each test expression in image and video mode


def test_roundtrip_media_and_paths(written):
    root, given = written
    bench = Benchmark(root)
    rec = next(r for r in bench.records("test_u", "image") if r.is_null)
    assert rec.clip.audio_path == root / "media_cross" / "v2_0_10" / "audio.wav"
    frames, _, cross = given["clips"]["v2_0_10"]
    assert np.abs(media.load_frames(rec.clip).astype(int) - frames).mean() < 3  # JPEG at quality 90
    audio, rate = media.load_audio(rec.clip.audio_path)
    assert rate == 16000 and np.max(np.abs(audio - cross)) <= 1 / 32767
    plain = next(iter(bench.records("train", "train")))
    assert plain.clip.audio_path == root / "media" / "v0_0_10" / "audio.wav"
    assert plain.gt_masks[2] == root / "gt_mask" / "v0_0_10" / "fid_1" / "00002.png"
    cutout = next(c for c in plain.candidates if c.cand_id == "cutout-1")
    assert cutout.mask_path == root / "masks" / "train" / "v0_0_10_dog_1" / "2" / "cutout-1.png"
    assert training_response(cutout) == ("<audit> <iou> 0.5000 </iou> <mask_type> cutout </mask_type> "
                                         "<action> major revision </action> </audit>")
    header = (root / META / "metadata.csv").read_text().splitlines()[0]
    assert header == "vid,uid,split,fid,exp,kfid"
    assert "\n" not in (root / META / "test_s_image_filtered.json").read_text()  # compact JSON


def test_writer_refuses_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    writer = BenchmarkWriter(tmp_path / "b")
    writer.add_clip("v", np.zeros((10, 8, 8, 3), np.uint8), np.zeros(160, np.float32))
    gt = {0: rng.random((8, 8)) > 0.5}
    ok = dict(split="test_s", uid="v_a_1", vid="v", fid=0, exp="e", kfid=0, gt_masks=gt)
    with pytest.raises(ValueError, match="split 'val'"):
        writer.add_expression(**{**ok, "split": "val"}, candidates=[])
    with pytest.raises(ValueError, match=r"mask shape \(4, 4\) differs"):
        writer.add_expression(**ok, candidates=[MaskSpec(0, "cutout", 1, 0.8, "minor revision", np.ones((4, 4), bool))])
    with pytest.raises(ValueError, match="iou_to_gt 1.5 is outside"):
        writer.add_expression(**ok, candidates=[MaskSpec(0, "erode", 1, 1.5, "accept", gt[0])])
    with pytest.raises(ValueError, match="perfect candidate of frame 0 differs"):
        writer.add_expression(**ok, candidates=[MaskSpec(0, "perfect", 1, 1.0, "accept", ~gt[0])])
    assert not (tmp_path / "b" / "gt_mask").exists()  # a refused expression writes nothing
    with pytest.raises(ValueError, match="needs cross_audio"):
        writer.add_expression(**{**ok, "uid": "null_v_a_1"}, candidates=[])
    with pytest.raises(ValueError, match="was not added"):
        writer.add_expression(**{**ok, "vid": "w"}, candidates=[])
    writer.add_expression(**ok, candidates=[])
    with pytest.raises(ValueError, match="already added"):
        writer.add_expression(**ok, candidates=[])
    writer.close()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        BenchmarkWriter(tmp_path / "b")
    (tmp_path / "b" / "keep.txt").write_text("not ours")
    BenchmarkWriter(tmp_path / "b", overwrite=True).close()
    assert (tmp_path / "b" / "keep.txt").exists() and not (tmp_path / "b" / "media").exists()


# -------------------------------------------------------------- the upstream-layout fixture
def test_reader_on_upstream_fixture(fixtures_dir):
    root = fixtures_dir / "upstream_small"
    bench = Benchmark(root, check_media=True)
    assert bench.available() == [("train", "train"), ("test_s", "image"), ("test_s", "video"), ("test_u", "image")]
    meta = bench.metadata()
    assert sorted(meta) == ["aaa_1000_11000_cello_1", "bbb_2000_12000_dog_1", "bbb_2000_12000_dog_2",
                            "ccc_3000_13000_mower_1", "null_aaa_1000_11000_null_1"]  # val/test_n ignored
    assert meta["bbb_2000_12000_dog_1"].exp == "The dog barking, on the left."

    def summary(rec):
        return [(c.cand_id, c.frame, c.rank, c.iou_to_gt, c.action) for c in rec.candidates]

    cello, null = list(bench.records("train", "train"))
    assert summary(cello) == [("perfect-0", 2, -1, 1.0, "accept"), ("cutout-0", 2, 1, 0.75, "minor revision"),
                              ("erode-0", 2, 2, 0.25, "major revision"), ("dilate-0", 2, 1, 0.6667, "minor revision"),
                              ("merge-0", 2, -1, 0.8, "minor revision"), ("full_neg-0", 2, 1, 0.0, "reject"),
                              ("null-0", 2, -1, 0.0, "reject")]
    assert training_response(cello.candidates[3]).startswith("<audit> <iou> 0.6667 </iou> <mask_type> dilate")
    assert null.is_null and null.gt_masks == {}
    assert null.clip.audio_path == root / "media_cross" / "aaa_1000_11000" / "audio.wav"
    assert [c.setting for c in null.candidates] == ["full_neg", "null"]
    dog1, dog2 = list(bench.records("test_s", "image"))  # the test_u item in this file is skipped
    assert bench.skipped["not_in_metadata"] == 2  # that item and the unlisted train uid
    assert [(c.cand_id, c.setting, c.action) for c in dog1.candidates] == [
        ("perfect-0", "perfect", "accept"), ("cutout-0", "cutout_r1", "minor revision"),
        ("cutout-1", "cutout_r2", "major revision"), ("dilate-0", "dilate_r2", "major revision"),
        ("full_neg-0", "full_neg", "reject")]
    assert dog2.gt_masks == {0: root / "gt_mask" / "bbb_2000_12000" / "fid_1" / "00000.png"}  # plain string
    (mower,) = bench.records("test_u", "image")  # dict-form JSON
    assert [c.cand_id for c in mower.candidates] == ["perfect-0", "merge-0", "full_neg-0", "null-0"]
    (video,) = bench.records("test_s", "video")
    assert [(c.frame, c.cand_id) for c in video.candidates] == [
        (0, "perfect-0"), (0, "cutout-0"), (4, "perfect-0"), (4, "cutout-0"), (4, "cutout-1"),
        (4, "dilate-0"), (4, "full_neg-0")]


def test_fixture_ious_match_its_masks(fixtures_dir):
    """The fixture's iou_to_gt values are the true IoUs of its 8x8 masks (hand-computed in README)."""
    bench = Benchmark(fixtures_dir / "upstream_small")
    checked = 0
    for split, mode in bench.available():
        for rec in bench.records(split, mode):
            for cand in rec.candidates:
                if cand.frame in rec.gt_masks:
                    gt, mask = media.load_mask(rec.gt_masks[cand.frame]), media.load_mask(cand.mask_path)
                    iou = (gt & mask).sum() / max((gt | mask).sum(), 1)
                    assert iou == pytest.approx(cand.iou_to_gt, abs=1e-4), (rec.uid, cand.cand_id)
                    checked += 1
    assert checked == 25


@pytest.fixture
def copy(fixtures_dir, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(fixtures_dir / "upstream_small", root)
    return root


def test_headerless_metadata_and_absolute_paths(copy):
    csv_path = copy / META / "metadata.csv"
    csv_path.write_text("".join(csv_path.read_text().splitlines(keepends=True)[1:]))
    path = copy / META / "test_u_image_filtered.json"
    data = json.loads(path.read_text())
    entry = data["ccc_3000_13000_mower_1"]["part_neg_masks"]["merge"][0]
    entry["mask_path"] = str(copy / entry["mask_path"])
    path.write_text(json.dumps(data))
    bench = Benchmark(copy, check_media=True)
    assert len(bench.metadata()) == 5
    (mower,) = bench.records("test_u", "image")
    assert mower.candidates[1].mask_path == copy / "candidates" / "ccc_3000_13000_mower_1" / "merge.png"


# ------------------------------------------------------------------------- bad input
def _edit_json(name, change):
    def apply(root):
        path = root / META / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return apply


def _set_cut(key, value):
    return _edit_json("test_s_image_filtered.json",
                      lambda d: d[0]["part_neg_masks"]["cut"][0].__setitem__(key, value))


def _drop_cut(key):
    return _edit_json("test_s_image_filtered.json", lambda d: d[0]["part_neg_masks"]["cut"][0].pop(key))


ITEM0 = r"test_s_image_filtered\.json \[item 0 uid=bbb_2000_12000_dog_1 "
CORRUPTIONS = {  # name: (change, (split, mode), expected message, lenient skip reason[, items skipped])
    "iou_range": (_set_cut("iou_to_gt", 1.7), ("test_s", "image"),
                  ITEM0 + r"part_neg_masks\.cut\[0\]\.iou_to_gt\]: 1\.7 is outside \[0, 1\]", "bad_iou"),
    "iou_text": (_set_cut("iou_to_gt", "high"), ("test_s", "image"),
                 ITEM0 + r"part_neg_masks\.cut\[0\]\.iou_to_gt\]: 'high' is not a number", "bad_iou"),
    "iou_missing": (_drop_cut("iou_to_gt"), ("test_s", "image"),
                    ITEM0 + r"part_neg_masks\.cut\[0\]\.iou_to_gt\]: missing \(required for cutout\)", "bad_iou"),
    "rank_text": (_set_cut("rank", "abc"), ("test_s", "image"),
                  ITEM0 + r"part_neg_masks\.cut\[0\]\.rank\]: 'abc' is not a rank \(an integer\)", "bad_rank"),
    "rank_fraction": (_set_cut("rank", 1.5), ("test_s", "image"),
                      ITEM0 + r"part_neg_masks\.cut\[0\]\.rank\]: 1\.5 is not a rank", "bad_rank"),
    "rank_bool": (_set_cut("rank", True), ("test_s", "image"),
                  ITEM0 + r"part_neg_masks\.cut\[0\]\.rank\]: True is not a rank", "bad_rank"),
    "action": (_set_cut("action", "maybe"), ("test_s", "image"),
               ITEM0 + r"part_neg_masks\.cut\[0\]\.action\]: unknown action 'maybe'", "bad_action"),
    "mask_type": (_edit_json("test_s_image_filtered.json",
                             lambda d: d[0]["part_neg_masks"].__setitem__("blur", [{"mask_path": "x.png"}])),
                  ("test_s", "image"), ITEM0 + r"part_neg_masks\.blur\]: unknown mask type 'blur'",
                  "unknown_mask_type"),
    "mask_path": (_drop_cut("mask_path"), ("test_s", "image"),
                  ITEM0 + r"part_neg_masks\.cut\[0\]\.mask_path\]: missing", "bad_item"),
    "too_many_frames": (_edit_json("test_s_video_filtered.json",
                                   lambda d: d[0].__setitem__("frames", d[0]["frames"] * 6)),
                        ("test_s", "video"), r"test_s_video_filtered\.json \[item 0 uid=bbb_2000_12000_dog_1 "
                        r"frames\]: 12 frames listed, a clip has 10", "bad_frames"),
    "frame_index": (_edit_json("test_s_video_filtered.json", lambda d: d[0]["frames"][1].__setitem__("frame", 10)),
                    ("test_s", "video"), r"frames\[1\]\.frame\]: 10 is not a frame index 0\.\.9", "bad_frames"),
    "missing_frame": (lambda root: (root / "media" / "bbb_2000_12000" / "frames" / "7.jpg").unlink(),
                      ("test_s", "image"), r"frames/7\.jpg \[test_s_image_filtered\.json item 0 "
                      r"uid=bbb_2000_12000_dog_1 clip\]: file not found", "missing_media", 2),  # both dogs' clip
    "mask_path_up": (_set_cut("mask_path", "../../outside.png"), ("test_s", "image"),
                     ITEM0 + r"part_neg_masks\.cut\[0\]\.mask_path\]: '\.\./\.\./outside\.png' leaves the "
                     r"benchmark root", "unsafe_path"),
    "mask_path_absolute": (_set_cut("mask_path", "/etc/hostname"), ("test_s", "image"),
                           ITEM0 + r"part_neg_masks\.cut\[0\]\.mask_path\]: '/etc/hostname' leaves the "
                           r"benchmark root", "unsafe_path"),
    "missing_mask": (lambda root: (root / "candidates" / "bbb_2000_12000_dog_1" / "cutout_m.png").unlink(),
                     ("test_s", "image"), r"cutout_m\.png \[test_s_image_filtered\.json item 0 "
                     r"uid=bbb_2000_12000_dog_1 cutout-1@frame 4\]: mask file not found", "missing_media"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_bad_item_raises_and_lenient_skips(copy, name):
    change, (split, mode), message, reason, *count = CORRUPTIONS[name]
    change(copy)
    with pytest.raises(DataError, match=message):
        list(Benchmark(copy, check_media=True).records(split, mode))
    lenient = Benchmark(copy, check_media=True, lenient=True)
    uids = [r.uid for r in lenient.records(split, mode)]
    assert "bbb_2000_12000_dog_1" not in uids
    assert lenient.skipped[reason] == len(lenient.messages) == (count[0] if count else 1)


ROW = "bbb_2000_12000,bbb_2000_12000_x_1,test_s,0"  # appended as line 9 of metadata.csv


@pytest.mark.parametrize("row,message", [
    (ROW + ",e,x", r"metadata\.csv \[line 9 uid=bbb_2000_12000_x_1 kfid\]: 'x' is not an integer"),
    (ROW + ",e,12", r"metadata\.csv \[line 9 uid=bbb_2000_12000_x_1 kfid\]: 12 is outside 0\.\.9"),
    (ROW, r"metadata\.csv \[line 9\]: expected 6 columns vid,uid,split,fid,exp,kfid, got 4"),
    ("../x,bbb_2000_12000_x_1,test_s,0,e,4", r"metadata\.csv \[line 9 vid\]: '\.\./x' is not a plain name"),
    ("bbb_2000_12000,/etc/passwd_x_1,test_s,0,e,4", r"metadata\.csv \[line 9 uid\]: '/etc/passwd_x_1' is not a "
                                                   r"plain name"),
    (",..,test_s,0,e,4", r"metadata\.csv \[line 9 uid\]: '\.\.' is not a plain name"),
], ids=["kfid_text", "kfid_range", "four_columns", "vid_up", "uid_absolute", "uid_dots"])
def test_bad_metadata_row(copy, row, message):
    with open(copy / META / "metadata.csv", "a") as handle:
        handle.write(row + "\n")
    with pytest.raises(DataError, match=message):
        Benchmark(copy)
    lenient = Benchmark(copy, lenient=True)
    assert lenient.skipped["bad_metadata"] == 1 and len(lenient.metadata()) == 5


@pytest.mark.parametrize("change,message", [
    (lambda root: (root / META / "metadata.csv").unlink(), r"metadata\.csv: metadata\.csv not found"),
    (lambda root: (root / META / "test_s_image_filtered.json").write_text('[{"uid": '),
     r"test_s_image_filtered\.json: invalid JSON: Expecting value at line 1"),
    (lambda root: (root / META / "test_s_image_filtered.json").write_text('"text"'),
     r"test_s_image_filtered\.json: top level must be a list or a dict of items, got str"),
    (lambda root: (root / META / "metadata.csv").write_text(""), r"metadata\.csv: has no rows"),
    (lambda root: (root / META / "metadata.csv").write_text("vid,uid,split,fid,exp,kfid\n"),
     r"metadata\.csv: has no rows"),
    (lambda root: (root / META / "test_s_image_filtered.json").write_text("[" * 100000),
     r"test_s_image_filtered\.json: JSON nested too deeply"),
], ids=["no_metadata", "bad_json", "top_level", "empty_metadata", "header_only", "deep_json"])
def test_unreadable_files_fail_even_when_lenient(copy, change, message):
    change(copy)
    with pytest.raises(DataError, match=message):
        list(Benchmark(copy, lenient=True).records("test_s", "image"))


# ------------------------------------------------------------------------------- ranks
def test_any_rank_on_types_evaluated_over_all_ranks(copy):
    def ranks(d):
        mower = d["ccc_3000_13000_mower_1"]
        mower["gt_mask_path"]["rank"] = 5
        mower["part_neg_masks"]["merge"][0]["rank"] = -1  # the spec's "all ranks"
        mower["full_neg_masks"][0]["rank"] = 0
        mower["null_masks"][0].pop("rank")
    _edit_json("test_u_image_filtered.json", ranks)(copy)
    bench = Benchmark(copy, check_media=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # nothing unusual for these types
        (mower,) = bench.records("test_u", "image")
    assert [(c.cand_id, c.rank, c.setting) for c in mower.candidates] == [
        ("perfect-0", 5, "perfect"), ("merge-0", -1, "merge"), ("full_neg-0", 0, "full_neg"),
        ("null-0", -1, "null")]
    assert bench.unusual_ranks[("test_u", "image")] == {}


def _odd_ranks(d):
    """cutout ranks 0 and 3, a dilate without a rank (dog_1); an erode of rank -1 (dog_2)."""
    dog1, dog2 = d[0], d[1]
    dog1["part_neg_masks"]["cut"][0]["rank"] = 0
    dog1["part_neg_masks"]["cut"][1]["rank"] = 3
    dog1["part_neg_masks"]["Dilate"][0].pop("rank")
    dog2["part_neg_masks"]["erode"][0]["rank"] = -1


def test_unusual_ranks_on_ranked_types_are_read_and_counted(copy):
    _edit_json("test_s_image_filtered.json", _odd_ranks)(copy)
    bench = Benchmark(copy, check_media=True)
    with pytest.warns(DataWarning) as caught:
        dog1, dog2 = bench.records("test_s", "image")
    # One warning for the whole file, counts per type.
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"{copy / META / 'test_s_image_filtered.json'}: 4 cutout/erode/dilate candidate(s) with a rank "
        "other than 1 (Hard) / 2 (Medium), read and scored only in Overall: cutout 2 (rank 0: 1, "
        "rank 3: 1), erode 1 (rank -1: 1), dilate 1 (rank missing: 1)")
    # The bare type is none of the nine settings: such a sample counts only in Overall.
    assert [(c.cand_id, c.rank, c.setting) for c in dog1.candidates] == [
        ("perfect-0", -1, "perfect"), ("cutout-0", 0, "cutout"), ("cutout-1", 3, "cutout"),
        ("dilate-0", -1, "dilate"), ("full_neg-0", 1, "full_neg")]
    assert [(c.cand_id, c.rank, c.setting) for c in dog2.candidates] == [
        ("perfect-0", -1, "perfect"), ("erode-0", -1, "erode")]
    assert bench.unusual_ranks[("test_s", "image")] == {
        ("cutout", 0): 1, ("cutout", 3): 1, ("dilate", "missing"): 1, ("erode", -1): 1}
    # Another file, read with protocol ranks only, adds no warning and no counts.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        list(bench.records("test_s", "video"))
    assert bench.unusual_ranks[("test_s", "video")] == {}


def test_unusual_ranks_of_a_skipped_item_are_not_counted(copy):
    def odd_and_broken(d):
        _odd_ranks(d)
        d[0]["full_neg_masks"][0]["iou_to_gt"] = 1.7  # dog_1 is skipped after its ranks were read
    _edit_json("test_s_image_filtered.json", odd_and_broken)(copy)
    bench = Benchmark(copy, lenient=True)
    with pytest.warns(DataWarning, match=r"1 cutout/erode/dilate candidate\(s\).*: erode 1 \(rank -1: 1\)$"):
        (dog2,) = bench.records("test_s", "image")
    assert dog2.uid == "bbb_2000_12000_dog_2" and bench.skipped["bad_iou"] == 1
    assert bench.unusual_ranks[("test_s", "image")] == {("erode", -1): 1}


@pytest.mark.parametrize("value,rank", [("2", 2), (" 1 ", 1), (2.0, 2), ("-1", -1)])
def test_rank_spellings_read_as_integers(copy, value, rank):
    _set_cut("rank", value)(copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dog1 = next(iter(Benchmark(copy).records("test_s", "image")))
    assert dog1.candidates[1].rank == rank
