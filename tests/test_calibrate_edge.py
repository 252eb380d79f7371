"""``auditor-lite calibrate`` in the edge install: refit the packaged model's score calibration on a
labelled benchmark (the accuracy floor's 30 expressions, written in the MQ-RAVSBench layout here).
No torch, no scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from auditor_lite.cli import main
from auditor_lite.data.writer import BenchmarkWriter, MaskSpec
from auditor_lite.manifest import load_manifest
from auditor_lite.media import load_mask
from auditor_lite.preprocess import prepare_audio
from auditor_lite.runtime import Auditor
from auditor_lite.runtime.files import load_audio_file, load_frames_dir
from auditor_lite.runtime.model_dir import DEFAULT_MODEL_DIR

FLOOR = Path(__file__).resolve().parent / "fixtures" / "floor"


@pytest.fixture(scope="module")
def floor_bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("floor-bench") / "bench"
    items = json.loads((FLOOR / "items.json").read_text())["items"]
    with BenchmarkWriter(root) as writer:
        for vid in sorted({item["vid"] for item in items}):
            clip = FLOOR / "clips" / vid
            audio = prepare_audio(load_audio_file(clip / "audio.ogg"), 16000)[0]
            writer.add_clip(vid, load_frames_dir(clip), audio, cross_audio=audio)
        for item in items:
            frame = item["frame"]
            masks = [load_mask(FLOOR / "masks" / item["uid"] / c["file"]) for c in item["candidates"]]
            specs = [MaskSpec(frame, c["type"], 1, c["iou"], c["action"], m.astype(bool))
                     for c, m in zip(item["candidates"], masks)]
            perfect = [m for c, m in zip(item["candidates"], masks) if c["type"] == "perfect"]
            writer.add_expression(split="test_s", uid=item["uid"], vid=item["vid"], fid=0, exp=item["expression"],
                                  kfid=frame, gt_masks={frame: perfect[0].astype(bool)} if perfect else {},
                                  candidates=specs)
    return root


def test_calibrate_refits_the_packaged_model_without_torch(floor_bench, tmp_path):
    out = tmp_path / "recalibrated"
    result = CliRunner().invoke(main, ["calibrate", "--bench", str(floor_bench), "--out", str(out),
                                       "--threads", "1", "--quiet", "--coverage", "0.8"])
    assert result.exit_code == 0, result.output
    calibration = json.loads((out / "score_calibration.json").read_text())
    assert "test_s/image" in calibration["fit_on"] and calibration["precision"] == "int8-cpu"
    assert calibration["conformal"]["coverage"] == 0.8
    assert load_manifest(out).data["score_calibration"] == "score_calibration.json"
    shipped = json.loads((DEFAULT_MODEL_DIR / "score_calibration.json").read_text())
    assert calibration["x"] != shipped["x"]                   # refitted, not copied
    auditor = Auditor.load(out, intra_op_threads=1)
    assert auditor.calibration.coverage == 0.8
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:20, 8:20] = True
    audio = 0.1 * np.sin(np.arange(32000) / 5.0)
    (r,) = auditor.audit(frames, audio, "the dog", [mask], frame_index=0)
    assert r.iou_low <= r.iou <= r.iou_high


def test_calibrate_refuses_an_existing_output_and_keeps_it(floor_bench, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["calibrate", "--bench", str(floor_bench), "--out", str(out), "--quiet"])
    assert result.exit_code != 0 and "--overwrite" in result.output and "Traceback" not in result.output
    assert (out / "mine.txt").read_text() == "keep me"
