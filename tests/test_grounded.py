"""The grounded auditor (stage A + stage B): export, runtime, per-mask independence, ablation flags.

The model directory is the runtime tests' tiny one (tests/runtime_helpers.py): a randomly
initialised GroundedAuditor (real 128-px inputs, narrow layers) exported with the project's
exporter, and a stand-in text encoder behind the real MiniLM tokenizer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from auditor_lite.motion import cell_motion  # noqa: E402
from auditor_lite.model.scorer import mask_crops, mask_features  # noqa: E402
from auditor_lite.runtime import Auditor  # noqa: E402

@pytest.fixture(scope="module")
def artifact():
    from runtime_helpers import tiny_artifact

    return tiny_artifact()


def clip(seed=0, masks=13, size=96):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (10, size, size, 3), dtype=np.uint8)
    audio = (0.3 * rng.standard_normal(16000 * 10)).clip(-1, 1).astype(np.float32)
    stack = np.zeros((masks, size, size), bool)
    for i in range(masks):
        y, x = rng.integers(0, size - 30, 2)
        stack[i, y:y + rng.integers(5, 30), x:x + rng.integers(5, 30)] = True
    stack[-1] = False                     # an empty candidate
    return frames, audio, stack


def test_manifest_says_grounded_and_runtime_matches_torch(artifact):
    from auditor_lite import preprocess as pp

    out, model = artifact
    auditor = Auditor.load(out, intra_op_threads=1)
    assert auditor.config.architecture == auditor.manifest.data["architecture"] == "grounded"
    frames, audio, masks = clip()
    results = auditor.audit(frames, audio, "the dog barking on the left", masks, frame_index=4)
    tokens, token_mask = auditor.text.token_states("the dog barking on the left", model.max_tokens)
    with torch.no_grad():
        context = model.encode_context(torch.from_numpy(pp.prepare_frames(frames, 128)), torch.tensor([4]),
                                       torch.from_numpy(pp.log_mel(pp.prepare_audio(audio, 16000)[0])[None]),
                                       torch.from_numpy(tokens.copy()), torch.from_numpy(token_mask.copy()),
                                       torch.from_numpy(cell_motion(pp.prepare_frames(frames, 128)[0] * 255.0)[None]))
        iou, _, _ = model.audit_masks(context, torch.from_numpy(pp.prepare_masks(masks, 128)),
                                      torch.from_numpy(pp.prepare_key_frame(frames[4], 128)))
    np.testing.assert_allclose([r.raw_iou for r in results], iou.numpy(), atol=1e-4)
    assert results[-1].empty


def test_a_mask_is_audited_the_same_alone_and_among_13(artifact):
    auditor = Auditor.load(artifact[0], intra_op_threads=1)
    frames, audio, masks = clip(seed=3)
    together = auditor.audit(frames, audio, "the sounding guitar", masks, frame_index=2)
    for i in (0, 5, 12):
        (alone,) = auditor.audit(frames, audio, "the sounding guitar", masks[i], frame_index=2)
        assert alone.raw_iou == pytest.approx(together[i].raw_iou, abs=1e-6)
        assert alone.type_probs == pytest.approx(together[i].type_probs, abs=1e-5)
        assert alone.action_probs == pytest.approx(together[i].action_probs, abs=1e-5)


def test_expression_and_audio_reach_the_context(artifact):
    auditor = Auditor.load(artifact[0], intra_op_threads=1)
    frames, audio, masks = clip(seed=5)

    def raw(expression, wave):
        return np.array([r.raw_iou for r in auditor.audit(frames, wave, expression, masks, frame_index=0,
                                                          allow_silent=True)])

    base = raw("the cat on the left", audio)
    assert np.abs(base - raw("the violin being played", audio)).max() > 1e-6
    assert np.abs(base - raw("the cat on the left", np.zeros_like(audio))).max() > 1e-6


def test_mask_features_and_crops_are_per_mask():
    torch.manual_seed(1)
    context, key = torch.randn(1, 1025), torch.rand(1, 3, 128, 128)
    masks = (torch.rand(6, 1, 128, 128) > 0.8).float()
    masks[2] = 0
    full = mask_features(context, masks, key)
    crops = mask_crops(masks, key)
    for i in range(6):
        assert torch.allclose(mask_features(context, masks[i:i + 1], key), full[i:i + 1], atol=1e-6)
        assert torch.allclose(mask_crops(masks[i:i + 1], key), crops[i:i + 1], atol=1e-6)
    assert crops[2, 0].abs().max() == 0          # an empty mask: the whole frame, no mask pixels
    assert torch.isfinite(full).all()


def test_shuffled_expressions_ablation_permutes_within_a_split(artifact, tmp_path):
    from pathlib import Path

    from auditor_lite.batch_audit import audit_benchmark

    bench = Path(__file__).resolve().parent / "fixtures" / "upstream_small"
    auditor = Auditor.load(artifact[0], intra_op_threads=1)
    plain = audit_benchmark(auditor, bench, tmp_path / "plain.jsonl", progress=False)
    shuffled = audit_benchmark(auditor, bench, tmp_path / "shuffled.jsonl", progress=False, shuffle_expressions=1)
    assert shuffled["method"].endswith("-shuffled1") and shuffled["masks"] == plain["masks"]
    ious = [[json.loads(line)["iou"] for line in (tmp_path / f"{n}.jsonl").read_text().splitlines()]
            for n in ("plain", "shuffled")]
    assert np.abs(np.array(ious[0]) - np.array(ious[1])).max() > 1e-6   # other words, other answers


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    from auditor_lite.data.synth import synthesize

    root = tmp_path_factory.mktemp("bench") / "bench"
    synthesize(root, clips=8, seed=1, procedural=True, size=64, progress=False, workers=1)
    return root


def test_int8_is_gated_through_the_runtime_and_installed_only_when_it_passes(artifact, small_bench, tmp_path):
    from auditor_lite.calibration.grounded_int8 import int8_grounded
    from auditor_lite.calibration.gate import GateFailed

    out = tmp_path / "int8"
    # a random tiny model: RMSE only (its class logits are within rounding of each other)
    report = int8_grounded(artifact[0], small_bench, out, expressions=4, gate_expressions=3, max_f2_drop=100.0,
                           log=lambda *_: None)
    gate = report["gate"]
    assert gate["passed"] and set(gate["scores"]) == {"fp32", "int8-cpu"} and gate["expressions"] == 3
    int8 = Auditor.load(out)
    assert int8.precision == "int8-cpu" and int8.manifest.data["int8"]["gate"]["passed"]
    assert not (tmp_path / ".int8.partial").exists()
    # a gate that cannot pass: nothing installed, the partial directory kept for inspection
    refused = tmp_path / "refused"
    with pytest.raises(GateFailed, match="FAIL"):
        int8_grounded(artifact[0], small_bench, refused, expressions=4, gate_expressions=3,
                      max_rmse_increase=-1.0, log=lambda *_: None)
    assert not refused.exists() and (tmp_path / ".refused.partial" / "manifest.json").is_file()


def test_calibrate_refits_the_score_calibration_on_a_users_benchmark(artifact, small_bench, tmp_path):
    from click.testing import CliRunner

    from auditor_lite.cli import main
    from auditor_lite.manifest import load_manifest

    before = (artifact[0] / "manifest.json").read_bytes()
    out = tmp_path / "recalibrated"
    result = CliRunner().invoke(main, ["calibrate", "--model", str(artifact[0]), "--bench", str(small_bench),
                                       "--split", "train", "--out", str(out), "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "conformal interval" in result.output and "wrote" in result.output
    calibration = json.loads((out / "score_calibration.json").read_text())
    assert "train/train" in calibration["fit_on"] and calibration["precision"] == "fp32"
    assert load_manifest(out).data["score_calibration"] == "score_calibration.json"
    results = Auditor.load(out).audit(*clip(seed=3, masks=3)[:2], "the dog", clip(seed=3, masks=3)[2], frame_index=2)
    assert all(r.iou_low is not None and r.iou_low <= r.iou <= r.iou_high for r in results)
    assert (artifact[0] / "manifest.json").read_bytes() == before            # the source is untouched
    # a split the benchmark does not have: one line, nothing written
    again = CliRunner().invoke(main, ["calibrate", "--model", str(artifact[0]), "--bench", str(small_bench),
                                      "--split", "test_u", "--max-expressions", "500", "--out", str(tmp_path / "x")])
    assert again.exit_code != 0 and "Traceback" not in again.output and not (tmp_path / "x").exists()
