"""Export the auditor's graphs through Optimum and check them against torch right away.

For each graph (``auditor`` fused; ``context`` and ``masks`` split): Optimum's ``export`` with
:class:`~auditor_lite.export.onnx_config.AuditorOnnxConfig` (TorchScript exporter, opset 17 by
default), the declared input/output shapes stamped to the contract, ``onnx.checker``, then
Optimum's ``validate_model_outputs`` on its dummy inputs. :func:`compare_with_torch` then runs
every graph in ONNX Runtime with N = 1 and N = 13 masks of realistic inputs and reports the max
absolute difference per output against the torch model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from time import perf_counter

import numpy as np
import onnx
import torch
from optimum.exporters.onnx import export as optimum_export
from optimum.exporters.onnx import validate_model_outputs

from auditor_lite.export.contract import GRAPH_INPUTS, GRAPH_OUTPUTS, auditor_contract
from auditor_lite.export.onnx_config import DEFAULT_NUM_MASKS, DEFAULT_OPSET, AuditorOnnxConfig
from auditor_lite.export.wrappers import AUDITOR_WRAPPERS

MIN_OPSET, MAX_OPSET = 17, 20  # LayerNormalization needs 17; onnx-tensorrt 10.x parses up to 20
CHECK_MASK_COUNTS = (1, 13)
VALIDATION_MASKS = 5  # Optimum's own check runs a mask count other than the export example's 3
DEFAULT_TOLERANCES = {"iou": 1e-4, "type_logits": 1e-3, "action_logits": 1e-3, "context": 1e-3}


class ExportError(RuntimeError):
    """An export that failed or whose graph disagrees with torch (``comparison``: the
    :func:`compare_with_torch` rows, when the comparison ran)."""

    def __init__(self, message: str, comparison: list[dict] | None = None):
        super().__init__(message)
        self.comparison = comparison


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(f"--opset {opset}: must be in [{MIN_OPSET}, {MAX_OPSET}] (17 brings "
                          "LayerNormalization; onnx-tensorrt 10.x parses up to opset 20)")
    return int(opset)


def load_checkpoint(checkpoint: str | Path):
    """An eval-mode AuditorModel from a ``save_pretrained`` directory, or an ExportError naming it."""
    from auditor_lite.model import AuditorModel

    checkpoint = Path(checkpoint)
    config_file = checkpoint / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{checkpoint}: not a model checkpoint (no config.json); pass the directory "
                          "that AuditorModel.save_pretrained / `auditor-lite train` wrote")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ExportError(f"{config_file}: unreadable ({exc})") from None
    if model_type != "auditor":
        raise ExportError(f"{config_file}: model_type is {model_type!r}, not 'auditor'")
    try:
        return AuditorModel.from_pretrained(checkpoint).eval()
    except (OSError, ValueError) as exc:
        raise ExportError(f"{checkpoint}: cannot load the checkpoint ({exc})") from None


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


def export_auditor_graph(model, graph: str, path: str | Path, opset: int = DEFAULT_OPSET) -> float:
    """Export one of ``auditor``, ``context``, ``masks`` to ``path``; returns seconds taken."""
    if graph not in AUDITOR_WRAPPERS:
        raise ExportError(f"unknown auditor graph {graph!r}; known: {', '.join(AUDITOR_WRAPPERS)}")
    wrapper = AUDITOR_WRAPPERS[graph](model).eval()
    return export_with_optimum(wrapper, AuditorOnnxConfig(model.config, graph=graph), Path(path),
                               check_opset(opset), auditor_contract(model.config, graph),
                               {"num_masks": DEFAULT_NUM_MASKS}, {"num_masks": VALIDATION_MASKS})


# ----------------------------------------------------------------------------------- torch vs ORT
def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def compare_with_torch(model, graph_files: dict[str, Path], mask_counts=CHECK_MASK_COUNTS,
                       tolerances: dict | None = None) -> list[dict]:
    """Max |ORT - torch| per graph, mask count and output, on ``model.example_inputs``.

    ``masks`` is fed torch's context (so its own error is measured); ``context+masks`` chains the
    two ONNX graphs the way a stream would. Rows: ``{"graph", "num_masks", "output",
    "max_abs_diff", "tolerance", "ok"}``.
    """
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    sessions = {graph: _session(path) for graph, path in graph_files.items()}
    rows = []

    def record(graph, num_masks, names, got, expected):
        for name, g, e in zip(names, got, expected):
            e = e.detach().numpy()
            if g.shape != e.shape:
                raise ExportError(f"{graph_files.get(graph.split('+')[-1])}: {name} has shape "
                                  f"{g.shape} with N={num_masks}, torch gives {e.shape}")
            diff = float(np.max(np.abs(g - e))) if g.size else 0.0
            rows.append({"graph": graph, "num_masks": num_masks, "output": name,
                         "max_abs_diff": diff, "tolerance": tolerances[name],
                         "ok": bool(diff <= tolerances[name])})

    for num_masks in mask_counts:
        inputs = model.example_inputs(num_masks=num_masks, seed=1000 + num_masks)
        feed = {name: tensor.numpy() for name, tensor in inputs.items()}
        with torch.no_grad():
            context = model.encode_context(*(inputs[n] for n in GRAPH_INPUTS["context"]))
            expected = model.audit_masks(context, inputs["masks"], inputs["key_frame"], return_dict=False)
        outputs = GRAPH_OUTPUTS["auditor"]
        if "auditor" in sessions:
            got = sessions["auditor"].run(list(outputs), {n: feed[n] for n in GRAPH_INPUTS["auditor"]})
            record("auditor", num_masks, outputs, got, expected)
        if "context" in sessions:
            (onnx_context,) = sessions["context"].run(["context"], {n: feed[n] for n in GRAPH_INPUTS["context"]})
            record("context", num_masks, ["context"], [onnx_context], [context])
        if "masks" in sessions:
            masks_feed = {"context": context.numpy(), "masks": feed["masks"], "key_frame": feed["key_frame"]}
            record("masks", num_masks, outputs, sessions["masks"].run(list(outputs), masks_feed), expected)
            if "context" in sessions:
                masks_feed["context"] = onnx_context
                record("context+masks", num_masks, outputs,
                       sessions["masks"].run(list(outputs), masks_feed), expected)
    return rows


def format_comparison(rows: list[dict]) -> str:
    """A fixed-width table of :func:`compare_with_torch` rows."""
    lines = [f"{'graph':<15}{'N':>4}  {'output':<15}{'max |ORT - torch|':>19}{'tolerance':>11}"]
    for row in rows:
        flag = "" if row["ok"] else "  FAIL"
        lines.append(f"{row['graph']:<15}{row['num_masks']:>4}  {row['output']:<15}"
                     f"{row['max_abs_diff']:>19.2e}{row['tolerance']:>11.0e}{flag}")
    return "\n".join(lines)
