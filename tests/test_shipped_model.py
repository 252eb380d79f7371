"""The shipped student checkpoint: loads through the Auto classes in a clean process, fits the
student budget, and computes what the shipped INT8 default model computes (up to quantization)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from auditor_lite.model import AuditorModel  # noqa: E402
from auditor_lite.model.checkpoint import default_checkpoint_dir  # noqa: E402
from auditor_lite.runtime.auditor import Auditor  # noqa: E402
from auditor_lite.runtime.files import (load_audio_file, load_frames_dir, load_mask_files,  # noqa: E402
                                       mask_dir_files)

SAMPLE = Path(__file__).resolve().parents[1] / "auditor_lite" / "assets" / "sample_clip"
STUDENT_BUDGET = 5_000_000


def test_checkpoint_loads_with_automodel_in_a_clean_process(tmp_path):
    code = (
        "import json, sys\n"
        "import auditor_lite.model\n"
        "from transformers import AutoConfig, AutoModel\n"
        "path = sys.argv[1]\n"
        "model = AutoModel.from_pretrained(path).eval()\n"
        "config = AutoConfig.from_pretrained(path)\n"
        "inputs = model.example_inputs(num_masks=4)\n"
        "out = model(**inputs)\n"
        "print(json.dumps({'cls': type(model).__name__, 'preset': config.preset_name,\n"
        "                  'params': sum(p.numel() for p in model.parameters()),\n"
        "                  'dtype': str(next(model.parameters()).dtype), 'n': int(out.iou.shape[0])}))\n")
    # A fresh Hugging Face home and offline mode: nothing cached, nothing downloadable.
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(default_checkpoint_dir())], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["cls"] == "AuditorModel" and info["preset"] == "student" and info["n"] == 4
    assert info["params"] <= STUDENT_BUDGET and info["dtype"] == "torch.float32"


def test_checkpoint_matches_the_shipped_int8_model_on_the_sample_clip():
    auditor = Auditor.load(precision="int8-cpu")
    seen = {}
    run_context, run_masks = auditor.run_context, auditor.run_masks

    def spy_context(feed):
        seen["feed"] = feed
        return run_context(feed)

    def spy_masks(context, masks, key_frame):
        seen["masks"] = masks
        seen["raw"] = run_masks(context, masks, key_frame)
        return seen["raw"]

    auditor.run_context, auditor.run_masks = spy_context, spy_masks
    truth = json.loads((SAMPLE / "truth.json").read_text())
    auditor.audit(load_frames_dir(SAMPLE / "frames"), load_audio_file(SAMPLE / "audio.wav"),
                  (SAMPLE / "expression.txt").read_text().strip(),
                  load_mask_files(mask_dir_files(SAMPLE / "masks")), frame_index=truth["frame_index"])
    model = AuditorModel.from_pretrained(default_checkpoint_dir()).eval()
    feed = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in seen["feed"].items()}
    with torch.no_grad():
        out = model(**feed, masks=torch.from_numpy(seen["masks"]))
    int8_iou, int8_types = seen["raw"][0], seen["raw"][1]
    # INT8 quantization moves IoUs by a few hundredths; a different model would move them far more.
    assert np.abs(out.iou.numpy() - int8_iou).mean() < 0.05
    assert np.mean(out.type_logits.numpy().argmax(1) == int8_types.argmax(1)) >= 0.75
