"""``synthesize``: determinism, splits, uids, and a read-back through the reader and validator."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from auditor_lite.data import synth
from auditor_lite.data.assets import load_library
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import META_DIR, METADATA_CSV, NULL_UID_PREFIX, vid_from_uid
from auditor_lite.data.validate import validate_benchmark

CLIPS = 8
SIZE = 48


@pytest.fixture(scope="module")
def library():
    return load_library(procedural=True, seed=synth.LIBRARY_SEED)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("synth") / "bench"
    summary = synth.synthesize(out, clips=CLIPS, seed=3, size=SIZE, procedural=True,
                               progress=False, workers=1)
    return out, summary


def meta_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / META_DIR).iterdir())}


def test_same_seed_same_bytes_for_any_worker_count(bench, tmp_path):
    root, _ = bench
    again = tmp_path / "two_workers"
    synth.synthesize(again, clips=CLIPS, seed=3, size=SIZE, procedural=True, progress=False,
                     workers=2)
    assert meta_files(again) == meta_files(root)
    frame = "media/syn0003_00005_0_10000/frames/4.jpg"
    assert (again / frame).read_bytes() == (root / frame).read_bytes()


def test_other_seed_other_benchmark(bench, tmp_path):
    root, _ = bench
    other = tmp_path / "seed4"
    synth.synthesize(other, clips=2, seed=4, size=SIZE, procedural=True, progress=False, workers=1)
    rows = (other / META_DIR / METADATA_CSV).read_text()
    assert "syn0004_00000_0_10000" in rows and rows not in (root / META_DIR / METADATA_CSV).read_text()


def test_read_back_with_reader_and_validator(bench):
    root, summary = bench
    assert f"{CLIPS} clips" in summary and "audio need:" in summary
    report = validate_benchmark(root, check_media=True)
    assert report.errors == [], report.format()
    benchmark = Benchmark(root, check_media=True)
    meta = benchmark.metadata()
    seen = Counter()
    for split, mode in benchmark.available():
        for record in benchmark.records(split, mode):
            seen[(split, mode)] += 1
            row = meta[record.uid]
            assert record.exp == row.exp and record.kfid == row.kfid
            assert vid_from_uid(record.uid) == record.vid == row.vid
            assert record.clip.audio_path.is_file()
            if record.is_null:
                assert "media_cross" in str(record.clip.audio_path) and not record.gt_masks
                assert {c.mask_type for c in record.candidates} <= {"full_neg", "null"}
                continue
            assert record.kfid in record.gt_masks
            frames = {c.frame for c in record.candidates}
            if mode == "video":
                assert frames == set(record.gt_masks)      # every frame the target is seen in
            else:
                assert frames == {record.kfid}
            types = {c.mask_type for c in record.candidates}
            assert {"perfect", "cutout", "erode", "dilate", "null"} <= types
    per_split = Counter(r.split for r in meta.values())
    assert seen[("train", "train")] == per_split["train"]
    for split in ("test_s", "test_u"):
        assert seen.get((split, "image"), 0) == seen.get((split, "video"), 0) == per_split[split]


def test_splits_categories_and_uids(library):
    """Over many clips: test_u ~12%, unseen categories never in train/test_s scenes, uids parse."""
    unseen = set(synth.unseen_categories(library.categories()))
    assert 1 <= len(unseen) <= 0.3 * len(library.categories())
    splits, audio = Counter(), Counter()
    train_cats, test_u_targets = set(), set()
    for index in range(60):
        clip = synth.make_clip(library, seed=1, index=index, size=32)
        splits[clip.split] += 1
        for e in clip.expressions:
            assert vid_from_uid(e.uid) == clip.vid == e.uid.removeprefix(NULL_UID_PREFIX).rsplit("_", 2)[0]
            if e.null:
                assert e.uid.startswith(NULL_UID_PREFIX) and clip.cross_audio is not None
                continue
            category = e.uid.rsplit("_", 2)[1]
            if clip.split == "test_u":
                test_u_targets.add(category)
            else:
                assert category not in unseen
                train_cats.add(category)
            audio[e.needs_audio] += 1
    assert test_u_targets and test_u_targets <= {synth.uid_token(c) for c in unseen}
    assert not test_u_targets & train_cats
    assert 2 <= splits["test_u"] <= 16 and splits["train"] > splits["test_s"] > 0
    assert 0.15 <= audio[True] / sum(audio.values()) <= 0.5


def test_unseen_categories_are_fixed_by_name():
    cats = [f"c{i}" for i in range(20)]
    assert synth.unseen_categories(cats) == synth.unseen_categories(list(reversed(cats)))
    assert len(synth.unseen_categories(cats)) == 4
    assert synth.unseen_categories(["only"]) == []


@pytest.mark.parametrize("category, token", [("guitar", "guitar"), ("hair_dryer", "hair-dryer"),
                                             ("french horn", "french-horn"), ("__", "object")])
def test_uid_tokens_keep_rsplit_working(category, token):
    assert synth.uid_token(category) == token
    vid = synth.clip_vid(0, 12)
    assert f"{vid}_{synth.uid_token(category)}_1".rsplit("_", 2)[0] == vid


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="clips"):
        synth.synthesize(tmp_path / "x", clips=0, seed=0, procedural=True, progress=False)
    with pytest.raises(ValueError, match="size"):
        synth.synthesize(tmp_path / "x", clips=1, seed=0, size=8, procedural=True, progress=False)


def test_metadata_rows_are_complete(bench):
    root, _ = bench
    with open(root / META_DIR / METADATA_CSV, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["vid", "uid", "split", "fid", "exp", "kfid"]
    assert len({r[0] for r in rows[1:]}) == CLIPS
    assert all(r[4].endswith(".") and 0 <= int(r[5]) <= 9 for r in rows[1:])
    assert np.mean([r[1].startswith(NULL_UID_PREFIX) for r in rows[1:]]) < 0.5
