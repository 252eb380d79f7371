"""TensorRT side of the export: the static graph checks (runnable anywhere), profiles, cache keys,
the trtexec command, and ``export trt`` without TensorRT. Engine builds skip where TensorRT is absent.
Torch-free: the graphs are built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from auditor_lite.export import tensorrt as trt_build  # noqa: E402
from auditor_lite.export.trt_checks import check_tensorrt_graph, check_tensorrt_model, operator_matrix  # noqa: E402
from auditor_lite.manifest import write_manifest  # noqa: E402

SHARED_MATRIX = Path(__file__).resolve().parents[2] / "shared" / "data" / "onnx_tensorrt_operators.md"
HAS_TENSORRT = trt_build.tensorrt_available()
CONTRACT = {"inputs": [{"name": "masks", "shape": ["N", 1, 8, 8], "dtype": "float32"}],
            "outputs": [{"name": "iou", "shape": ["N"], "dtype": "float32"}]}


def make_model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def value(name, dtype=TensorProto.FLOAT, shape=("N", 1, 8, 8)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def mean_graph(extra_nodes=(), extra_inits=(), opset=18, first_input="masks"):
    """masks (N, 1, 8, 8) -> [extra nodes] -> ReduceMean -> iou (N,)."""
    nodes = list(extra_nodes) + [helper.make_node("ReduceMean", [first_input, "axes"], ["iou"], name="mean",
                                                  keepdims=0)]
    return make_model(nodes, [value("masks")], [value("iou", shape=("N",))],
                      [const("axes", np.array([1, 2, 3], np.int64)), *extra_inits], opset)


# ----------------------------------------------------------------------------------- operator matrix
def test_operator_matrix_parsed_from_the_shipped_copy():
    supported, opsets = operator_matrix()
    assert opsets == (9, 20)
    assert {"LayerNormalization", "Erf", "MatMul", "Conv", "QuantizeLinear", "DequantizeLinear"} <= supported
    assert not {"STFT", "DFT", "DynamicQuantizeLinear", "MatMulInteger", "HannWindow"} & supported  # rows with N
    assert 140 <= len(supported) <= 160


@pytest.mark.skipif(not SHARED_MATRIX.is_file(), reason="../shared is not present (a user's clone)")
def test_shipped_matrix_is_a_faithful_copy():
    from importlib import resources

    shipped = (resources.files("auditor_lite") / "assets" / "onnx_tensorrt_operators.md").read_bytes()
    assert shipped == SHARED_MATRIX.read_bytes()


# ----------------------------------------------------------------------------------- graph checks
def test_clean_graph_has_no_problems(tmp_path):
    onnx.save(mean_graph(), str(tmp_path / "ok.onnx"))
    assert check_tensorrt_graph(tmp_path / "ok.onnx") == []


def test_unsupported_forbidden_and_custom_ops_are_named():
    nodes = [helper.make_node("Mod", ["masks", "two"], ["m"], name="the_mod", fmod=1),
             helper.make_node("MatMulInteger", ["m", "m"], ["mi"], name="mmi"),
             helper.make_node("FusedGemm", ["m", "m"], ["fg"], name="fused", domain="com.microsoft")]
    problems = check_tensorrt_model(mean_graph(nodes, [const("two", np.float32(2.0))]))
    assert "op Mod (forbidden): 1 node(s): the_mod" in problems
    assert "op MatMulInteger (not supported by onnx-tensorrt): 1 node(s): mmi" in problems
    assert "op com.microsoft::FusedGemm (custom domain): 1 node(s): fused" in problems


def test_opset_outside_the_parser_range():
    assert check_tensorrt_model(mean_graph(opset=21)) == ["opset 21: onnx-tensorrt parses opsets 9 to 20"]


def qdq_graph(zero_point, q_node_inputs=("masks", "scale", "zp")):
    nodes = [helper.make_node("QuantizeLinear", list(q_node_inputs), ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zp"] if "zp" in q_node_inputs else ["q", "scale"],
                              ["dq"], name="dq")]
    inits = [const("scale", np.float32(0.02))] + ([const("zp", zero_point)] if zero_point is not None else [])
    return mean_graph(nodes, inits, first_input="dq")


def test_symmetric_int8_zero_points_pass():
    assert check_tensorrt_model(qdq_graph(np.int8(0))) == []


@pytest.mark.parametrize("zero_point,inputs,message", [
    (np.int8(3), ("masks", "scale", "zp"), "QuantizeLinear q: zero point is not 0"),
    (np.uint8(0), ("masks", "scale", "zp"), "QuantizeLinear q: zero point is UINT8, TensorRT needs INT8"),
    (None, ("masks", "scale"), "QuantizeLinear q: no zero point, so the type defaults to UINT8"),
])
def test_bad_zero_points_are_reported(zero_point, inputs, message):
    problems = check_tensorrt_model(qdq_graph(zero_point, inputs))
    assert any(p.startswith(message) for p in problems), problems


def test_computed_zero_point_is_reported():
    nodes = [helper.make_node("Cast", ["zp_float"], ["zp"], to=TensorProto.INT8),
             helper.make_node("QuantizeLinear", ["masks", "scale", "zp"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["dq"], name="dq")]
    model = mean_graph(nodes, [const("scale", np.float32(0.1)), const("zp_float", np.float32(0))], first_input="dq")
    assert "QuantizeLinear q: zero point 'zp' is not a constant" in check_tensorrt_model(model)


def test_input_values_reaching_a_shape_operand_are_shape_tensors():
    # 'rows' (an int64 input) becomes Reshape's target shape: TensorRT would need it as a shape tensor.
    nodes = [helper.make_node("Cast", ["rows"], ["rows64"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["masks", "rows64"], ["flat"], name="reshape_by_input"),
             helper.make_node("ReduceMean", ["flat", "axes1"], ["iou"], keepdims=0)]
    model = make_model(nodes, [value("masks"), value("rows", TensorProto.INT64, (2,))], [value("iou", shape=("N",))],
                       [const("axes1", np.array([1], np.int64))])
    (problem,) = check_tensorrt_model(model)
    assert problem.startswith("Reshape reshape_by_input: operand 1 ('rows64') is computed from the value "
                              "of graph input(s) rows")


def test_reading_an_input_shape_is_not_a_shape_tensor():
    # Shape(masks) -> Reshape target: the dynamic N propagates through shapes, which TensorRT handles.
    nodes = [helper.make_node("Shape", ["masks"], ["dims"]),
             helper.make_node("Slice", ["dims", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["masks", "target"], ["flat"]),
             helper.make_node("ReduceMean", ["flat", "axes1"], ["iou"], keepdims=0)]
    inits = [const("zero", np.array([0], np.int64)), const("one", np.array([1], np.int64)),
             const("minus_one", np.array([-1], np.int64)), const("axes1", np.array([1], np.int64))]
    model = make_model(nodes, [value("masks")], [value("iou", shape=("N",))], inits)
    onnx.checker.check_model(model, full_check=True)
    assert check_tensorrt_model(model) == []


def test_unreadable_graph_is_a_clear_error(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ValueError, match=r"broken\.onnx: not a readable ONNX model"):
        check_tensorrt_graph(tmp_path / "broken.onnx")


# ----------------------------------------------------------------------------------- profiles, keys
def test_profile_shapes_from_the_contract():
    shapes = trt_build.profile_shapes(CONTRACT)
    assert shapes == {"masks": ((1, 1, 8, 8), (13, 1, 8, 8), (64, 1, 8, 8))}
    assert trt_build.profile_shapes(CONTRACT, {"N": (2, 4, 8)})["masks"][2] == (8, 1, 8, 8)
    with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
        trt_build.profile_shapes(CONTRACT, {"N": (4, 2, 8)})
    with pytest.raises(ValueError, match="no profile for dimension 'K'"):
        trt_build.profile_shapes({"inputs": [{"name": "x", "shape": ["K"], "dtype": "float32"}]})


def test_build_mode_follows_tensorrt_version_and_graph():
    assert trt_build.build_mode((10, 3), quantized=True) == "strongly-typed"
    assert trt_build.build_mode((8, 6), quantized=True) == "int8-fp16"
    assert trt_build.build_mode((10, 3), quantized=False) == "fp16"
    assert trt_build.parse_version("10.3.0.26") == (10, 3)


def test_engine_cache_key_changes_with_every_ingredient():
    base = dict(tensorrt_version="10.3.0", gpu="NVIDIA H100", onnx_sha256="ab" * 32, mode="strongly-typed",
                shapes=trt_build.profile_shapes(CONTRACT))
    key = trt_build.engine_cache_key(**base)
    assert key == trt_build.engine_cache_key(**dict(base))  # deterministic
    for change in ({"tensorrt_version": "10.4.0"}, {"gpu": "NVIDIA L4"}, {"onnx_sha256": "cd" * 32},
                   {"mode": "int8-fp16"}, {"shapes": trt_build.profile_shapes(CONTRACT, {"N": (1, 13, 128)})}):
        assert trt_build.engine_cache_key(**{**base, **change}) != key, change


def test_trtexec_command_for_each_mode():
    shapes = trt_build.profile_shapes(CONTRACT)
    command = trt_build.trtexec_command("dir/auditor.int8-trt.onnx", engine_path="a.engine", shapes=shapes,
                                        mode="strongly-typed", timing_cache="cache/t.cache")
    assert command == ("trtexec --onnx=dir/auditor.int8-trt.onnx --minShapes=masks:1x1x8x8 "
                       "--optShapes=masks:13x1x8x8 --maxShapes=masks:64x1x8x8 --stronglyTyped "
                       "--timingCacheFile=cache/t.cache --saveEngine=a.engine")
    legacy = trt_build.trtexec_command("m.onnx", engine_path="my engine.plan", shapes=shapes, mode="int8-fp16")
    assert legacy.endswith("--int8 --fp16 '--saveEngine=my engine.plan'")  # quoted for the shell
    with pytest.raises(ValueError, match="unknown build mode"):
        trt_build.trtexec_command("m.onnx", engine_path="e", shapes=shapes, mode="int4")


# ----------------------------------------------------------------------------------- export trt
@pytest.fixture
def trt_model_dir(tmp_path):
    onnx.save(mean_graph(), str(tmp_path / "masks.onnx"))
    write_manifest(tmp_path, name="tiny", graphs={"masks": {"fp32": "masks.onnx"}},
                   contract={"masks": CONTRACT}, default_precision="fp32")
    return tmp_path


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the behaviour without TensorRT")
def test_export_trt_prints_trtexec_then_fails_clearly(trt_model_dir, tmp_path):
    from click.testing import CliRunner

    from auditor_lite.export.cli import export

    result = CliRunner().invoke(export, ["trt", "--model", str(trt_model_dir), "--out", str(tmp_path / "e.engine"),
                                         "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1
    assert f"trtexec --onnx={trt_model_dir / 'masks.onnx'} --minShapes=masks:1x1x8x8" in result.output
    assert f"--fp16 --timingCacheFile={tmp_path / 'cache' / 'timing.cache'}" in result.output
    assert "TensorRT is not installed, so no engine was built" in result.output
    with pytest.raises(trt_build.TensorRTUnavailable, match="pip install tensorrt"):
        trt_build.build_engine(trt_model_dir / "masks.onnx", tmp_path / "x.engine",
                               shapes=trt_build.profile_shapes(CONTRACT))


def test_export_trt_refuses_a_graph_tensorrt_cannot_build(tmp_path):
    from click.testing import CliRunner

    from auditor_lite.export.cli import export

    mod = helper.make_node("Mod", ["masks", "two"], ["m"], name="bad_mod", fmod=1)
    onnx.save(mean_graph([mod], [const("two", np.float32(2.0))], first_input="m"), str(tmp_path / "masks.onnx"))
    write_manifest(tmp_path, name="t", graphs={"masks": {"fp32": "masks.onnx"}},
                   contract={"masks": CONTRACT}, default_precision="fp32")
    result = CliRunner().invoke(export, ["trt", "--model", str(tmp_path)])
    assert result.exit_code == 1
    assert "not buildable by TensorRT" in result.output and "op Mod (forbidden): 1 node(s): bad_mod" in result.output


@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed (NVIDIA GPU machines only)")
def test_engine_build_and_cache_reuse(trt_model_dir, tmp_path):
    from auditor_lite.manifest import load_manifest

    manifest = load_manifest(trt_model_dir)
    shapes = trt_build.profile_shapes(CONTRACT, {"N": (1, 4, 8)})
    plan = trt_build.plan_engine(trt_model_dir / "masks.onnx", manifest.data["files"]["masks.onnx"]["sha256"],
                                 shapes=shapes, cache_dir=tmp_path, label="tiny")
    engine, built = trt_build.build_planned(plan)
    assert built and engine.stat().st_size > 0 and plan.timing_cache.is_file()
    assert trt_build.build_planned(plan) == (engine, False)  # reused from the cache


def test_export_group_help_lists_its_commands():
    from click.testing import CliRunner

    from auditor_lite.export.cli import export

    result = CliRunner().invoke(export, ["--help"])
    assert result.exit_code == 0, result.output
    assert "onnx" in result.output and "trt" in result.output
