"""validate.py and ``auditor-lite data validate`` on the upstream-layout fixture and broken copies."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from PIL import Image

from auditor_lite.cli import main
from auditor_lite.data.validate import _bar, _histogram, validate_benchmark

META = "train_test_meta_files"


@pytest.fixture
def copy(fixtures_dir, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(fixtures_dir / "upstream_small", root)
    return root


def test_histogram_bins_and_bar():
    # 10 bins over [0, 1]; 1.0 falls in the last bin, 0.1 opens the second.
    assert _histogram([0.0, 0.05, 0.1, 0.5, 0.95, 1.0]) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert _bar([0, 1, 9, 5]) == " .@+"  # levels " .:-=+*#%@" scaled to the tallest bin


def test_fixture_validates_with_summary(fixtures_dir):
    report = validate_benchmark(fixtures_dir / "upstream_small")
    assert report.errors == []
    text = report.format()
    assert "metadata.csv: train 2 expressions (1 null), test_s 2 expressions (0 null), " \
           "test_u 1 expressions (0 null)" in text
    assert "media checked: 3 clips, 30 frames, 4 audio files, 21 masks" in text
    assert "== test_s / image: 2 expressions (0 null), 1 clips, 7 candidate masks" in text
    # test_s image cutouts have IoU 0.75 (rank 1) and 0.5 (rank 2): mean 0.625, bins 5 and 7.
    assert re.search(r"\n  cutout +2 +0\.500 +0\.625 +0\.750 +\|     @ @  \| 0 0 0 0 0 1 0 1 0 0\n"
                     r"    rank 1 +1 +0\.750 +0\.750 +0\.750 .*\n    rank 2 +1 +0\.500 ", text)
    assert "actions cutout   minor revision 1, major revision 1" in text
    assert "  skipped: not_in_metadata 1" in text
    assert "== test_u / video" not in text  # the fixture has no such file
    # Tiny fixture audio is a warning (0.1 s), not an error.
    assert report.warnings == ["4 audio file(s) are not ~10 s, e.g. "
                               f"{fixtures_dir / 'upstream_small' / 'media' / 'aaa_1000_11000' / 'audio.wav'} (0.10 s)"]
    assert text.endswith("result: OK")


def _write_wav(path, rate=16000, channels=1):
    sf.write(path, np.zeros((1600, channels), np.float32), rate, subtype="PCM_16")


def _edit_cut(root, **values):
    path = root / META / "test_s_image_filtered.json"
    data = json.loads(path.read_text())
    data[0]["part_neg_masks"]["cut"][0].update(values)
    path.write_text(json.dumps(data))


MEDIA_ERRORS = {
    "sample_rate": (lambda r: _write_wav(r / "media/ccc_3000_13000/audio.wav", rate=8000),
                    r"ccc_3000_13000/audio\.wav: sample rate 8000 Hz, the benchmark needs 16000 Hz"),
    "undecodable_audio": (lambda r: (r / "media_cross/aaa_1000_11000/audio.wav").write_bytes(b"RIFFjunk"),
                          r"media_cross/aaa_1000_11000/audio\.wav: not a decodable audio file"),
    "mask_size": (lambda r: Image.new("L", (4, 4)).save(r / "candidates/ccc_3000_13000_mower_1/merge.png"),
                  r"merge\.png: mask is 4x4, the frames of ccc_3000_13000 are 8x8"),
    "corrupt_mask": (lambda r: (r / "candidates/bbb_2000_12000_dog_2/erode_h.png").write_bytes(b"\x89PNG"),
                     r"erode_h\.png: not a readable image"),
    "frame_size": (lambda r: Image.new("RGB", (6, 6)).save(r / "media/aaa_1000_11000/frames/3.jpg"),
                   r"aaa_1000_11000/frames: frames differ in size \[\(6, 6\), \(8, 8\)\]"),
    "missing_mask": (lambda r: (r / "candidates/aaa_1000_11000_cello_1/merge.png").unlink(),
                     r"merge\.png \[train_audit_only_filtered\.json item 0 uid=aaa_1000_11000_cello_1 "
                     r"merge-0@frame 2\]: mask file not found"),
}


@pytest.mark.parametrize("name", sorted(MEDIA_ERRORS))
def test_broken_media_is_an_error(copy, name):
    change, message = MEDIA_ERRORS[name]
    change(copy)
    report = validate_benchmark(copy)
    assert any(re.search(message, e) for e in report.errors), report.errors
    assert report.format().endswith(f"result: {len(report.errors)} error(s)")
    assert validate_benchmark(copy, check_media=False).errors == []  # --no-media reads JSON/CSV only


def test_malformed_item_is_an_error_unless_lenient(copy):
    _edit_cut(copy, iou_to_gt=1.7)
    message = ("test_s_image_filtered.json [item 0 uid=bbb_2000_12000_dog_1 part_neg_masks.cut[0].iou_to_gt]: "
               "1.7 is outside [0, 1]")
    strict = validate_benchmark(copy)
    assert len(strict.errors) == 1 and strict.errors[0].endswith(message)
    lenient = validate_benchmark(copy, lenient=True)
    assert lenient.errors == [] and any(w.endswith(message) for w in lenient.warnings)
    assert "== test_s / image: 1 expressions" in lenient.format()
    assert "skipped: bad_iou 1, not_in_metadata 1" in lenient.format()


def test_label_contradictions_are_warnings(copy):
    _edit_cut(copy, action="major revision")  # IoU 0.75 means minor revision
    train = copy / META / "train_audit_only_filtered.json"
    data = json.loads(train.read_text())
    entry = data["aaa_1000_11000_cello_1"]
    entry["part_neg_masks"]["dilate"][0]["action"] = "accept"  # a dilate is never accepted
    entry["part_neg_masks"]["erode"][0]["rank"] = 3
    entry["full_neg_masks"][0]["response"] = entry["full_neg_masks"][0]["response"].replace("full_neg", "merge")
    train.write_text(json.dumps(data))
    _write_wav(copy / "media/bbb_2000_12000/audio.wav", channels=2)
    report = validate_benchmark(copy)
    assert report.errors == []
    joined = "\n".join(report.warnings)
    assert "test_s/image uid=bbb_2000_12000_dog_1 cutout-0@frame 4: action 'major revision' disagrees " \
           "with IoU 0.7500" in joined
    assert "train/train uid=aaa_1000_11000_cello_1 dilate-0@frame 2: action 'accept' is not legal for dilate" in joined
    assert "train/train: 1 cutout/erode/dilate candidate(s) with a rank other than 1 (Hard) / 2 (Medium), " \
           "read and scored only in Overall: erode 1 (rank 3: 1)" in report.warnings
    assert "full_neg-0@frame 2: response says <mask_type> 'merge', label is 'full_neg'" in joined
    assert "bbb_2000_12000/audio.wav: 2 channels" in joined


def test_unusual_ranks_are_counted_not_errors(copy):
    path = copy / META / "test_s_image_filtered.json"
    data = json.loads(path.read_text())
    cuts = data[0]["part_neg_masks"]["cut"]
    cuts[0]["rank"], cuts[1]["rank"] = 0, -1
    data[0]["part_neg_masks"]["Dilate"][0].pop("rank")
    data[0]["full_neg_masks"][0]["rank"] = -1  # the spec's "all ranks": nothing unusual
    path.write_text(json.dumps(data))
    report = validate_benchmark(copy)  # the reader's DataWarning is turned into the line below
    assert report.errors == []
    rank_lines = [w for w in report.warnings if "rank other than" in w]
    assert rank_lines == ["test_s/image: 3 cutout/erode/dilate candidate(s) with a rank other than "
                          "1 (Hard) / 2 (Medium), read and scored only in Overall: cutout 2 "
                          "(rank -1: 1, rank 0: 1), dilate 1 (rank missing: 1)"]
    section = next(s for s in report.sections if (s.split, s.mode) == ("test_s", "image"))
    assert section.unusual_ranks == {("cutout", -1): 1, ("cutout", 0): 1, ("dilate", "missing"): 1}
    text = report.format()
    assert re.search(r"\n  cutout +2 .*\n    rank -1 +1 +0\.500 .*\n    rank 0 +1 +0\.750 ", text)
    assert text.endswith("result: OK")


def test_missing_metadata_and_duplicates(copy):
    with open(copy / META / "metadata.csv", "a") as handle:
        handle.write("ccc_3000_13000,ccc_3000_13000_mower_1,test_u,0,The same uid again.,1\n")
    report = validate_benchmark(copy)
    assert report.errors == []
    assert "metadata.csv: 1 test_u uid(s) listed more than once (the last row is used)" in report.warnings
    (copy / META / "metadata.csv").unlink()
    report = validate_benchmark(copy)
    assert len(report.errors) == 1 and "metadata.csv: metadata.csv not found" in report.errors[0]


def test_cli_exit_codes(copy):
    runner = CliRunner()
    ok = runner.invoke(main, ["data", "validate", str(copy)])
    assert ok.exit_code == 0, ok.output
    assert "result: OK" in ok.output and "== train / train: 2 expressions (1 null)" in ok.output
    (copy / "candidates/bbb_2000_12000_dog_1/cutout_m.png").unlink()
    broken = runner.invoke(main, ["data", "validate", str(copy)])
    assert broken.exit_code == 1
    assert "cutout_m.png [test_s_image_filtered.json item 0 uid=bbb_2000_12000_dog_1 cutout-1@frame 4]: " \
           "mask file not found" in broken.output
    assert runner.invoke(main, ["data", "validate", "--no-media", str(copy)]).exit_code == 0
    assert runner.invoke(main, ["data", "validate", "--lenient", str(copy)]).exit_code == 0
