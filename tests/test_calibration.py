"""INT8 calibration (auditor_lite.calibration): QDQ flavours, heads kept float, the gate, the CLI.

The shared tiny grounded model directory (tests/runtime_helpers.py) is quantized on a synthesized
8-clip benchmark once per flavour (CPU gated, TensorRT not) and inspected by several tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum.onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from auditor_lite.calibration import gate as gate_mod  # noqa: E402
from auditor_lite.calibration import grounded_int8  # noqa: E402
from auditor_lite.eval.protocol import GroundTruthTable  # noqa: E402
from auditor_lite.manifest import load_manifest  # noqa: E402

GRAPHS = ("context", "masks")


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
def exported(model_dir, bench, tmp_path_factory):
    """``{flavour: (out, report)}``. Random weights leave the tiny model's class logits within
    ~1e-3 of each other, so INT8 rounding flips argmaxes at random and F2 on 3 expressions swings
    by points: the F2 part of the gate is checked by hand (test_gate_thresholds_by_hand); here the
    RMSE part is at its default."""
    root = tmp_path_factory.mktemp("int8")
    out = {}
    for flavour, run_gate in (("cpu", True), ("trt", False)):
        report = grounded_int8.int8_grounded(model_dir, bench, root / flavour, expressions=4, flavour=flavour,
                                             gate_expressions=3, max_f2_drop=100.0, run_gate=run_gate,
                                             log=lambda *_: None)
        out[flavour] = (root / flavour, report)
    return out


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


# ------------------------------------------------------------------------------------ flavours
def test_cpu_flavour_is_u8_activations_s8_per_channel_weights(exported):
    out, _ = exported["cpu"]
    for graph in GRAPHS:
        model = _model(out, f"{graph}.int8-cpu.onnx")
        dtypes = {str(z.dtype) for z in _zero_points(model).values()}
        assert {"uint8", "int8"} <= dtypes, graph  # activations U8, weights S8 (bias: int32)
        weight_zps = [z for z in _zero_points(model).values() if z.dtype == np.int8]
        assert any(z.size > 1 for z in weight_zps), f"{graph}: no per-channel weight"
        assert all(np.all(z == 0) for z in weight_zps)  # symmetric weights


def test_trt_flavour_is_symmetric_s8_with_float_bias(exported):
    from auditor_lite.export.trt_checks import check_tensorrt_graph

    out, _ = exported["trt"]
    for graph in GRAPHS:
        model = _model(out, f"{graph}.int8-trt.onnx")
        zero_points = _zero_points(model)
        assert zero_points and all(z.dtype == np.int8 and np.all(z == 0) for z in zero_points.values()), graph
        producers = _dequantized_inputs(model)
        biased = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2]
        assert biased and all(producers[n.name][2] == "initializer" for n in biased), graph
        assert check_tensorrt_graph(out / f"{graph}.int8-trt.onnx") == [], graph
    assert check_tensorrt_graph(exported["cpu"][0] / "masks.int8-cpu.onnx")  # U8 / int32 zero points: refused


def test_heads_stay_float_and_the_rest_is_quantized(exported):
    out, report = exported["cpu"]
    for graph in GRAPHS:
        heads = report[graph]["excluded"]   # head_nodes of the pre-processed graph
        model = _model(out, f"{graph}.int8-cpu.onnx")
        producers = _dequantized_inputs(model)
        assert heads and all(n in producers for n in heads), graph
        # the activation and the weight stay float (a Gemm's C may be a quantized residual)
        assert all("DequantizeLinear" not in producers[n][:2] for n in heads), graph
        quantized = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")
                     and "DequantizeLinear" in producers[n.name]]
        assert quantized, graph


def test_manifest_default_report_and_ranges(exported):
    out, report = exported["cpu"]
    manifest = load_manifest(out)
    assert manifest.default_precision == "int8-cpu"
    assert manifest.graphs["masks"] == {"fp32": "masks.onnx", "int8-cpu": "masks.int8-cpu.onnx"}
    int8 = manifest.data["int8"]
    assert int8["calibration"]["clips"] >= 1 and int8["gate"]["passed"] and int8["gate"]["expressions"] == 3
    for graph in GRAPHS:
        assert (out / "calibration" / f"ranges.{graph}.int8-cpu.json").is_file()
    trt = load_manifest(exported["trt"][0])
    assert trt.default_precision == "int8-trt" and "gate" not in trt.data["int8_trt"]


def test_a_tensorrt_flavour_added_to_a_cpu_int8_directory_keeps_the_cpu_default(exported, bench, tmp_path):
    both = tmp_path / "both"
    grounded_int8.int8_grounded(exported["cpu"][0], bench, both, expressions=2, flavour="trt", run_gate=False,
                                log=lambda *_: None)
    manifest = load_manifest(both)
    assert manifest.default_precision == "int8-cpu"
    assert manifest.precisions("masks") == ["fp32", "int8-cpu", "int8-trt"]
    assert manifest.data["int8"]["gate"]["passed"] and "int8_trt" in manifest.data


def test_products_of_two_activations_stay_float(exported):
    """A MatMul of two activations (attention probabilities times values) is not quantized: in the
    QDQ graph no MatMul reads two DequantizeLinear nodes that both dequantize a QuantizeLinear."""
    from auditor_lite.calibration.quantize import activation_products

    out, report = exported["cpu"]
    for graph in GRAPHS:
        model = _model(out, f"{graph}.int8-cpu.onnx")
        producer = {o: n for n in model.graph.node for o in n.output}

        def quantized_activation(tensor):
            dq = producer.get(tensor)
            return dq is not None and dq.op_type == "DequantizeLinear" and \
                getattr(producer.get(dq.input[0]), "op_type", None) == "QuantizeLinear"

        both = [n.name for n in model.graph.node
                if n.op_type == "MatMul" and all(quantized_activation(i) for i in n.input[:2])]
        assert both == [], f"{graph}: activation x activation MatMuls quantized: {both}"
        products = activation_products(_model(out, f"{graph}.onnx"))
        assert set(products) <= set(report[graph]["excluded"]) or not products, graph


def test_context_only_int8_keeps_the_masks_graph_fp32(model_dir, bench, tmp_path):
    from auditor_lite.runtime.auditor import Auditor

    out = tmp_path / "context-only"
    report = grounded_int8.int8_grounded(model_dir, bench, out, expressions=2, graphs=("context",),
                                         run_gate=False, log=lambda *_: None)
    manifest = load_manifest(out)
    assert manifest.graphs["masks"] == {"fp32": "masks.onnx", "int8-cpu": "masks.onnx"}
    assert manifest.graphs["context"]["int8-cpu"] == "context.int8-cpu.onnx"
    assert not (out / "masks.int8-cpu.onnx").exists() and report["masks"]["float"]
    assert not (out / "calibration" / "ranges.masks.int8-cpu.json").exists()
    int8, fp32 = (Auditor.load(out, precision=p, intra_op_threads=1) for p in ("int8-cpu", "fp32"))
    assert int8.graphs["masks"].path == fp32.graphs["masks"].path
    with pytest.raises(ValueError, match="graphs"):
        grounded_int8.int8_grounded(model_dir, bench, tmp_path / "bad", graphs=("scorer",), log=lambda *_: None)


# ------------------------------------------------------------------------------------ the gate
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


def test_failing_gate_exits_non_zero_prints_deltas_and_installs_nothing(model_dir, bench, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from auditor_lite.calibration.cli import int8

    real_gate = grounded_int8.gate
    # Forced: a negative allowance demands that INT8 *improve* RMSE by a full unit, impossible.
    monkeypatch.setattr(grounded_int8, "gate", lambda *args, **kwargs: real_gate(
        *args[:5], max_rmse_increase=-1.0, max_f2_drop=0.0))
    out = tmp_path / "model"
    result = CliRunner().invoke(int8, ["--model", str(model_dir), "--bench", str(bench), "--out", str(out),
                                       "--expressions", "2", "--gate-expressions", "2", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "deltas against fp32" in result.output and "int8-cpu: FAIL: IoU RMSE" in result.output
    assert "iou mean/max |d|" in result.output and "Traceback" not in result.output
    assert not out.exists() and (tmp_path / ".model.partial" / "manifest.json").is_file()


def test_cli_errors_are_one_line(model_dir, bench, tmp_path):
    from click.testing import CliRunner

    from auditor_lite.calibration.cli import int8

    result = CliRunner().invoke(int8, ["--model", str(bench), "--bench", str(bench), "--out",
                                       str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 1 and "manifest.json: missing" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(int8, ["--model", str(model_dir), "--bench", str(model_dir), "--out",
                                       str(tmp_path / "y"), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
