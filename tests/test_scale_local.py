"""The dataset-scale audit without Ray: clip lists (checked, confined), the local executor (same
predictions as the single-clip audit), and ``--executor ray`` without the ``scale`` extra."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor_lite.audit_cli import SAMPLE_CLIP, audit
from auditor_lite.data.schema import DataError
from auditor_lite.scale.tasks import read_clip_list

MASKS = sorted((SAMPLE_CLIP / "masks").glob("*.png"))[:3]


def invoke(args):
    return CliRunner().invoke(audit, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def clip_dir(tmp_path):
    """The sample clip copied into a folder with a clip list beside it (relative paths)."""
    shutil.copytree(SAMPLE_CLIP, tmp_path / "clip")
    return tmp_path


def write_list(folder: Path, rows, name="clips.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sample_row(**change):
    row = {"uid": "sample", "expression": "the sounding drum", "frames": "clip/frames", "audio": "clip/audio.wav",
           "frame": 8, "masks": [f"clip/masks/{m.name}" for m in MASKS], "split": "test_s", "mode": "image"}
    row.update(change)
    return row


def test_clip_list_local_executor_equals_the_single_clip_audit(clip_dir):
    clips = write_list(clip_dir, [sample_row()])
    out = clip_dir / "out.jsonl"
    result = invoke(["--clips", clips, "--out", out, "--threads", 1, "--no-progress"])
    assert result.exit_code == 0, result.output
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    single = json.loads(invoke(["--frames", SAMPLE_CLIP / "frames", "--audio", SAMPLE_CLIP / "audio.wav",
                                "--expression", "the sounding drum", "--frame", 8, "--masks", *MASKS, "--json",
                                "--threads", 1]).output)["results"]
    assert [p["cand_id"] for p in preds] == [f"clip/masks/{m.name}" for m in MASKS]
    assert all(p["split"] == "test_s" and p["mode"] == "image" and p["frame"] == 8 for p in preds)
    for pred, ref in zip(preds, single):
        assert pred["iou"] == pytest.approx(min(1.0, max(0.0, ref["iou"])), abs=1e-6)
        assert pred["mask_type"] == ref["mask_type"] and pred["action"] == ref["action"]
        assert pred["type_probs"] == pytest.approx(ref["type_probs"], abs=1e-6)
    assert not (clip_dir / "out.jsonl.parts").exists() and not (clip_dir / "out.jsonl.errors.jsonl").exists()
    again = invoke(["--clips", clips, "--out", out, "--no-progress"])   # a rerun skips what is written
    assert "0 audited now, 1 already written" in again.output and out.read_text().splitlines() == \
        [json.dumps(p, separators=(",", ":")) for p in preds]


def test_clip_with_a_corrupt_mask_is_an_error_row_and_the_others_are_audited(clip_dir):
    (clip_dir / "clip" / "masks" / "bad.png").write_bytes(b"not a png")
    clips = write_list(clip_dir, [sample_row(uid="bad", masks=["clip/masks/bad.png"]), sample_row()])
    out = clip_dir / "out.jsonl"
    result = invoke(["--clips", clips, "--out", out, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert {json.loads(line)["uid"] for line in out.read_text().splitlines()} == {"sample"}
    errors = [json.loads(line) for line in (clip_dir / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["uid"], e["masks"], e["type"]) for e in errors] == [("bad", 1, "DataError")]
    assert "bad.png" in errors[0]["error"] and "1 clips failed" in result.output


@pytest.mark.parametrize("change, message", [
    ({"frames": "/etc"}, "line 1 frames]: '/etc' is absolute"),
    ({"audio": "../x.wav"}, "line 1 audio]: '../x.wav' leaves the list's folder"),
    ({"masks": ["clip/../../m.png"]}, "line 1 masks[0]]: 'clip/../../m.png' leaves"),
    ({"expression": None}, "line 1 expression]: missing"),
    ({"video": "v.mp4"}, "line 1 frames/video]: give the clip's frames folder or its video"),
    ({"frame": 12}, "line 1 frame]: must be an integer 0-9"),
    ({"masks": []}, "line 1 masks]: must be a non-empty list"),
    ({"split": "val"}, "line 1 split]: unknown split 'val'"),
])
def test_clip_list_errors_name_the_file_line_and_column(clip_dir, change, message):
    clips = write_list(clip_dir, [sample_row(**change)])
    with pytest.raises(DataError) as err:
        read_clip_list(clips)
    assert str(clips) in str(err.value) and message in str(err.value)
    result = invoke(["--clips", clips, "--out", clip_dir / "o.jsonl", "--no-progress"])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_allow_absolute_and_repeated_uids(clip_dir):
    row = sample_row(frames=str(clip_dir / "clip" / "frames"))
    tasks = read_clip_list(write_list(clip_dir, [row]), allow_absolute=True)
    assert tasks[0]["frames"] == str(clip_dir / "clip" / "frames")
    with pytest.raises(DataError, match="uid 'sample' appears twice"):
        read_clip_list(write_list(clip_dir, [sample_row(), sample_row()]))


def test_executor_ray_without_the_extra_names_it(clip_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)     # as in the base install: import ray fails
    for name in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                 "RAY_BACKEND_LOG_LEVEL"):      # set by import_ray before it imports: restored afterwards
        monkeypatch.delenv(name, raising=False)
    clips = write_list(clip_dir, [sample_row()])
    result = invoke(["--clips", clips, "--out", clip_dir / "o.jsonl", "--executor", "ray"])
    assert result.exit_code != 0 and "pip install 'auditor-lite[scale]'" in result.output
    assert "Traceback" not in result.output
    usage = invoke(["--bench", clip_dir, "--out", clip_dir / "o.jsonl", "--workers", 2])
    assert usage.exit_code != 0 and "--address and --workers need --executor ray" in usage.output
