"""The edge runtime against the torch model: loading, verification, backends, sessions, threads."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from auditor_lite import preprocess as pp
from auditor_lite.data.schema import ACTIONS, MASK_TYPES
from auditor_lite.manifest import ManifestError, update_manifest
from auditor_lite.runtime import Auditor, InputError, ModelFileError, ModelNotFoundError
from auditor_lite.runtime import model_dir as model_dir_module
from auditor_lite.runtime.backends import choose_providers
from auditor_lite.runtime.results import build_results, softmax

torch = pytest.importorskip("torch")

from runtime_helpers import CALIBRATION, _text_encoder, copy_artifact, tiny_artifact  # noqa: E402

SIZE = 96  # user-side frame size; the tiny model area-resizes to 128


@pytest.fixture(scope="session")
def artifact():
    return tiny_artifact()


@pytest.fixture(scope="session")
def auditor(artifact):
    return Auditor.load(artifact[0], intra_op_threads=1)


def clip(seed: int = 0, masks: int = 5):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8)
    audio = (0.3 * rng.standard_normal(16000 * 4)).clip(-1, 1).astype(np.float32)  # 4 s: padded
    stack = rng.random((masks, SIZE, SIZE)) > rng.uniform(0.2, 0.8, (masks, 1, 1))
    return frames, audio, stack


def torch_outputs(model, auditor, frames, audio, expression, masks, frame_index):
    """The torch model on exactly the runtime's preprocessing (the token states are the runtime's:
    the text graph is checked on its own below)."""
    from auditor_lite.motion import cell_motion

    prepared = pp.prepare_frames(frames, 128)
    tokens, token_mask = auditor.text.token_states(expression, model.max_tokens)
    padded = np.concatenate([audio, np.zeros(160000 - len(audio), np.float32)])
    with torch.no_grad():
        context = model.encode_context(
            torch.from_numpy(prepared), torch.tensor([frame_index]),
            torch.from_numpy(pp.log_mel(pp.prepare_audio(padded, 16000)[0])[None]),
            torch.from_numpy(tokens.copy()), torch.from_numpy(token_mask.copy()),
            torch.from_numpy(cell_motion(prepared[0] * 255.0)[None]))
        out = model.audit_masks(context, torch.from_numpy(pp.prepare_masks(masks, 128)),
                                torch.from_numpy(pp.prepare_key_frame(frames[frame_index], 128)))
    return tuple(t.numpy() for t in out)


# ------------------------------------------------------------------------------ parity with torch
def test_runtime_matches_torch_model(artifact, auditor):
    model = artifact[1]
    assert auditor.config.architecture == auditor.manifest.data["architecture"] == "grounded"
    frames, audio, masks = clip(seed=3, masks=6)
    expression = "the dog barking on the left"
    results = auditor.audit(frames, audio, expression, masks, frame_index=4)
    iou, type_logits, action_logits = torch_outputs(model, auditor, frames, audio, expression, masks, 4)
    np.testing.assert_allclose([r.raw_iou for r in results], iou, atol=1e-4, rtol=0)
    type_p, action_p = softmax(type_logits), softmax(action_logits)
    for r, tp, ap in zip(results, type_p, action_p):
        np.testing.assert_allclose([r.type_probs[c] for c in MASK_TYPES], tp, atol=1e-4)
        np.testing.assert_allclose([r.action_probs[c] for c in ACTIONS], ap, atol=1e-4)
        assert r.mask_type == MASK_TYPES[int(tp.argmax())] and r.action == ACTIONS[int(ap.argmax())]
    # Score calibration: np.interp on the fixture's knots, interval = iou -/+ q clipped to [0, 1].
    expected = np.interp(np.clip(iou, 0, 1), CALIBRATION["x"], CALIBRATION["y"])
    np.testing.assert_allclose([r.iou for r in results], expected, atol=1e-4)
    q = CALIBRATION["conformal"]["q"]
    np.testing.assert_allclose([r.iou_low for r in results], np.clip(expected - q, 0, 1), atol=1e-4)
    np.testing.assert_allclose([r.iou_high for r in results], np.clip(expected + q, 0, 1), atol=1e-4)


def test_text_embedding_matches_the_text_graph_source(auditor):
    from runtime_helpers import minilm_tokenizer_json
    from tokenizers import Tokenizer

    text = "The sounding object on the right of the xylophone."
    tokenizer = Tokenizer.from_file(str(minilm_tokenizer_json()))
    tokenizer.no_padding()  # the packaged file pads to 128 tokens; the runtime encodes one sentence
    ids = tokenizer.encode(text).ids
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP], as MiniLM was trained
    tensor = torch.tensor([ids])
    with torch.no_grad():
        expected, _ = _text_encoder()(tensor, torch.ones_like(tensor))
    np.testing.assert_allclose(auditor.embed_text("  " + text + " "), expected[0].numpy(), atol=1e-5)
    assert np.linalg.norm(auditor.embed_text(text)) == pytest.approx(1.0, abs=1e-5)


def test_runtime_imports_and_audits_without_torch(artifact, tmp_path):
    """The edge install has no torch, transformers, scipy or scikit-learn: the API, ``demo`` and
    ``audit --bench`` must run with those imports blocked."""
    bench = Path(__file__).resolve().parent / "fixtures" / "upstream_small"
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'scipy', 'sklearn', 'optimum'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np\nfrom click.testing import CliRunner\n"
        "from auditor_lite.runtime import Auditor\nfrom auditor_lite.audit_cli import audit, demo\n"
        f"model = {str(artifact[0])!r}\n"
        "rng = np.random.default_rng(0)\n"
        "r = Auditor.load(model).audit(rng.integers(0, 256, (10, 40, 40, 3), dtype=np.uint8),\n"
        "    0.1 * np.ones(16000, np.float32), 'the red whistle', rng.random((3, 40, 40)) > 0.5, frame_index=2)\n"
        f"d = CliRunner().invoke(demo, ['--model', model, '--out', {str(tmp_path / 'o.png')!r}])\n"
        f"b = CliRunner().invoke(audit, ['--model', model, '--bench', {str(bench)!r}, '--out',\n"
        f"                               {str(tmp_path / 'p.jsonl')!r}, '--no-progress'])\n"
        "print(len(r), d.exit_code, b.exit_code, d.output[-300:], b.output[-300:])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 0 0"), result.stdout
    assert (tmp_path / "o.png").is_file() and (tmp_path / "p.jsonl").is_file()


# ------------------------------------------------------------------------------ loading and verification
def test_tampered_file_is_refused_by_name(tmp_path):
    model_dir = copy_artifact(tmp_path / "m")
    with open(model_dir / "masks.onnx", "r+b") as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ManifestError, match=r"masks\.onnx: SHA-256/size differ"):
        Auditor.load(model_dir)


def test_missing_file_and_unlisted_graph_are_refused(tmp_path):
    model_dir = copy_artifact(tmp_path / "m")
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(ManifestError, match=r"tokenizer\.json: listed in manifest.json but missing"):
        Auditor.load(model_dir)
    other = copy_artifact(tmp_path / "o")
    (other / "extra.onnx").write_bytes((other / "masks.onnx").read_bytes())
    with pytest.raises(ManifestError, match=r"extra\.onnx: not listed in manifest\.json"):
        Auditor.load(other)


def test_contract_mismatch_is_refused(tmp_path):
    model_dir = copy_artifact(tmp_path / "m")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["contract"]["masks"]["inputs"][1]["shape"] = ["N", 1, 64, 64]  # the graph takes 128 x 128
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"masks\.onnx: graph does not match its contract.*'masks'"):
        Auditor.load(model_dir)


def test_config_that_does_not_belong_to_the_graphs_is_refused(tmp_path):
    model_dir = copy_artifact(tmp_path / "m")
    config = json.loads((model_dir / "config.json").read_text())
    config["key_size"] = 64
    (model_dir / "config.json").write_text(json.dumps(config))
    update_manifest(model_dir)  # re-hashed: only the sizes disagree now
    with pytest.raises(ModelFileError, match=r"config\.json \[key_size\]: key_size is 64 but the graphs"):
        Auditor.load(model_dir)


@pytest.mark.parametrize("field,value,pattern", [
    ("mask_types", ["perfect", "cutout", "erode"], r"mask_types lists 3 names but the graphs give 7 type_logits"),
    ("actions", ["accept", "accept", "reject", "x"], r"actions must be distinct non-empty names"),
    ("cell_motion", False, r"cell_motion is False but the context graph takes"),
])
def test_config_names_that_do_not_fit_the_graphs_are_refused(tmp_path, field, value, pattern):
    model_dir = copy_artifact(tmp_path / "m")
    config = json.loads((model_dir / "config.json").read_text())
    config[field] = value
    (model_dir / "config.json").write_text(json.dumps(config))
    update_manifest(model_dir)
    with pytest.raises(ModelFileError, match=rf"config\.json \[{field}\]: {pattern}"):
        Auditor.load(model_dir)


@pytest.mark.parametrize("architecture", ["auditor", None])
def test_a_directory_of_the_retired_pooled_text_architecture_is_refused(tmp_path, architecture):
    model_dir = copy_artifact(tmp_path / "m")
    config = json.loads((model_dir / "config.json").read_text())
    if architecture is None:
        del config["architecture"]      # the first model directories did not name one
    else:
        config["architecture"] = architecture
    (model_dir / "config.json").write_text(json.dumps(config))
    update_manifest(model_dir)
    with pytest.raises(ModelFileError, match=r"config\.json \[architecture\]: exported for an older runtime"):
        Auditor.load(model_dir)


def test_a_tokenizer_larger_than_the_text_graph_is_refused(tmp_path):
    model_dir = copy_artifact(tmp_path / "m")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["contract"]["text_encoder"]["inputs"][0]["range"] = [0, 999]
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"tokenizer\.json \[vocabulary\]: vocabulary of \d+ tokens but the "
                                             r"text encoder takes ids up to 999"):
        Auditor.load(model_dir)


@pytest.mark.parametrize("name,pattern", [
    ("context.onnx", r"context\.onnx: ONNX Runtime cannot load this graph"),
    ("tokenizer.json", r"tokenizer\.json: not a tokenizers JSON file"),
])
def test_corrupt_model_file_is_a_clear_error(tmp_path, name, pattern):
    model_dir = copy_artifact(tmp_path / "m")
    (model_dir / name).write_bytes(b"\x08\x01garbage, not a model" * 10)
    update_manifest(model_dir)  # a corrupt file that the manifest vouches for: the loader must still say so
    with pytest.raises(ModelFileError, match=pattern):
        Auditor.load(model_dir)


def test_precision_selection(artifact, tmp_path):
    assert Auditor.load(artifact[0], precision="auto").precision == "fp32"  # the fixture's default
    with pytest.raises(ManifestError, match=r"no int8-cpu auditor graph .*available: fp32"):
        Auditor.load(artifact[0], precision="int8-cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        Auditor.load(artifact[0], precision="fp16")
    with pytest.raises(ValueError, match="CUDAExecutionProvider not available"):
        Auditor.load(artifact[0], providers=["CUDAExecutionProvider"])


def test_provider_order():
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("int8-trt", everything) == everything
    assert choose_providers("fp32", everything) == everything[1:]          # TRT EP: int8-trt graph only
    assert choose_providers("int8-cpu", ["CPUExecutionProvider", "AzureExecutionProvider"]) == \
        ["CPUExecutionProvider"]
    assert choose_providers("fp32", everything, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_missing_default_model_says_how_to_build_one(monkeypatch, tmp_path):
    monkeypatch.setattr(model_dir_module, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    with pytest.raises(ModelNotFoundError, match="auditor-lite export onnx"):
        Auditor.load()
    with pytest.raises(ModelNotFoundError, match="model directory not found"):
        Auditor.load(tmp_path / "nowhere")


# ------------------------------------------------------------------------------ results
def test_results_by_hand():
    iou = np.array([0.25, 1.2])  # raw values outside [0, 1] are clipped before calibration
    type_logits = np.log(np.array([[0.1, 0.1, 0.6, 0.05, 0.05, 0.05, 0.05], [1, 1, 1, 1, 1, 1, 1.0]]))
    action_logits = np.log(np.array([[0.1, 0.7, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]))
    results = build_results(iou, type_logits, action_logits, MASK_TYPES, ACTIONS,
                            lambda raw, types: (raw, np.clip(raw - 0.1, 0, 1), np.clip(raw + 0.1, 0, 1)),
                            empty={1})
    first, second = results
    assert first.type_probs["erode"] == pytest.approx(0.6) and first.action == "minor revision"
    assert first.explanation == ("IoU 0.25 [0.15, 0.35]: looks eroded (boundary too tight) (p=0.60); "
                                 "minor revision recommended")
    assert second.raw_iou == 1.0 and second.iou_high == 1.0 and second.empty
    assert second.mask_type == "perfect"  # ties: the first class
    assert second.explanation.endswith("; the mask is empty")
    assert set(first.to_dict()) >= {"index", "iou", "iou_low", "iou_high", "mask_type", "type_probs",
                                    "action", "action_probs", "explanation"}


def test_empty_mask_is_audited_and_flagged(auditor):
    frames, audio, masks = clip(seed=1, masks=2)
    masks[1] = False
    results = auditor.audit(frames, audio, "the bell", masks, frame_index=0)
    assert not results[0].empty and results[1].empty
    assert "the mask is empty" in results[1].explanation


# ------------------------------------------------------------------------------ sessions and caching
def test_session_encodes_one_context_per_frame(auditor):
    frames, audio, masks = clip(seed=2, masks=13)
    session = auditor.session("the sounding drum", frames, audio)
    first = session.audit(masks, frame_index=3)
    session.audit(masks[:4], frame_index=3)
    session.audit(masks[4:], frame_index=3)
    assert session.stats["context_encodes"] == 1 and session.stats["context_cache_hits"] == 2
    session.audit(masks, frame_index=7)
    assert session.stats["context_encodes"] == 2 and session.stats["mask_calls"] == 4
    # Results equal a one-shot audit, and splitting the masks over calls changes nothing.
    one_shot = auditor.audit(frames, audio, "the sounding drum", masks, frame_index=3)
    assert [r.to_dict() for r in first] == [r.to_dict() for r in one_shot]
    split = session.audit(masks[:4], frame_index=3) + session.audit(masks[4:], frame_index=3)
    np.testing.assert_allclose([r.raw_iou for r in split], [r.raw_iou for r in first], atol=1e-6)


def test_expression_embedding_is_cached(auditor):
    before = auditor.text.encoder_calls
    for _ in range(3):
        auditor.embed_text("the gong appearing through the entire video")
    assert auditor.text.encoder_calls == before + 1


def test_sliding_window_matches_a_fresh_clip(auditor):
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)
    audio = (0.2 * rng.standard_normal(16000 * 12)).astype(np.float32)
    _, _, masks = clip(seed=6, masks=3)
    stream = auditor.session("the siren in gray")
    for t in range(12):
        stream.push_frame(frames[t])
        stream.push_audio(audio[16000 * t:16000 * (t + 1)])
        if t == 5:
            with pytest.raises(InputError, match="holds 6 of the 10 frames"):
                stream.audit_latest(masks)
        if t == 10:
            stream.audit_latest(masks)
    got = stream.audit_latest(masks)
    assert stream.stats["context_encodes"] == 2  # every push invalidated the cached context
    fresh = auditor.audit(frames[2:], audio[-160000:], "the siren in gray", masks, frame_index=9)
    np.testing.assert_allclose([r.raw_iou for r in got], [r.raw_iou for r in fresh], atol=1e-6)
    with pytest.raises(InputError, match="frame: shape"):
        stream.push_frame(np.zeros((SIZE + 2, SIZE, 3), np.uint8))


# ------------------------------------------------------------------------------ threads
def test_threads_share_one_auditor(auditor):
    jobs = []
    for i in range(20):
        frames, audio, masks = clip(seed=100 + i, masks=1 + i % 4)
        jobs.append((frames, audio, f"the object number {i % 5}", masks, i % 10))

    def run(job):
        frames, audio, text, masks, k = job
        return [r.to_dict() for r in auditor.audit(frames, audio, text, masks, frame_index=k)]

    sequential = [run(job) for job in jobs]
    outputs: dict[tuple[int, int], list] = {}
    errors = []

    def worker(thread: int):
        try:
            for index in np.random.default_rng(thread).permutation(len(jobs)):
                outputs[(thread, int(index))] = run(jobs[index])
        except Exception as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(outputs) == 4 * 20
    for (thread, index), got in outputs.items():
        assert got == sequential[index], (thread, index)


# ------------------------------------------------------------------------------ INT8 selection
def test_auto_precision_picks_the_manifest_default_int8_graphs(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = copy_artifact(tmp_path / "m")
    for graph in ("context", "masks"):  # a stand-in for `export int8`: same names and shapes
        quantize_dynamic(str(model_dir / f"{graph}.onnx"), str(model_dir / f"{graph}.int8-cpu.onnx"),
                         weight_type=QuantType.QInt8)
    update_manifest(model_dir, graphs={g: {"int8-cpu": f"{g}.int8-cpu.onnx"} for g in ("context", "masks")},
                    default_precision="int8-cpu")
    int8, fp32 = Auditor.load(model_dir), Auditor.load(model_dir, precision="fp32")
    assert int8.precision == "int8-cpu" and "int8-cpu" in int8.backend
    assert int8.graphs["context"].path.name == "context.int8-cpu.onnx"
    assert fp32.precision == "fp32" and fp32.graphs["context"].path.name == "context.onnx"
    frames, audio, masks = clip(seed=8, masks=4)
    a = int8.audit(frames, audio, "the drum", masks, frame_index=5)
    b = fp32.audit(frames, audio, "the drum", masks, frame_index=5)
    np.testing.assert_allclose([r.raw_iou for r in a], [r.raw_iou for r in b], atol=0.05)
