"""Static INT8 quantization (QDQ) of the exported graphs with Optimum and ONNX Runtime.

Pipeline for one graph and one flavour:

1. ``quant_pre_process`` (ONNX Runtime): symbolic shape inference and basic graph optimisation,
   so that every tensor to quantize has a known type and shape. Node names in reports and in
   ``--keep-fp32`` refer to this pre-processed graph.
2. Calibration through Optimum: ``AutoCalibrationConfig.{minmax,percentiles,entropy}`` and
   ``ORTQuantizer.partial_fit`` over chunks of the benchmark samples (ONNX Runtime's histogram
   calibrators keep every intermediate tensor of a chunk in memory, so chunks bound the memory),
   then ``compute_ranges``.
3. QDQ quantization of the ops in :data:`OPS_TO_QUANTIZE`, minus the heads' last layers
   (:func:`head_nodes`) and the products of two activations (:func:`activation_products`), which
   stay float.

Flavours (:data:`FLAVOURS`):

* ``cpu``: U8 activations (asymmetric), S8 symmetric per-channel weights, int32 biases: the ONNX
  Runtime CPU kernels' preferred scheme. Quantized with ``ORTQuantizer.quantize``.
* ``trt``: S8 symmetric activations and weights (every zero point 0), per-channel weights, biases
  left in float, as TensorRT's explicit quantization expects. Optimum's ``QuantizationConfig``
  has no switch for bias quantization, so this flavour runs ONNX Runtime's ``QDQQuantizer`` (the
  class Optimum itself calls) with the same settings plus ``QuantizeBias=False``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import numpy as np
import onnx

METHODS = ("minmax", "percentile", "entropy")
OPS_TO_QUANTIZE = ("Conv", "MatMul", "Gemm")  # where the arithmetic is; elementwise ops stay float
CALIBRATION_CHUNK = 64
PER_CHANNEL_AXIS = {"MatMul": 1}  # MatMul weights are (in, out): one scale per output column


@dataclass(frozen=True)
class Flavour:
    name: str
    activations: str          # onnxruntime QuantType name
    weights: str
    activations_symmetric: bool
    weights_symmetric: bool
    per_channel: bool
    quantize_bias: bool


FLAVOURS = {
    "cpu": Flavour("int8-cpu", "QUInt8", "QInt8", False, True, True, True),
    "trt": Flavour("int8-trt", "QInt8", "QInt8", True, True, True, False),
}


class QuantizationError(RuntimeError):
    """A graph could not be calibrated or quantized; the message names the graph."""


class CalibrationRows:
    """The part of a ``datasets.Dataset`` that Optimum's calibration reads, for one graph.

    ``ORTQuantizer.fit`` iterates the rows (dicts of input name -> array without the batch axis;
    its reader adds the axis), and ``AutoCalibrationConfig`` records ``info``, ``split`` and
    ``num_rows``. The rows are made on demand by ``make_row``, so no copy is held.
    """

    def __init__(self, graph: str, make_row: Callable[[int], dict], indices, split: str):
        self.graph = graph
        self._make_row = make_row
        self.indices = list(indices)
        self.split = split
        self.info = SimpleNamespace(builder_name="auditor-lite-benchmark", config_name=graph)

    @property
    def num_rows(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[dict]:
        return (self._make_row(i) for i in self.indices)

    def chunks(self, size: int) -> list["CalibrationRows"]:
        """Consecutive pieces of at most ``size`` rows (calibration memory grows with a piece)."""
        return [CalibrationRows(self.graph, self._make_row, self.indices[i:i + size], self.split)
                for i in range(0, len(self.indices), size)]


def preprocess_graph(source, target) -> Path:
    """``quant_pre_process`` of ``source`` into ``target``: shapes inferred, graph optimised."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = Path(target)
    try:
        quant_pre_process(str(source), str(target))
    except Exception:  # ORT raises bare Exceptions (and AssertionErrors) from shape inference
        # ORT's symbolic shape inference asserts on some Reshapes whose shape is computed in the
        # graph (the grounded context graph's gathers): ONNX's own shape inference and the
        # optimisation pass still run without it, and every shape there is static anyway.
        try:
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        except Exception as exc:
            raise QuantizationError(f"{source}: quant_pre_process failed ({type(exc).__name__}: {exc})") from exc
    return target


def head_nodes(model: onnx.ModelProto, op_types=OPS_TO_QUANTIZE, through=frozenset()) -> list[str]:
    """The last quantizable nodes before each graph output (the heads' final layers).

    ONNX Runtime's QDQ scheme also quantizes a Conv/MatMul/Gemm output, so quantizing these would
    put an 8-bit step on ``iou``'s logit and on the class logits themselves: a resolution floor
    on the very numbers the gate measures, for three tiny matrix products. They stay float.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    found: list[str] = []
    pending = [o.name for o in model.graph.output]
    seen: set[str] = set()
    while pending:
        tensor = pending.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in op_types and node.name not in through:
            found.append(node.name)
        else:  # walk back through Sigmoid, Squeeze, Add, LayerNorm ... (and the float nodes in
            # ``through``) to the quantizable node
            pending.extend(node.input)
    return found


def activation_products(model: onnx.ModelProto) -> list[str]:
    """MatMul nodes whose two inputs are both activations (attention scores times values, a map's
    mass pooled over tokens): no weights to store in 8 bits, and a softmax's probabilities in U8
    lose the small ones the output sums. Measured on the grounded context graph: quantizing its
    tracker's products (traced as MatMul since they stopped being Einsums) cost 1.4 F2-M points
    against FP32, over the gate's 1. They stay float."""
    constant = {i.name for i in model.graph.initializer}
    constant |= {o for node in model.graph.node if node.op_type == "Constant" for o in node.output}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and not any(i in constant for i in node.input)]


def _calibration_config(method: str, rows: CalibrationRows):
    from optimum.onnxruntime.configuration import AutoCalibrationConfig

    if method == "minmax":
        return AutoCalibrationConfig.minmax(rows)
    if method == "percentile":
        return AutoCalibrationConfig.percentiles(rows, percentile=99.999)
    if method == "entropy":
        return AutoCalibrationConfig.entropy(rows)
    raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")


def calibrate(model_path, rows: CalibrationRows, method: str, symmetric: bool, work_dir,
              chunk: int = CALIBRATION_CHUNK):
    """Activation ranges of ``model_path`` over ``rows``, through Optimum's ORTQuantizer."""
    from dataclasses import replace

    from optimum.onnxruntime import ORTQuantizer

    if len(rows) == 0:
        raise QuantizationError(f"{model_path}: no calibration samples")
    # The graph lives in a scratch directory without a transformers config: ORTQuantizer's attempt
    # to load one fails quietly (its warning is silenced) and nothing is saved next to the graph.
    logging.getLogger("optimum.onnxruntime.quantization").setLevel(logging.ERROR)
    quantizer = ORTQuantizer(Path(model_path))
    config = _calibration_config(method, rows)
    augmented = Path(work_dir) / f"{Path(model_path).stem}.augmented.onnx"
    for k, piece in enumerate(rows.chunks(chunk)):
        # The first call creates the calibrator; later calls (method None) keep feeding it.
        piece_config = config if k == 0 else replace(config, method=None)
        quantizer.partial_fit(piece, piece_config, onnx_augmented_model_name=augmented,
                              operators_to_quantize=list(OPS_TO_QUANTIZE),
                              force_symmetric_range=symmetric)
    return quantizer, quantizer.compute_ranges()


def _quantization_config(flavour: Flavour, exclude: list[str]):
    from onnxruntime.quantization import QuantFormat, QuantType
    from optimum.onnxruntime.configuration import QuantizationConfig

    return QuantizationConfig(
        is_static=True, format=QuantFormat.QDQ,
        activations_dtype=QuantType[flavour.activations], weights_dtype=QuantType[flavour.weights],
        activations_symmetric=flavour.activations_symmetric,
        weights_symmetric=flavour.weights_symmetric,
        per_channel=flavour.per_channel, reduce_range=False, nodes_to_exclude=list(exclude),
        operators_to_quantize=list(OPS_TO_QUANTIZE),
        qdq_op_type_per_channel_support_to_axis=dict(PER_CHANNEL_AXIS))


def _quantize_keeping_float_bias(model_path, config, ranges, target: Path) -> None:
    """What ``ORTQuantizer.quantize`` does for QDQ, plus ``QuantizeBias=False`` (see module doc)."""
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    quantizer = QDQQuantizer(
        onnx.load(str(model_path)), config.per_channel, config.reduce_range, config.weights_dtype,
        config.activations_dtype, ranges, config.nodes_to_quantize, config.nodes_to_exclude,
        config.operators_to_quantize,
        extra_options={"WeightSymmetric": config.weights_symmetric,
                       "ActivationSymmetric": config.activations_symmetric,
                       "ForceSymmetric": config.use_symmetric_calibration,
                       "AddQDQPairToWeight": config.qdq_add_pair_to_weight,
                       "DedicatedQDQPair": config.qdq_dedicated_pair,
                       "QDQOpTypePerChannelSupportToAxis": config.qdq_op_type_per_channel_support_to_axis,
                       "QuantizeBias": False})
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(target))


@dataclass
class QuantizedGraph:
    graph: str
    flavour: str
    path: Path
    ranges: dict[str, list[float]]
    excluded: list[str]
    seconds: float

    def summary(self) -> dict:
        out = asdict(self)
        out["path"] = self.path.name
        out.pop("ranges")
        out["calibrated_tensors"] = len(self.ranges)
        return out


def _plain(value):
    """A float for a one-element array (per-tensor range), a list for a per-channel one."""
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    return float(array[0]) if array.size == 1 else array.tolist()


def _ranges_table(ranges) -> dict[str, list[float]]:
    """``{tensor: [low, high]}`` plain floats, from ORT's TensorsData (or a plain dict)."""
    items = ranges.items() if hasattr(ranges, "items") else ranges.data.items()
    table = {}
    for name, value in items:
        low, high = value.range_value if hasattr(value, "range_value") else value
        table[name] = [_plain(low), _plain(high)]
    return table


def quantize_graph(preprocessed, target, graph: str, flavour: Flavour, rows: CalibrationRows,
                   method: str) -> QuantizedGraph:
    """Calibrate and quantize one pre-processed graph into ``target`` (see the module docstring)."""
    started = time.perf_counter()
    model = onnx.load(str(preprocessed))
    products = activation_products(model)
    exclude = head_nodes(model, through=frozenset(products)) + products
    config = _quantization_config(flavour, exclude)
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="auditor-int8-") as work:
        try:
            quantizer, ranges = calibrate(preprocessed, rows, method, flavour.activations_symmetric, work)
            if flavour.quantize_bias:
                save_dir = Path(work) / "quantized"
                quantizer.quantize(config, save_dir, file_suffix=None, calibration_tensors_range=ranges)
                # Optimum names the file after the source's stem (``with_suffix`` rules apply):
                # take the one graph it wrote.
                (produced,) = save_dir.glob("*.onnx")
                shutil.move(str(produced), target)
            else:
                _quantize_keeping_float_bias(preprocessed, config, ranges, target)
        except QuantizationError:
            raise
        except Exception as exc:  # ORT/Optimum raise many types; name the graph and flavour
            raise QuantizationError(f"{graph} ({flavour.name}): quantization failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
    return QuantizedGraph(graph=graph, flavour=flavour.name, path=target, ranges=_ranges_table(ranges),
                          excluded=exclude, seconds=time.perf_counter() - started)


def write_ranges(result: QuantizedGraph, directory) -> Path:
    """The calibration table of one quantized graph: ``{tensor: [low, high]}`` as JSON."""
    path = Path(directory) / f"ranges.{result.graph}.{result.flavour}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.ranges, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
