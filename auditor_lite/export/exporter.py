"""One graph through Optimum, checked right away (the grounded graphs and the text encoder).

Optimum's lower-level ``export`` with the graph's ``OnnxConfig`` (TorchScript exporter, opset 17 by
default), the declared input/output shapes stamped to the contract, ``onnx.checker``, then
Optimum's ``validate_model_outputs`` on its dummy inputs. The callers then compare the graphs with
torch on realistic inputs (:func:`auditor_lite.export.grounded.compare_grounded`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from time import perf_counter

import onnx
import torch
from optimum.exporters.onnx import export as optimum_export
from optimum.exporters.onnx import validate_model_outputs

MIN_OPSET, MAX_OPSET = 17, 20  # LayerNormalization needs 17; onnx-tensorrt 10.x parses up to 20


class ExportError(RuntimeError):
    """An export that failed or whose graph disagrees with torch (``comparison``: the
    comparison rows, when the comparison ran)."""

    def __init__(self, message: str, comparison: list[dict] | None = None):
        super().__init__(message)
        self.comparison = comparison


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(f"--opset {opset}: must be in [{MIN_OPSET}, {MAX_OPSET}] (17 brings "
                          "LayerNormalization; onnx-tensorrt 10.x parses up to opset 20)")
    return int(opset)


def stamp_io_shapes(path: Path, contract: dict) -> None:
    """Write the contract's shapes into the graph's declared inputs/outputs.

    The tracer declares some fixed output dims as symbols (e.g. ``Divtext_embedding_dim_1``);
    stamping makes the file itself state the contract. It changes no computation.
    """
    model = onnx.load(str(path), load_external_data=False)
    declared = {v.name: v for v in list(model.graph.input) + list(model.graph.output)}
    for tensor in contract["inputs"] + contract["outputs"]:
        if tensor["name"] not in declared:
            raise ExportError(f"{path}: exported graph has no {tensor['name']!r} input/output")
        dims = declared[tensor["name"]].type.tensor_type.shape.dim
        if len(dims) != len(tensor["shape"]):
            raise ExportError(f"{path}: {tensor['name']!r} has rank {len(dims)}, contract shape "
                              f"{tensor['shape']}")
        for dim, size in zip(dims, tensor["shape"]):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
    onnx.save(model, str(path))


def export_with_optimum(wrapper, onnx_config, path: Path, opset: int, contract: dict,
                        export_shapes: dict, validation_shapes: dict) -> float:
    """Optimum export + shape stamping + checker + ``validate_model_outputs``; returns seconds."""
    start = perf_counter()
    with warnings.catch_warnings():
        # The model's Python shape checks run once at trace time and are constant in the graph;
        # the tracer warns about each of them.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        # Optimum picks the TorchScript exporter on purpose (opset 17, LayerNormalization, Erf GELU).
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        _, output_names = optimum_export(wrapper, onnx_config, path, opset=opset,
                                         input_shapes=export_shapes)
        wrapper.eval()  # torch.onnx.export restores the mode it found; be explicit for validation
    stamp_io_shapes(path, contract)
    onnx.checker.check_model(str(path))
    try:
        # In-process: Optimum's subprocess mode forces the global "spawn" start method and
        # re-imports torch in a child (slow on small CPUs) for no gain here.
        validate_model_outputs(onnx_config, wrapper, path, output_names,
                               atol=onnx_config.ATOL_FOR_VALIDATION, input_shapes=validation_shapes,
                               use_subprocess=False)
    except Exception as exc:  # Optimum raises ShapeError / AtolError / OutputMatchError
        raise ExportError(f"{path}: Optimum's validation failed: {exc}") from exc
    return perf_counter() - start


def format_comparison(rows: list[dict]) -> str:
    """A fixed-width table of comparison rows (``graph``, ``num_masks``, ``output``,
    ``max_abs_diff``, ``tolerance``, ``ok``)."""
    lines = [f"{'graph':<15}{'N':>4}  {'output':<15}{'max |ORT - torch|':>19}{'tolerance':>11}"]
    for row in rows:
        flag = "" if row["ok"] else "  FAIL"
        lines.append(f"{row['graph']:<15}{row['num_masks']:>4}  {row['output']:<15}"
                     f"{row['max_abs_diff']:>19.2e}{row['tolerance']:>11.0e}{flag}")
    return "\n".join(lines)
