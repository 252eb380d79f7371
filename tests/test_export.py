"""``export onnx``: Optimum export of the grounded context and masks graphs, torch-vs-ONNX Runtime
checks, the model directory and its manifest. The runtime tests' tiny grounded model keeps the file
fast; the export with the real MiniLM text encoder is one slow test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("optimum.exporters.onnx")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from auditor_lite.export import grounded as grounded_mod  # noqa: E402
from auditor_lite.export import model_dir as model_dir_mod  # noqa: E402
from auditor_lite.export.cli import export  # noqa: E402
from auditor_lite.export.exporter import ExportError, check_opset  # noqa: E402
from auditor_lite.export.onnx_config import MiniLMOnnxConfig  # noqa: E402
from auditor_lite.export.trt_checks import check_tensorrt_graph  # noqa: E402
from auditor_lite.manifest import check_graph_contract, load_manifest  # noqa: E402
from auditor_lite.model.grounded import save_scorer  # noqa: E402
from auditor_lite.training.grounding_train import save_grounder  # noqa: E402

GRAPHS = ("context", "masks")


def save_checkpoint(model, path):
    path.mkdir(parents=True)
    save_grounder(model.grounder, path)
    save_scorer(model.scorer, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny grounded checkpoint exported once through the CLI: (model, model dir, CLI output)."""
    from runtime_helpers import tiny_model

    root = tmp_path_factory.mktemp("export")
    model = tiny_model()
    save_checkpoint(model, root / "ckpt")
    result = CliRunner().invoke(export, ["onnx", "--model", str(root / "ckpt"), "--out", str(root / "model"),
                                         "--no-text"])
    assert result.exit_code == 0, result.output
    return model, root / "model", result.output


# ----------------------------------------------------------------------------------- the directory
def test_model_directory_contents_and_manifest(exported):
    model, out, _ = exported
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "context.onnx", "manifest.json", "masks.onnx"]
    manifest = load_manifest(out)  # verifies every hash
    assert manifest.graphs == {g: {"fp32": f"{g}.onnx"} for g in GRAPHS}
    assert manifest.default_precision == "fp32" and manifest.name == "auditor-lite-grounded"
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == manifest.data["architecture"] == "grounded"
    assert config["key_size"] == 128 and config["max_tokens"] == model.max_tokens and config["cell_motion"]
    inputs = {t["name"]: t for t in manifest.contract["masks"]["inputs"]}
    assert inputs["masks"]["shape"] == ["N", 1, 128, 128]
    assert [t["name"] for t in manifest.contract["context"]["inputs"]] == [
        "frames", "key_index", "log_mel", "tokens", "token_mask", "cell_motion"]
    assert manifest.data["export"]["opset"] == 17
    assert all(row["ok"] for row in manifest.data["export"]["torch_vs_onnxruntime"])


def test_cli_prints_the_torch_vs_onnx_table(exported):
    output = exported[2]
    for num_masks in (1, 13):
        assert any(line.split()[:2] == ["context+masks", str(num_masks)] for line in output.splitlines()), num_masks
    assert "FAIL" not in output and "wrote" in output


@pytest.mark.parametrize("graph", GRAPHS)
def test_graphs_match_their_contract_with_a_dynamic_mask_batch(exported, graph):
    _, out, _ = exported
    manifest = load_manifest(out, verify=False)
    session = ort.InferenceSession(str(out / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    check_graph_contract(manifest, graph, session.get_inputs(), session.get_outputs())
    import onnx

    assert onnx.load(str(out / f"{graph}.onnx")).opset_import[0].version == 17
    assert check_tensorrt_graph(out / f"{graph}.onnx") == []


def test_masks_graph_equals_torch_for_an_unseen_mask_count(exported):
    model, out, _ = exported
    session = ort.InferenceSession(str(out / "masks.onnx"), providers=["CPUExecutionProvider"])
    inputs = model.example_inputs(num_masks=7, seed=42)
    names = grounded_mod.graph_inputs(grounded_mod.runtime_config(model), "context")
    with torch.no_grad():
        context = model.encode_context(*(inputs[k] for k in names))
        expected = model.audit_masks(context, inputs["masks"], inputs["key_frame"])
    iou, type_logits, action_logits = session.run(None, {"context": context.numpy(), "masks": inputs["masks"].numpy(),
                                                         "key_frame": inputs["key_frame"].numpy()})
    assert iou.shape == (7,) and type_logits.shape == (7, 7) and action_logits.shape == (7, 4)
    np.testing.assert_allclose(iou, expected[0].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(type_logits, expected[1].numpy(), atol=1e-4, rtol=0)


def changed_copy(model):
    """The model with its IoU head's bias moved: torch now differs from the exported graphs."""
    from runtime_helpers import tiny_model

    changed = tiny_model()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed.scorer.iou_head.bias += 0.5
    return changed


def test_comparison_flags_a_graph_that_disagrees(exported):
    model, out, _ = exported
    rows = grounded_mod.compare_grounded(changed_copy(model), {g: out / f"{g}.onnx" for g in GRAPHS})
    failed = {r["output"] for r in rows if not r["ok"]}
    assert failed == {"iou"} and all(r["max_abs_diff"] > 0.01 for r in rows if not r["ok"])


def test_failed_check_leaves_no_model_directory(exported, tmp_path, monkeypatch):
    model, out, _ = exported
    ckpt = save_checkpoint(changed_copy(model), tmp_path / "ckpt")
    # Reuse the fixture's graphs (of the unchanged model) instead of exporting again; the
    # comparison with the changed checkpoint runs for real and fails.
    monkeypatch.setattr(grounded_mod, "export_grounded_graph",
                        lambda m, graph, path, opset: shutil.copy(out / f"{graph}.onnx", path) and 0.0)
    with pytest.raises(ExportError, match=r"ONNX Runtime differs from torch: iou"):
        model_dir_mod.export_model_dir(ckpt, tmp_path / "model", with_text=False)
    assert not (tmp_path / "model").exists() and not (tmp_path / ".model.partial").exists()


def test_destination_rules(exported, tmp_path):
    _, out, _ = exported
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(ExportError, match="exists and is not empty; pass --overwrite"):
        model_dir_mod.export_model_dir(out.parent / "ckpt", tmp_path / "busy", with_text=False)
    with pytest.raises(ExportError, match="refusing to delete anything else"):
        model_dir_mod.export_model_dir(out.parent / "ckpt", tmp_path / "busy", with_text=False, overwrite=True)
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"


def test_bad_checkpoints_and_opsets_are_named(tmp_path):
    with pytest.raises(ExportError, match="no grounder_config.json"):
        model_dir_mod.export_model_dir(tmp_path, tmp_path / "o", with_text=False)
    with pytest.raises(ExportError, match="--opset 16: must be in"):
        check_opset(16)
    result = CliRunner().invoke(export, ["onnx", "--model", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no grounder_config.json" in result.output
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------- Optimum config
def test_text_config_fixes_the_batch_at_one():
    from transformers import BertConfig

    dummy = MiniLMOnnxConfig(BertConfig(vocab_size=50)).generate_dummy_inputs(batch_size=4, sequence_length=9)
    assert dummy["input_ids"].shape == (1, 9) and dummy["attention_mask"].shape == (1, 9)
    assert int(dummy["input_ids"].max()) < 50


# ----------------------------------------------------------------------------------- with MiniLM
@pytest.mark.slow
def test_export_with_the_minilm_text_encoder(exported, tmp_path):
    from tokenizers import Tokenizer

    from auditor_lite.export import text_encoder as te
    from auditor_lite.model.text import MiniLMTextEncoder, TextEncoderUnavailable

    try:
        encoder = MiniLMTextEncoder()
    except TextEncoderUnavailable as exc:
        pytest.skip(str(exc))
    summary = model_dir_mod.export_model_dir(exported[1].parent / "ckpt", tmp_path / "model")
    assert all(row["ok"] for row in summary.comparison)
    manifest = load_manifest(tmp_path / "model")
    # The int8 text encoder ships alone exactly when it is faithful enough.
    int8_ok = summary.text["int8-cpu"]["min_cosine"] >= te.INT8_MIN_COSINE
    assert manifest.precisions("text_encoder") == (["int8-cpu"] if int8_ok else ["fp32"])
    assert summary.text["fp32"]["min_cosine"] > 0.9999
    assert summary.text["int8-cpu"]["bytes"] < 0.5 * summary.text["fp32"]["bytes"]
    _, text_path = manifest.graph_file("text_encoder")
    session = ort.InferenceSession(str(text_path), providers=["CPUExecutionProvider"])
    check_graph_contract(manifest, "text_encoder", session.get_inputs(), session.get_outputs())
    # The runtime's path: tokenizer.json + the text graph gives the torch embedding.
    tokens = Tokenizer.from_file(str(tmp_path / "model" / "tokenizer.json")).encode("the dog barking on the left")
    (embedding,) = session.run(["text_embedding"], {"input_ids": np.array([tokens.ids]),
                                                    "attention_mask": np.array([tokens.attention_mask])})
    reference = encoder.encode(["the dog barking on the left"]).numpy()
    assert float(embedding[0] @ reference[0]) > 0.99
    for graph in (*GRAPHS, "text_encoder"):
        if manifest.precisions(graph) == ["fp32"]:
            assert check_tensorrt_graph(manifest.graph_file(graph)[1]) == []


# ----------------------------------------------------------------------------------- text encoder parts
def test_int8_text_encoder_keeps_the_ffn_down_projections_fp32():
    from onnx import TensorProto, helper, numpy_helper

    from auditor_lite.export.text_encoder import int8_nodes

    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    table = numpy_helper.from_array(np.ones((5, 2), np.float32), "table")
    names = ["/bert/encoder/layer.0/attention/output/dense/MatMul", "/bert/encoder/layer.0/output/dense/MatMul",
             "/bert/encoder/layer.0/intermediate/dense/MatMul"]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["x0"], name="/embeddings/word_embeddings/Gather")]
    nodes += [helper.make_node("MatMul", [f"x{i}", "w"], [f"x{i + 1}"], name=n) for i, n in enumerate(names)]
    nodes.append(helper.make_node("MatMul", ["x3", "x3"], ["y"], name="activation_by_activation"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, table])
    quantized, kept = int8_nodes(helper.make_model(graph))
    assert quantized == ["/embeddings/word_embeddings/Gather", names[0], names[2]]
    assert kept == [names[1]]


def test_sample_expressions_fill_every_template_slot():
    from auditor_lite.export.text_encoder import sample_expressions

    texts = sample_expressions()
    assert len(texts) >= 50 and texts == sample_expressions()  # deterministic
    assert not any("{" in t or "}" in t for t in texts)
    assert len(set(texts)) > 0.9 * len(texts)
    assert sample_expressions(limit=5) == texts[:5]
