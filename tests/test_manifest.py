"""manifest.json: writing, verifying (tampered / missing / unlisted files), updating, graph lookup and
the contract check against real ONNX Runtime sessions. Torch-free, like the runtime that uses it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from auditor_lite.manifest import (FORMAT, FORMAT_VERSION, MANIFEST_FILE, ManifestError, check_graph_contract,
                                   contract_problems, load_manifest, update_manifest, write_manifest)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

CONTRACT = {
    "auditor": {"inputs": [{"name": "masks", "shape": ["N", 1, 4, 4], "dtype": "float32", "range": [0, 1]}],
                "outputs": [{"name": "iou", "shape": ["N"], "dtype": "float32", "range": [0, 1]}]},
    "text_encoder": {"inputs": [{"name": "input_ids", "shape": [1, "T"], "dtype": "int64"}],
                     "outputs": [{"name": "text_embedding", "shape": [1, 3], "dtype": "float32"}]},
}


def iou_graph(path, batch="N"):
    """masks (batch, 1, 4, 4) -> iou (batch,): the mean of each mask (a stand-in auditor graph)."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    node = helper.make_node("ReduceMean", ["masks", "axes"], ["iou"], keepdims=0)
    masks = helper.make_tensor_value_info("masks", TensorProto.FLOAT, [batch, 1, 4, 4])
    iou = helper.make_tensor_value_info("iou", TensorProto.FLOAT, [batch])
    graph = helper.make_graph([node], "iou", [masks], [iou], [axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


@pytest.fixture
def model_dir(tmp_path):
    """A small model directory: two 'graphs', a config, a file in a subfolder, and its manifest."""
    iou_graph(tmp_path / "auditor.onnx")
    (tmp_path / "text_encoder.int8.onnx").write_bytes(b"int8 text graph bytes")
    (tmp_path / "config.json").write_text('{"d_model": 8}')
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "table.json").write_text("{}")
    write_manifest(tmp_path, name="tiny", default_precision="fp32", contract=CONTRACT,
                   graphs={"auditor": {"fp32": "auditor.onnx"}, "text_encoder": {"int8-cpu": "text_encoder.int8.onnx"}})
    return tmp_path


# ----------------------------------------------------------------------------------- write / load
def test_written_manifest_lists_every_file_with_its_hash(model_dir):
    data = json.loads((model_dir / MANIFEST_FILE).read_text())
    assert data["format"] == FORMAT and data["format_version"] == FORMAT_VERSION and data["name"] == "tiny"
    assert set(data["files"]) == {"auditor.onnx", "text_encoder.int8.onnx", "config.json",
                                  "calibration/table.json"}
    expected = hashlib.sha256(b"int8 text graph bytes").hexdigest()
    assert data["files"]["text_encoder.int8.onnx"] == {"sha256": expected, "bytes": 21}
    assert data["versions"]["onnx"] == onnx.__version__ and "auditor_lite" in data["versions"]
    assert data["created"].endswith("Z")
    manifest = load_manifest(model_dir)
    assert manifest.name == "tiny" and manifest.contract == CONTRACT


def test_tampered_file_is_refused_by_name(model_dir):
    (model_dir / "config.json").write_text('{"d_model": 9}')  # same size, different bytes
    with pytest.raises(ManifestError, match=r"config\.json: SHA-256/size differ"):
        load_manifest(model_dir)
    assert load_manifest(model_dir, verify=False).name == "tiny"  # hashing skipped on request


def test_missing_listed_file_is_refused_by_name(model_dir):
    (model_dir / "calibration" / "table.json").unlink()
    with pytest.raises(ManifestError, match=r"table\.json: listed in manifest.json but missing"):
        load_manifest(model_dir, verify=False)


@pytest.mark.parametrize("name", ["masks.onnx", "notes.txt", ".DS_Store", ".extra.onnx", "EXTRA.ONNX",
                                  "AUDITOR.onnx", "calibration/.hidden", "calibration/Table.JSON"])
def test_every_unlisted_file_is_refused_by_name(model_dir, name):
    load_manifest(model_dir)
    (model_dir / name).write_bytes(b"stray")
    with pytest.raises(ManifestError, match=rf"{name.split('/')[-1]}: not listed in manifest\.json"):
        load_manifest(model_dir)


@pytest.mark.parametrize("name", ["../outside.json", "/etc/hostname", "calibration/../../outside.json",
                                  "./config.json", "calibration//table.json", "C:/x.json", "a\\b.json",
                                  "manifest.json", ""])
def test_listed_paths_must_stay_inside_the_directory(model_dir, name):
    (model_dir.parent / "outside.json").write_text("{}")
    data = json.loads((model_dir / MANIFEST_FILE).read_text())
    data["files"][name] = {"sha256": "0" * 64, "bytes": 2}
    data["score_calibration"] = name
    (model_dir / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="not a plain relative path inside the model directory"):
        load_manifest(model_dir)


def test_a_symlink_out_of_the_directory_is_refused_before_reading(model_dir, tmp_path_factory):
    secret = tmp_path_factory.mktemp("elsewhere") / "secret.json"
    secret.write_text('{"d_model": 8}')
    (model_dir / "config.json").unlink()
    (model_dir / "config.json").symlink_to(secret)
    with pytest.raises(ManifestError, match=r"config\.json: resolves outside the model directory"):
        load_manifest(model_dir, verify=False)


def test_missing_manifest_and_unknown_format_are_named(tmp_path, model_dir):
    with pytest.raises(ManifestError, match=r"manifest\.json: missing"):
        load_manifest(tmp_path / "nowhere")
    data = json.loads((model_dir / MANIFEST_FILE).read_text())
    for change, message in (({"format_version": FORMAT_VERSION + 1}, f"unknown format_version {FORMAT_VERSION + 1}"),
                            ({"format_version": 1}, "exported for an older runtime .format_version 1.*"
                                                    "auditor-lite export onnx"),
                            ({"format": "other"}, "unknown format 'other'"),
                            ({"default_precision": "int8-trt"}, "default_precision 'int8-trt'")):
        (model_dir / MANIFEST_FILE).write_text(json.dumps({**data, **change}))
        with pytest.raises(ManifestError, match=message):
            load_manifest(model_dir)
    (model_dir / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError, match="invalid JSON"):
        load_manifest(model_dir)


@pytest.mark.parametrize("graphs,message", [
    ({"auditor": {"fp32": "absent.onnx"}}, "'absent.onnx' is not among the listed files"),
    ({"auditor": {"fp16": "auditor.onnx"}}, "unknown precision 'fp16'"),
    ({"masks": {"fp32": "auditor.onnx"}}, "graph 'masks' has no entry in 'contract'"),
])
def test_write_refuses_inconsistent_graphs(tmp_path, graphs, message):
    iou_graph(tmp_path / "auditor.onnx")
    with pytest.raises(ManifestError, match=message):
        write_manifest(tmp_path, name="x", graphs=graphs, contract=CONTRACT, default_precision="fp32")
    assert not (tmp_path / MANIFEST_FILE).exists()


# ----------------------------------------------------------------------------------- update
def test_update_merges_graphs_and_rehashes(model_dir):
    (model_dir / "auditor.int8-cpu.onnx").write_bytes(b"quantized")
    (model_dir / "score_calibration.json").write_text('{"x": [0, 1], "y": [0, 1]}')
    data = update_manifest(model_dir, graphs={"auditor": {"int8-cpu": "auditor.int8-cpu.onnx"}},
                           default_precision="int8-cpu", score_calibration="score_calibration.json")
    assert data["graphs"]["auditor"] == {"fp32": "auditor.onnx", "int8-cpu": "auditor.int8-cpu.onnx"}
    manifest = load_manifest(model_dir)  # the new files are listed and hashed
    assert manifest.graph_file("auditor") == ("int8-cpu", model_dir / "auditor.int8-cpu.onnx")
    assert manifest.optional_file("score_calibration") == model_dir / "score_calibration.json"
    update_manifest(model_dir, score_calibration=None)
    assert load_manifest(model_dir).optional_file("score_calibration") is None
    with pytest.raises(ValueError, match="'files' is computed"):
        update_manifest(model_dir, files={})


def test_graph_lookup_falls_back_and_names_what_exists(model_dir):
    manifest = load_manifest(model_dir)
    assert manifest.graph_file("auditor") == ("fp32", model_dir / "auditor.onnx")
    # The text encoder ships only at int8-cpu: without a precision it is found anyway.
    assert manifest.graph_file("text_encoder")[0] == "int8-cpu"
    with pytest.raises(ManifestError, match=r"no 'fp32' file \(available: int8-cpu\)"):
        manifest.graph_file("text_encoder", "fp32")
    with pytest.raises(ManifestError, match="no graph 'context'"):
        manifest.graph_file("context")


# ----------------------------------------------------------------------------------- contract
def test_contract_check_against_onnxruntime_sessions(model_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    manifest = load_manifest(model_dir)
    session = ort.InferenceSession(str(model_dir / "auditor.onnx"), providers=["CPUExecutionProvider"])
    check_graph_contract(manifest, "auditor", session.get_inputs(), session.get_outputs())
    (iou,) = session.run(None, {"masks": np.ones((3, 1, 4, 4), np.float32)})
    assert iou.shape == (3,)

    # A graph whose mask batch was baked in at 1 (the dynamo trap) is refused, naming the file.
    iou_graph(tmp_path / "baked.onnx", batch=1)
    baked = ort.InferenceSession(str(tmp_path / "baked.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(ManifestError, match=r"auditor\.onnx: .*input 'masks': shape \[1, 1, 4, 4\], "
                                            r"contract says \['N', 1, 4, 4\]"):
        check_graph_contract(manifest, "auditor", baked.get_inputs(), baked.get_outputs())


def test_contract_problems_name_each_difference():
    expected = CONTRACT["text_encoder"]["inputs"]
    assert contract_problems(expected, [{"name": "input_ids", "shape": [1, "T"], "dtype": "int64"}], "input") == []
    assert contract_problems(expected, [{"name": "input_ids", "shape": [1, None], "dtype": "int64"}], "input") == []
    problems = contract_problems(expected, [{"name": "input_ids", "shape": [1, 7], "dtype": "int32"},
                                            {"name": "token_type_ids", "shape": [1, "T"], "dtype": "int64"}],
                                 "input")
    assert problems == ["input 'token_type_ids' is in the graph but not in the contract",
                        "input 'input_ids': dtype int32, contract says int64",
                        "input 'input_ids': shape [1, 7], contract says [1, 'T']"]


def test_manifest_module_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "import auditor_lite.manifest as m; print(m.FORMAT)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "auditor-lite-model" in result.stdout


def test_slim_keeps_only_requested_precisions_and_verifies(model_dir, tmp_path_factory):
    from auditor_lite.export.slim import slim_model_dir

    tmp_path = tmp_path_factory.mktemp("slim_out")  # outside model_dir (which is its own tmp_path)

    iou_graph(model_dir / "auditor.int8-cpu.onnx")
    (model_dir / "calibration" / "predictions").mkdir()
    (model_dir / "calibration" / "predictions" / "fp32.jsonl").write_text("{}\n")
    update_manifest(model_dir, graphs={"auditor": {"int8-cpu": "auditor.int8-cpu.onnx"}})
    out = tmp_path / "slim"
    data = slim_model_dir(model_dir, out, keep=("int8-cpu",))
    assert data["graphs"] == {"auditor": {"int8-cpu": "auditor.int8-cpu.onnx"},
                              "text_encoder": {"int8-cpu": "text_encoder.int8.onnx"}}
    assert data["default_precision"] == "int8-cpu"
    assert not (out / "auditor.onnx").exists()
    assert not (out / "calibration" / "predictions").exists()
    assert (out / "calibration" / "table.json").exists()
    assert set(load_manifest(out, verify=True).data["files"]) == {
        "auditor.int8-cpu.onnx", "text_encoder.int8.onnx", "config.json", "calibration/table.json"}
    with pytest.raises(FileExistsError, match="overwrite"):
        slim_model_dir(model_dir, out)
    # A graph with none of the kept precisions keeps what it has: the directory stays complete.
    fp32_only = slim_model_dir(model_dir, tmp_path / "fp32", keep=("fp32",))
    assert fp32_only["graphs"]["text_encoder"] == {"int8-cpu": "text_encoder.int8.onnx"}
    assert fp32_only["default_precision"] == "fp32"
