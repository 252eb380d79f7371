"""Per-node quantization sensitivity: where the INT8 graph departs from the FP32 one.

The cheap standard report (what ONNX Runtime's ``qdq_loss_debug`` also measures): run the FP32
pre-processed graph and its QDQ version on a few calibration samples with intermediate tensors
added as graph outputs, and for every quantized node (Conv / MatMul / Gemm fed by
DequantizeLinear) measure, as a signal-to-quantization-noise ratio in dB (higher is better):

* ``output_sqnr_db``: the node's output in the INT8 graph against the same tensor of the FP32
  graph. It accumulates the error of everything upstream, so it is what the ranking uses: the
  nodes at the top are where the INT8 graph has drifted most;
* ``local_sqnr_db``: the worst of the node's own activations (inputs and output) before
  QuantizeLinear against after DequantizeLinear, i.e. the rounding and clipping error its
  quantization adds by itself. A node low here is the one to try with ``--keep-fp32``. (An input
  re-quantized after a Reshape/Transpose with the producer's range shows no error of its own:
  the producer's output pair carries it.)

``None`` stands for "no error at all" (infinite SQNR). The QDQ quantizer keeps each node's output
name, which is what makes the two graphs' tensors comparable by name. Both graphs run with ONNX
Runtime's optimiser off, so that every Q/DQ pair is executed where the graph puts it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx

from auditor_lite.calibration.dataset import CalibrationRows
from auditor_lite.calibration.quantize import OPS_TO_QUANTIZE

DEFAULT_SENSITIVITY_SAMPLES = 8
TOP = 10
RENAMED_OUTPUT = "_QuantizeLinear_Input"


def quantized_nodes(model: onnx.ModelProto) -> list[dict]:
    """Nodes of :data:`OPS_TO_QUANTIZE` fed through DequantizeLinear, with the Q/DQ pairs of their
    activations (inputs and output): ``{"node", "op", "output", "pairs": [(before_q, after_dq)]}``."""
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    for node in model.graph.node:
        if node.op_type not in OPS_TO_QUANTIZE:
            continue
        pairs, dequantized = [], False
        for name in node.input:
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            dequantized = True
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":  # an activation, not a weight
                pairs.append((q.input[0], name))
        for q in consumers.get(node.output[0], []):  # the output's own Q/DQ, when quantized
            if q.op_type == "QuantizeLinear":
                pairs += [(node.output[0], dq.output[0]) for dq in consumers.get(q.output[0], [])
                          if dq.op_type == "DequantizeLinear"]
        if dequantized:
            found.append({"node": node.name, "op": node.op_type, "output": node.output[0], "pairs": pairs})
    return found


def _with_outputs(model: onnx.ModelProto, names) -> bytes:
    """The serialized model with ``names`` added as float outputs (shapes left to the runtime)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for name in dict.fromkeys(names):
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString()


def _sqnr_db(signal: float, noise: float) -> float | None:
    if noise <= 0.0:
        return None
    return 10.0 * math.log10(max(signal, 1e-30) / noise)


def _batched(row: dict) -> dict:
    # Rows carry no batch axis (Optimum's reader adds it); add it the same way here.
    return {name: np.asarray(value)[None] for name, value in row.items()}


def sensitivity_report(fp32_path, qdq_path, rows: CalibrationRows,
                       max_samples: int = DEFAULT_SENSITIVITY_SAMPLES, threads: int = 2) -> list[dict]:
    """One entry per quantized node, worst ``output_sqnr_db`` first (see the module docstring)."""
    qdq_model = onnx.load(str(qdq_path))
    nodes = quantized_nodes(qdq_model)
    if not nodes:
        return []
    fp32_model = onnx.load(str(fp32_path))
    fp32_tensors = {out for node in fp32_model.graph.node for out in node.output}
    for node in nodes:  # a quantized graph output is renamed "<name>_QuantizeLinear_Input"
        name = node["output"]
        node["reference"] = name if name in fp32_tensors else name.removesuffix(RENAMED_OUTPUT)
    nodes = [n for n in nodes if n["reference"] in fp32_tensors]
    outputs = [n["output"] for n in nodes]
    references = [n["reference"] for n in nodes]
    pair_names = [name for n in nodes for pair in n["pairs"] for name in pair]
    qdq_names = list(dict.fromkeys(outputs + pair_names))
    fp32_session = _plain_session(_with_outputs(fp32_model, references), threads, optimize=False)
    qdq_session = _plain_session(_with_outputs(qdq_model, qdq_names), threads, optimize=False)
    signal = dict.fromkeys(qdq_names, 0.0)
    noise = dict.fromkeys(qdq_names, 0.0)
    used = 0
    for row in rows:
        if used >= max_samples:
            break
        feeds = _batched(row)
        reference = dict(zip(outputs, fp32_session.run(references, feeds)))
        quantized = dict(zip(qdq_names, qdq_session.run(qdq_names, feeds)))
        for name in outputs:
            ref = reference[name].astype(np.float64)
            signal[name] += float(np.sum(ref ** 2))
            noise[name] += float(np.sum((quantized[name] - ref) ** 2))
        for node in nodes:
            for before, after in node["pairs"]:
                key = f"{before}->{after}"
                pre = quantized[before].astype(np.float64)
                signal[key] = signal.get(key, 0.0) + float(np.sum(pre ** 2))
                noise[key] = noise.get(key, 0.0) + float(np.sum((quantized[after] - pre) ** 2))
        used += 1
    report = []
    for node in nodes:
        inputs = [_sqnr_db(signal[f"{b}->{a}"], noise[f"{b}->{a}"]) for b, a in node["pairs"]]
        finite = [v for v in inputs if v is not None]
        report.append({"node": node["node"], "op": node["op"],
                       "output_sqnr_db": _sqnr_db(signal[node["output"]], noise[node["output"]]),
                       "local_sqnr_db": min(finite) if finite else None,
                       "samples": used})
    # Worst (lowest SQNR) first; exact outputs (None) last.
    report.sort(key=lambda r: math.inf if r["output_sqnr_db"] is None else r["output_sqnr_db"])
    return report


def format_top(report: list[dict], top: int = TOP) -> str:
    """A printable table of the ``top`` worst nodes."""
    def db(value):
        return "exact" if value is None else f"{value:6.1f}"

    lines = [f"{'output SQNR dB':>14}  {'local SQNR dB':>13}  node (op)"]
    for entry in report[:top]:
        lines.append(f"{db(entry['output_sqnr_db']):>14}  {db(entry['local_sqnr_db']):>13}  "
                     f"{entry['node']} ({entry['op']})")
    return "\n".join(lines)


def write_reports(reports: dict[str, list[dict]], path, graph: str = "auditor") -> Path:
    """``sensitivity.json``: one ranked node list per flavour of ``graph``."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"graph": graph, "ranked_by": "output_sqnr_db, lowest (worst) first",
               "metric": "SQNR dB = 10 log10(sum x^2 / sum (x_int8 - x_fp32)^2); null = exact",
               "flavours": reports}
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def _plain_session(model, threads: int = 2, optimize: bool = True):
    """An ONNX Runtime CPU session of ``model`` (a path or serialized bytes). Sensitivity runs
    graphs rewired to expose every intermediate tensor, which no model directory ships, so it opens
    them directly instead of through the runtime's backend."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the QDQ graphs' "unused initializer" notes are not errors
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
