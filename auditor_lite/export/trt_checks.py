"""Static checks that an ONNX graph will parse and build in TensorRT, runnable without TensorRT.

:func:`check_tensorrt_graph` returns a list of problems (empty: none found):

* every op is in onnx-tensorrt's supported-operator matrix (``Supported = Y``; the matrix of
  release 10.1 is shipped as ``auditor_lite/assets/onnx_tensorrt_operators.md``, Apache-2.0),
  in the default ONNX domain, and none of STFT / DFT / Mod / If / Loop (data-dependent control
  flow or ops that older parsers reject; the auditor's graphs need none of them);
* the default-domain opset is within the range the matrix states (opset 9 to 20);
* every QuantizeLinear / DequantizeLinear zero point is a constant INT8 zero (TensorRT's explicit
  quantization is symmetric; a missing zero point means UINT8);
* no graph input is a shape tensor: the value of an input never reaches a shape operand
  (Reshape/Expand/Tile shape, ConstantOfShape, Slice bounds, ...). Reading an input's *shape*
  (``Shape``) is fine: that is how the dynamic mask batch N propagates.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import onnx
from onnx import numpy_helper

OPERATOR_MATRIX = "onnx_tensorrt_operators.md"
# Rejected even where the matrix says Y: no auditor graph needs them, and they are the usual signs
# of an export gone wrong (an STFT instead of the conv-DFT front end, Mod from unflatten(-1), control
# flow from a traced Python branch).
FORBIDDEN_OPS = ("STFT", "DFT", "Mod", "If", "Loop")
# Operand positions whose *values* TensorRT needs at build time (shape tensors).
SHAPE_OPERANDS = {"Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,),
                  "Slice": (1, 2, 3, 4), "Range": (0, 1, 2), "Resize": (2, 3), "TopK": (1,),
                  "OneHot": (1,), "Pad": (1, 3), "Unsqueeze": (1,), "Squeeze": (1,), "Split": (1,)}
# Ops whose outputs depend on an input's shape only, not its values.
SHAPE_ONLY_OPS = ("Shape", "Size")
DEFAULT_DOMAINS = ("", "ai.onnx")


def _matrix_text() -> str:
    return (resources.files("auditor_lite") / "assets" / OPERATOR_MATRIX).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def operator_matrix() -> tuple[frozenset[str], tuple[int, int]]:
    """``(supported op names, (min opset, max opset))`` parsed from the shipped onnx-tensorrt matrix."""
    text = _matrix_text()
    supported = set()
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1] == "Y" and re.fullmatch(r"[A-Za-z0-9]+", cells[0]):
            supported.add(cells[0])
    opsets = re.search(r"opset (\d+) to opset (\d+)", text)
    if not supported or opsets is None:
        raise RuntimeError(f"auditor_lite/assets/{OPERATOR_MATRIX}: no operator table or opset range found")
    return frozenset(supported), (int(opsets.group(1)), int(opsets.group(2)))


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node outputs (tensor-valued) by name."""
    found = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    found[node.output[0]] = attribute.t
    return found


def _op_problems(model: onnx.ModelProto, supported: frozenset[str]) -> list[str]:
    by_op: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        label = node.name or f"#{index}"
        if node.domain not in DEFAULT_DOMAINS:
            by_op.setdefault(f"{node.domain}::{node.op_type} (custom domain)", []).append(label)
        elif node.op_type in FORBIDDEN_OPS:
            by_op.setdefault(f"{node.op_type} (forbidden)", []).append(label)
        elif node.op_type not in supported:
            by_op.setdefault(f"{node.op_type} (not supported by onnx-tensorrt)", []).append(label)
    return [f"op {op}: {len(nodes)} node(s): {', '.join(nodes[:5])}{' ...' if len(nodes) > 5 else ''}"
            for op, nodes in sorted(by_op.items())]


def _opset_problems(model: onnx.ModelProto, opset_range: tuple[int, int]) -> list[str]:
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS and not opset_range[0] <= entry.version <= opset_range[1]:
            return [f"opset {entry.version}: onnx-tensorrt parses opsets {opset_range[0]} to {opset_range[1]}"]
    return []


def _zero_point_problems(model: onnx.ModelProto) -> list[str]:
    constants = _constants(model)
    quantized_outputs = set()  # outputs of QuantizeLinear nodes whose zero point checked out INT8
    problems = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        label = f"{node.op_type} {node.name or '#' + str(index)}"
        zero_point = node.input[2] if len(node.input) > 2 else ""
        if not zero_point:
            source = constants.get(node.input[0])
            int8_input = (node.input[0] in quantized_outputs
                          or (source is not None and source.data_type == onnx.TensorProto.INT8))
            if node.op_type == "QuantizeLinear" or not int8_input:
                problems.append(f"{label}: no zero point, so the type defaults to UINT8; TensorRT "
                                "needs an INT8 zero point of 0")
            continue
        tensor = constants.get(zero_point)
        if tensor is None:
            problems.append(f"{label}: zero point {zero_point!r} is not a constant")
        elif tensor.data_type != onnx.TensorProto.INT8:
            problems.append(f"{label}: zero point is {onnx.TensorProto.DataType.Name(tensor.data_type)}, "
                            "TensorRT needs INT8")
        elif numpy_helper.to_array(tensor).any():
            problems.append(f"{label}: zero point is not 0 (TensorRT quantization is symmetric)")
        elif node.op_type == "QuantizeLinear":
            quantized_outputs.add(node.output[0])
    return problems


def _shape_tensor_problems(model: onnx.ModelProto) -> list[str]:
    """Graph inputs whose values flow into a shape operand (TensorRT shape-tensor inputs)."""
    initializers = {init.name for init in model.graph.initializer}
    origin = {i.name: {i.name} for i in model.graph.input if i.name not in initializers}
    problems = []
    for index, node in enumerate(model.graph.node):  # ONNX nodes are topologically sorted
        for position in SHAPE_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in origin:
                inputs = ", ".join(sorted(origin[node.input[position]]))
                problems.append(f"{node.op_type} {node.name or '#' + str(index)}: operand {position} "
                                f"({node.input[position]!r}) is computed from the value of graph "
                                f"input(s) {inputs}, which TensorRT would need as shape tensors")
        if node.op_type in SHAPE_ONLY_OPS:
            continue
        sources = set().union(*(origin.get(name, set()) for name in node.input))
        if sources:
            for output in node.output:
                origin[output] = sources
    return problems


def check_tensorrt_model(model: onnx.ModelProto) -> list[str]:
    """Problems that would stop onnx-tensorrt from parsing/building ``model`` (empty: none)."""
    supported, opset_range = operator_matrix()
    return (_opset_problems(model, opset_range) + _op_problems(model, supported)
            + _zero_point_problems(model) + _shape_tensor_problems(model))


def check_tensorrt_graph(path: str | Path) -> list[str]:
    """:func:`check_tensorrt_model` of the ONNX file at ``path``."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ... depending on the damage
        raise ValueError(f"{path}: not a readable ONNX model ({exc})") from None
    return check_tensorrt_model(model)
