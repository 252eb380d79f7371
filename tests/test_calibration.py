"""INT8 calibration (auditor_lite.calibration): samples, QDQ flavours, sensitivity, gate, CLI.

One INT8 export of the shared tiny model directory (tests/runtime_helpers.py) on a synthesized
8-clip benchmark is built per module and inspected by several tests; the failing-gate test runs a
second, smaller export (TensorRT flavour only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum.onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from auditor_lite.calibration import dataset as ds  # noqa: E402
from auditor_lite.calibration import gate as gate_mod  # noqa: E402
from auditor_lite.calibration import pipeline  # noqa: E402
from auditor_lite.calibration.quantize import QuantizationError, resolve_keep_fp32  # noqa: E402
from auditor_lite.data.reader import Benchmark  # noqa: E402
from auditor_lite.eval.predictions import read_predictions  # noqa: E402
from auditor_lite.eval.protocol import GroundTruthTable  # noqa: E402
from auditor_lite.manifest import load_manifest  # noqa: E402

KEPT_NODE = "/model/mask_proj/MatMul"
FRONTEND = "audio_encoder/frontend/"
SAMPLES = 40


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    from auditor_lite.data.synth import synthesize

    root = tmp_path_factory.mktemp("bench") / "bench"
    # Seed 1 gives train, test_s and test_u expressions with 8 clips.
    synthesize(root, clips=8, seed=1, procedural=True, size=64, progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from runtime_helpers import tiny_artifact

    return tiny_artifact()[0]


@pytest.fixture(scope="module")
def heldout(bench, tmp_path_factory) -> Path:
    # The tiny model never trained: any train uids are "held out" from its training.
    path = tmp_path_factory.mktemp("heldout") / "heldout_uids.txt"
    path.write_text("".join(f"{r.uid}\n" for r in Benchmark(bench).records("train", "train")))
    return path


@pytest.fixture(scope="module")
def exported(model_dir, bench, heldout, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "model"
    # Random weights leave the tiny model's class logits within ~1e-3 of each other, so INT8
    # rounding flips argmaxes at random and F2 on 3 expressions swings by points: the F2 part of
    # the gate is checked by hand (test_gate_thresholds_by_hand); here the RMSE part is at default.
    opts = pipeline.Int8Options(samples=SAMPLES, keep_fp32=(KEPT_NODE,), heldout=heldout, progress=False,
                                max_f2_drop=100.0, latency_rounds=3)
    result = pipeline.run_int8(model_dir, bench, out, opts)
    return out, result


def _model(out: Path, name: str) -> onnx.ModelProto:
    return onnx.load(str(out / name))


def _zero_points(model) -> dict[str, np.ndarray]:
    """Zero point of every Q/DQ node (the third input, an initializer)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.name: inits[n.input[2]] for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2}


def _dequantized_inputs(model) -> dict[str, list[str]]:
    """node name -> the op types producing its inputs (to see which inputs come through Q/DQ)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return {n.name: [producer[i].op_type if i in producer else "initializer" for i in n.input]
            for n in model.graph.node}


# ------------------------------------------------------------------------------------ samples
def test_water_fill_gives_short_types_everything_and_splits_the_rest():
    assert ds.water_fill({"a": 2, "b": 10, "c": 10}, 12) == {"a": 2, "b": 5, "c": 5}
    assert ds.water_fill({"a": 2, "b": 3}, 10) == {"a": 2, "b": 3}  # not enough: take all
    assert sum(ds.water_fill({"a": 5, "b": 5, "c": 5}, 7).values()) == 7


def test_selection_is_stratified_by_mask_type(bench):
    records = list(Benchmark(bench).records("train", "train"))
    chosen = [c for _, cands in ds.select_stratified(records, 21, seed=0) for c in cands]
    counts = {t: sum(c.mask_type == t for c in chosen) for t in {c.mask_type for c in chosen}}
    assert len(chosen) == 21 and len(counts) == 7  # every type of the train split
    assert max(counts.values()) - min(counts.values()) <= 1  # 21 masks over 7 types: 3 each


def test_samples_npz_is_keyed_by_input_name(exported, bench):
    out, _ = exported
    samples = ds.CalibrationSamples.load(out / "calibration" / ds.SAMPLES_FILE)
    with np.load(out / "calibration" / ds.SAMPLES_FILE) as raw:
        assert {"frames", "key_frame", "audio", "text_embedding", "masks"} <= set(raw.files)
    config = json.loads((out / "config.json").read_text())
    assert len(samples) == SAMPLES
    assert samples.masks.shape == (SAMPLES, 1, config["key_size"], config["key_size"])
    assert samples.frames.shape[1:] == (10, 3, config["frame_size"], config["frame_size"])
    assert set(np.unique(samples.masks)) <= {0.0, 1.0}
    # Every train expression is visited (perfect and null, 5 each, cannot fill a 6-mask share), so
    # the counts are the water-filling of the whole split: 5 + 5 + 5 x 6 = 40.
    available: dict[str, int] = {}
    for record in Benchmark(bench).records("train", "train"):
        for cand in record.candidates:
            available[cand.mask_type] = available.get(cand.mask_type, 0) + 1
    assert samples.type_counts() == ds.water_fill(available, SAMPLES)
    assert samples.type_counts()["perfect"] == 5 and samples.type_counts()["merge"] == 6
    row = next(iter(ds.fused_rows(samples)))  # Optimum's reader adds the batch axis itself
    assert row["masks"].shape == (1, config["key_size"], config["key_size"]) and row["audio"].ndim == 1


def test_samples_file_errors_name_the_array(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, frames=np.zeros(1))
    with pytest.raises(ValueError, match=r"bad\.npz.*missing array"):
        ds.CalibrationSamples.load(path)


# ------------------------------------------------------------------------------------ flavours
def test_cpu_flavour_is_u8_activations_s8_per_channel_weights(exported):
    out, _ = exported
    for graph in ("auditor", "context", "masks"):
        model = _model(out, f"{graph}.int8-cpu.onnx")
        dtypes = {str(z.dtype) for z in _zero_points(model).values()}
        assert {"uint8", "int8"} <= dtypes, graph  # activations U8, weights S8 (bias: int32)
        weight_zps = [z for z in _zero_points(model).values() if z.dtype == np.int8]
        assert any(z.size > 1 for z in weight_zps), f"{graph}: no per-channel weight"
        assert all(np.all(z == 0) for z in weight_zps)  # symmetric weights


def test_trt_flavour_is_symmetric_s8_with_float_bias(exported):
    from auditor_lite.export.trt_checks import check_tensorrt_graph

    out, _ = exported
    model = _model(out, "auditor.int8-trt.onnx")
    zero_points = _zero_points(model)
    assert zero_points and all(z.dtype == np.int8 and np.all(z == 0) for z in zero_points.values())
    producers = _dequantized_inputs(model)
    biased = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2]
    assert biased and all(producers[n.name][2] == "initializer" for n in biased)
    assert check_tensorrt_graph(out / "auditor.int8-trt.onnx") == []
    assert check_tensorrt_graph(out / "auditor.int8-cpu.onnx")  # U8 / int32 zero points: refused


def test_audio_front_end_and_kept_node_stay_fp32(exported):
    out, _ = exported
    for name in ("auditor.int8-cpu.onnx", "auditor.int8-trt.onnx", "context.int8-cpu.onnx"):
        model = _model(out, name)
        producers = _dequantized_inputs(model)
        front = [n for n in model.graph.node if FRONTEND in n.name and n.op_type in ("Conv", "MatMul")]
        assert len(front) == 2, name  # the DFT convolution and the mel MatMul
        assert all("DequantizeLinear" not in producers[n.name] for n in front), name
        quantized = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")
                     and "DequantizeLinear" in producers[n.name]]
        assert quantized, name
    auditor = _model(out, "auditor.int8-cpu.onnx")
    assert "DequantizeLinear" not in _dequantized_inputs(auditor)[KEPT_NODE]
    masks = _model(out, "masks.int8-cpu.onnx")  # the same layer, without the fused wrapper's scope
    assert "DequantizeLinear" not in _dequantized_inputs(masks)["/mask_proj/MatMul"]
    assert "DequantizeLinear" in _dequantized_inputs(masks)["/mask_stem/layers/layers.0/Conv"]


def test_keep_fp32_names_are_checked(exported):
    out, _ = exported
    model = _model(out, "auditor.onnx")
    assert resolve_keep_fp32(model, ["/model/iou_head/"]) == [
        n.name for n in model.graph.node if n.name.startswith("/model/iou_head/")]
    with pytest.raises(QuantizationError, match="no_such_node"):
        resolve_keep_fp32(model, ["/model/no_such_node"])


# ------------------------------------------------------------------------------------ reports
def _matmul_graph(quantized: bool) -> onnx.ModelProto:
    """y = x @ I (2x2); quantized: x goes through Q/DQ with scale 0.5 (U8, zero point 0) and the
    weight through an int8 DequantizeLinear, as the QDQ quantizer writes it."""
    from onnx import TensorProto, helper

    def const(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    io = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]
    if not quantized:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
        inits = [const("w", np.eye(2, dtype=np.float32))]
    else:
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
                 helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
                 helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], name="wdq"),
                 helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm")]
        inits = [const("s", np.float32(0.5)), const("z", np.uint8(0)), const("ws", np.float32(1.0)),
                 const("wq", np.eye(2, dtype=np.int8))]
    graph = helper.make_graph(nodes, "g", io, out, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_sensitivity_by_hand(tmp_path):
    from auditor_lite.calibration import sensitivity

    onnx.save(_matmul_graph(False), tmp_path / "fp32.onnx")
    onnx.save(_matmul_graph(True), tmp_path / "qdq.onnx")
    rows = ds.CalibrationRows("g", lambda i: {"x": np.array([0.2, 1.0], np.float32)}, range(1), "train")
    (entry,) = sensitivity.sensitivity_report(tmp_path / "fp32.onnx", tmp_path / "qdq.onnx", rows)
    # x = [0.2, 1.0] quantizes to [0, 1.0]: signal 0.04 + 1, noise 0.04 -> 10 log10(26) dB, and
    # the identity MatMul passes the same error to its output.
    assert entry["node"] == "mm" and entry["samples"] == 1
    assert entry["local_sqnr_db"] == pytest.approx(10 * np.log10(26), abs=1e-4)
    assert entry["output_sqnr_db"] == pytest.approx(10 * np.log10(26), abs=1e-4)
    assert "mm (MatMul)" in sensitivity.format_top([entry])


def test_directory_manifest_and_reports(exported):
    out, result = exported
    manifest = load_manifest(out)  # every hash verified, no unlisted graph
    assert manifest.graphs["auditor"] == {"fp32": "auditor.onnx", "int8-cpu": "auditor.int8-cpu.onnx",
                                          "int8-trt": "auditor.int8-trt.onnx"}
    assert manifest.graphs["masks"]["int8-cpu"] == "masks.int8-cpu.onnx"
    assert manifest.default_precision == "int8-cpu"
    assert manifest.data["score_calibration"] == "score_calibration.json"
    sensitivity = json.loads((out / "calibration" / "sensitivity.json").read_text())
    nodes = sensitivity["flavours"]["int8-cpu"]
    assert nodes and all(KEPT_NODE != n["node"] and FRONTEND not in n["node"] for n in nodes)
    worst = [n["output_sqnr_db"] for n in nodes if n["output_sqnr_db"] is not None]
    assert worst == sorted(worst)
    ranges = json.loads((out / "calibration" / "ranges.auditor.int8-trt.json").read_text())
    assert ranges and all(low <= high for low, high in ranges.values() if np.isscalar(low))
    latency = result.report["latency"]["graphs"]
    assert set(latency) == {"fp32", "int8-cpu", "int8-trt"}
    assert latency["int8-cpu"]["bytes"] < latency["fp32"]["bytes"]


def test_gate_passes_and_writes_predictions_of_every_graph(exported, bench):
    out, result = exported
    verdict = json.loads((out / "calibration" / "gate.json").read_text())
    assert verdict["passed"] and set(verdict["failures"]) == {"int8-cpu", "int8-trt", "int8-cpu-split"}
    for name, deltas in verdict["deltas"].items():
        assert 0 < deltas["iou"]["max_abs_diff"] < 0.05, name  # quantized, and close
    for name in ("fp32", "int8-cpu", "int8-trt", "int8-cpu-split", "int8-cpu-split-calibrated"):
        predictions = read_predictions(out / "calibration" / "predictions" / f"{name}.jsonl")
        assert len(predictions) == sum(len(r.candidates) for r in Benchmark(bench).records("test_s", "image"))
    # The runtime runs the split INT8 graphs: the score calibration is fitted on their outputs.
    calibrated = read_predictions(out / "calibration" / "predictions" / "int8-cpu-split-calibrated.jsonl")
    assert all(p.iou_low <= p.iou <= p.iou_high for p in calibrated.values())
    calib = json.loads((out / "score_calibration.json").read_text())
    assert np.all(np.diff(calib["x"]) > 0) and np.all(np.diff(calib["y"]) >= 0)
    assert calib["conformal"]["coverage"] == 0.9 and "test_s/image" in calib["test"]
    assert calib["graph"] == "context.int8-cpu.onnx + masks.int8-cpu.onnx"


def test_requantizing_an_int8_directory_starts_from_its_fp32_graphs(exported, tmp_path):
    out, _ = exported
    manifest = pipeline._check_source(out, tmp_path / "again", overwrite=False)
    staging = pipeline._stage(out, tmp_path / "again", manifest)
    staged = load_manifest(staging)  # consistent: every listed file present, no unlisted graph
    assert staged.graphs["auditor"] == {"fp32": "auditor.onnx"}
    assert "score_calibration" not in staged.data and not (staging / "calibration").exists()
    assert not list(staging.glob("*.int8-*.onnx"))
    assert staged.graphs["text_encoder"] == manifest.graphs["text_encoder"]


def _table(iou_true, types, actions) -> GroundTruthTable:
    n = len(iou_true)
    obj = lambda values: np.array(values, dtype=object)  # noqa: E731
    return GroundTruthTable(split="test_s", mode="image", uid=obj([f"u{i // 2}" for i in range(n)]),
                            frame=np.zeros(n, int), cand_id=obj([f"perfect-{i}" for i in range(n)]),
                            mask_type=obj(types), rank=np.full(n, -1), setting=obj(types),
                            iou=np.array(iou_true, float), action=obj(actions))


def _run(keys, iou, type_index, action_index) -> gate_mod.GraphRun:
    type_logits = np.eye(7, dtype=np.float32)[type_index] * 5
    action_logits = np.eye(4, dtype=np.float32)[action_index] * 5
    return gate_mod.GraphRun(keys=keys, true_iou=[0.0] * len(keys), uids=[k[0] for k in keys],
                             chunks=[(np.asarray(iou, np.float32), type_logits, action_logits)])


def test_gate_thresholds_by_hand():
    from auditor_lite.data.schema import ACTIONS, MASK_TYPES

    gt = _table([0.5, 0.5, 1.0, 0.0], ["perfect", "perfect", "perfect", "full_neg"],
                ["accept", "accept", "accept", "reject"])
    keys = gt.keys()
    fp32 = _run(keys, [0.5, 0.5, 1.0, 0.0], [0, 0, 0, 5], [0, 0, 0, 3])       # RMSE 0, F2 100
    shifted = _run(keys, [0.52, 0.52, 1.0, 0.0], [0, 0, 0, 5], [0, 0, 0, 3])  # RMSE sqrt(2*0.02^2/4)
    relabelled = _run(keys, [0.5, 0.5, 1.0, 0.0], [0, 0, 0, 0], [0, 0, 0, 3])  # full_neg -> perfect
    report = gate_mod.gate({"fp32": fp32, "shifted": shifted, "relabelled": relabelled}, "fp32", gt,
                           MASK_TYPES, ACTIONS, max_rmse_increase=0.01, max_f2_drop=1.0)
    assert report.scores["shifted"]["rmse"] == pytest.approx(0.02 / np.sqrt(2), abs=1e-6)
    assert len(report.failures["shifted"]) == 1 and "IoU RMSE" in report.failures["shifted"][0]
    # F2-M: perfect P=3/4 R=1 -> F2 = 5*0.75/(3+1) = 0.9375; full_neg R=0 -> 0; macro 46.875 points.
    assert report.scores["relabelled"]["f2_m"] == pytest.approx(46.875)
    assert ["F2-M" in r for r in report.failures["relabelled"]] == [True]
    assert report.deltas["shifted"]["iou"]["max_abs_diff"] == pytest.approx(0.02, abs=1e-6)
    assert report.deltas["relabelled"]["type_agreement"] == 0.75
    assert not report.passed and "FAIL" in gate_mod.format_gate(report)


def test_failing_gate_exits_non_zero_prints_deltas_and_installs_nothing(
        model_dir, bench, heldout, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from auditor_lite.calibration.cli import int8

    real_gate = pipeline.gate
    # Forced: a negative allowance demands that INT8 *improve* RMSE by a full unit, impossible.
    monkeypatch.setattr(pipeline, "gate", lambda *args, **kwargs: real_gate(
        *args[:5], max_rmse_increase=-1.0, max_f2_drop=0.0))
    out = tmp_path / "model"
    result = CliRunner().invoke(int8, ["--model", str(model_dir), "--bench", str(bench), "--out", str(out),
                                       "--flavour", "trt", "--samples", "8", "--heldout", str(heldout),
                                       "--latency-rounds", "0", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "deltas against fp32" in result.output and "int8-trt: FAIL: IoU RMSE" in result.output
    assert "iou mean/max |d|" in result.output
    assert not out.exists() and (tmp_path / ".model.partial" / "calibration" / "gate.json").is_file()


def test_cli_errors_are_one_line(model_dir, bench, tmp_path):
    from click.testing import CliRunner

    from auditor_lite.calibration.cli import int8

    result = CliRunner().invoke(int8, ["--model", str(bench), "--bench", str(bench), "--out",
                                       str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 1 and "no manifest.json" in result.output
    result = CliRunner().invoke(int8, ["--model", str(model_dir), "--bench", str(bench), "--out",
                                       str(tmp_path / "y"), "--calib-split", "test_u", "--quiet"])
    assert result.exit_code == 1 and "needs at least 4" in result.output and "Traceback" not in result.output
