"""Export a grounded checkpoint (stage A + stage B) into a model directory.

Two graphs, through Optimum's lower-level ``export`` with :class:`GroundedOnnxConfig` (its high-level
export cannot infer the library of a custom model):

- ``context`` (once per clip and audited frame): frames, key_index, log_mel, tokens, token_mask
  (and cell_motion, for grounders that read it) -> context (1, 1025), the referent-map logits and
  the null logit;
- ``masks`` (per batch of masks): context, masks (N, 1, S, S), key_frame -> iou, type_logits,
  action_logits.

The log-mel and the cell motion are computed in numpy by the runtime
(:func:`auditor_lite.preprocess.log_mel`, :func:`auditor_lite.motion.cell_motion`) and the
expression's token states by the text-encoder graph, cached per expression. Like
Optimum's SamOnnxModel, the two wrappers here only rewire trained modules.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from time import perf_counter

import numpy as np
import torch
from optimum.exporters.onnx import OnnxConfig
from optimum.utils import DummyInputGenerator, NormalizedConfig
from torch import nn

from auditor_lite import graph_io
from auditor_lite.data.schema import ACTIONS, MASK_TYPES, NUM_FRAMES
from auditor_lite.export.contract import MASK_DIM, _tensor, text_encoder_contract
from auditor_lite.export.exporter import ExportError, check_opset, export_with_optimum
from auditor_lite.export.onnx_config import DEFAULT_OPSET
from auditor_lite.graph_io import GRAPH_INPUTS, GRAPH_OUTPUTS, GROUNDED
from auditor_lite.manifest import sha256_file, write_manifest
from auditor_lite.model.grounded import CONTEXT_SIZE, GroundedAuditor, load_grounded
from auditor_lite.motion import CELL, NUM_MOTION_FEATURES

ARCHITECTURE = GROUNDED
GRAPHS = tuple(GRAPH_INPUTS[GROUNDED])
GRAPH_FILES = {"context": "context.onnx", "masks": "masks.onnx"}
INPUTS = GRAPH_INPUTS[GROUNDED]
OUTPUTS = {g: GRAPH_OUTPUTS[g] for g in GRAPHS}
TOLERANCES = {"context": 2e-3, "iou": 1e-4, "type_logits": 1e-3, "action_logits": 1e-3}
CHECK_MASK_COUNTS = (1, 13)
LOG_MEL_FRAMES = 501


def graph_inputs(cfg: dict, graph: str) -> tuple[str, ...]:
    """The graph's inputs; ``cell_motion`` only for grounders that read it."""
    return graph_io.graph_inputs(GROUNDED, graph, bool(cfg.get("cell_motion")))


def runtime_config(model: GroundedAuditor) -> dict:
    """``config.json`` of a grounded model directory (what the torch-free runtime needs)."""
    g = model.grounder.config
    return {"architecture": ARCHITECTURE, "frame_size": g.key_size, "key_size": g.key_size,
            "max_tokens": g.max_tokens, "n_mels": g.n_mels, "log_mel_frames": LOG_MEL_FRAMES,
            "cell_motion": g.cell_motion,
            "context_size": CONTEXT_SIZE, "mask_types": list(MASK_TYPES), "actions": list(ACTIONS),
            "grounder": g.to_dict(), "scorer": model.scorer.config.to_dict()}


def grounded_tensors(cfg: dict) -> dict[str, dict]:
    s, t = cfg["key_size"], cfg["max_tokens"]
    return {
        "frames": _tensor("frames", (1, NUM_FRAMES, 3, s, s), value_range=(0, 1),
                          note="RGB / 255, area-resized (auditor_lite.preprocess.prepare_frames)"),
        "key_index": _tensor("key_index", (1,), dtype="int64", value_range=(0, NUM_FRAMES - 1),
                             note="the audited frame's index in the clip"),
        "log_mel": _tensor("log_mel", (1, cfg["n_mels"], cfg["log_mel_frames"]),
                           note="dB log-mel of the 10 s clip (auditor_lite.preprocess.log_mel)"),
        "tokens": _tensor("tokens", (1, t, 384), note="the text encoder's token_states, zero-padded"),
        "token_mask": _tensor("token_mask", (1, t), value_range=(0, 1), note="1 for a real token"),
        "cell_motion": _tensor("cell_motion", (1, NUM_FRAMES, (s // CELL) ** 2, NUM_MOTION_FEATURES),
                               note="per frame and 8 x 8 cell: vibration, match residual, velocity "
                                    "(auditor_lite.motion.cell_motion)"),
        "context": _tensor("context", (1, cfg["context_size"]),
                           note="32 x 32 referent-map logits of the audited frame, then the null logit"),
        "masks": _tensor("masks", (MASK_DIM, 1, s, s), value_range=(0, 1),
                         note="binary candidate masks in {0, 1} (prepare_masks)"),
        "key_frame": _tensor("key_frame", (1, 3, s, s), value_range=(0, 1),
                             note="the audited frame, RGB / 255 (prepare_key_frame)"),
        "iou": _tensor("iou", (MASK_DIM,), value_range=(0, 1), note="estimated IoU per mask"),
        "type_logits": _tensor("type_logits", (MASK_DIM, len(cfg["mask_types"])),
                               note="logits over " + ", ".join(cfg["mask_types"])),
        "action_logits": _tensor("action_logits", (MASK_DIM, len(cfg["actions"])),
                                 note="logits over " + ", ".join(cfg["actions"])),
    }


def grounded_contract(cfg: dict, graph: str) -> dict:
    tensors = grounded_tensors(cfg)
    return {"inputs": [tensors[n] for n in graph_inputs(cfg, graph)], "outputs": [tensors[n] for n in OUTPUTS[graph]]}


# ----------------------------------------------------------------------------------- Optimum
class GroundedNormalizedConfig(NormalizedConfig):
    KEY_SIZE = "key_size"
    MAX_TOKENS = "max_tokens"
    N_MELS = "n_mels"


class DummyGroundedInputGenerator(DummyInputGenerator):
    """Inputs in their real ranges: a blob mask, a 7-word expression, dB log-mel."""

    SUPPORTED_INPUT_NAMES = INPUTS["context"] + INPUTS["masks"]

    def __init__(self, task: str, normalized_config, num_masks: int = 3, **input_shapes):
        self.task, self.normalized_config, self.num_masks = task, normalized_config, num_masks

    def generate(self, input_name: str, framework: str = "pt", int_dtype: str = "int64",
                 float_dtype: str = "fp32"):
        c = self.normalized_config
        s, t = c.key_size, c.max_tokens
        if input_name == "key_index":
            return torch.tensor([4])
        if input_name == "token_mask":
            mask = torch.zeros(1, t)
            mask[:, :7] = 1
            return mask
        if input_name == "masks":
            blobs = (torch.rand(self.num_masks, 1, s // 8, s // 8) > 0.6).float()
            return torch.nn.functional.interpolate(blobs, size=(s, s), mode="nearest")
        shapes = {"frames": ([1, NUM_FRAMES, 3, s, s], 0, 1), "log_mel": ([1, c.n_mels, LOG_MEL_FRAMES], -90, -10),
                  "cell_motion": ([1, NUM_FRAMES, (s // CELL) ** 2, NUM_MOTION_FEATURES], 0, 1),
                  "tokens": ([1, t, 384], -1, 1), "context": ([1, CONTEXT_SIZE], -6, 2),
                  "key_frame": ([1, 3, s, s], 0, 1)}
        shape, low, high = shapes[input_name]
        return self.random_float_tensor(shape, low, high, framework, float_dtype)


class GroundedOnnxConfig(OnnxConfig):
    NORMALIZED_CONFIG_CLASS = GroundedNormalizedConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyGroundedInputGenerator,)
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 2e-3

    def __init__(self, config, task: str = "feature-extraction", graph: str = "context", **kwargs):
        if graph not in GRAPHS:
            raise ValueError(f"GroundedOnnxConfig: unknown graph {graph!r} ({', '.join(GRAPHS)})")
        super().__init__(config, task=task, **kwargs)
        self.graph = graph

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        cfg = {"cell_motion": getattr(self._config, "cell_motion", False)}
        return {n: ({0: MASK_DIM} if n == "masks" else {}) for n in graph_inputs(cfg, self.graph)}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {n: ({0: MASK_DIM} if self.graph == "masks" else {}) for n in OUTPUTS[self.graph]}


class GroundedContextOnnx(nn.Module):
    """``context`` graph: stage A on one clip and audited frame."""

    def __init__(self, model: GroundedAuditor, config):
        super().__init__()
        self.model, self.config = model, config

    def forward(self, frames, key_index, log_mel, tokens, token_mask, cell_motion=None):
        return (self.model.encode_context(frames, key_index, log_mel, tokens, token_mask, cell_motion),)


class GroundedMasksOnnx(nn.Module):
    """``masks`` graph: stage B on N masks against a cached context."""

    def __init__(self, model: GroundedAuditor, config):
        super().__init__()
        self.model, self.config = model, config

    def forward(self, context, masks, key_frame):
        return self.model.audit_masks(context, masks, key_frame)


WRAPPERS = {"context": GroundedContextOnnx, "masks": GroundedMasksOnnx}


# ----------------------------------------------------------------------------------- export
def export_grounded_graph(model: GroundedAuditor, graph: str, path: Path, opset: int = DEFAULT_OPSET) -> float:
    from transformers import PretrainedConfig

    cfg = runtime_config(model)
    config = PretrainedConfig(**{k: v for k, v in cfg.items() if not isinstance(v, dict)})
    wrapper = WRAPPERS[graph](model, config).eval()
    # nn.MultiheadAttention's eval fast path is a fused kernel with no ONNX symbolic: trace the
    # plain attention math instead (the same numbers).
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        seconds = export_with_optimum(wrapper, GroundedOnnxConfig(config, graph=graph), Path(path),
                                      check_opset(opset), grounded_contract(cfg, graph), {"num_masks": 3},
                                      {"num_masks": 5})
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    start = perf_counter()
    fold_constants(Path(path))
    return seconds + perf_counter() - start


def fold_constants(path: Path) -> None:
    """Fold the tracer's constant-only subgraphs with ONNX Runtime's BASIC level (constant folding
    and redundant-node removal: standard ONNX ops only, nothing tied to a CPU): attention's
    head-size arithmetic leaves ``Mod`` and shape nodes on constants, which TensorRT's parser
    rejects and every runtime would recompute; folding halves the context graph's node count. The
    callers then check the folded graphs against torch."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    folded = path.with_name(path.stem + ".folded.onnx")
    options.optimized_model_filepath = str(folded)
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(folded))
        onnx.checker.check_model(model)
        if any(node.domain not in ("", "ai.onnx") for node in model.graph.node):
            raise ExportError(f"{path}: constant folding introduced non-standard ops")
        folded.replace(path)
    finally:
        folded.unlink(missing_ok=True)


def compare_grounded(model: GroundedAuditor, files: dict[str, Path], tolerances: dict | None = None) -> list[dict]:
    """Max |ORT - torch| per output for 1 and 13 masks, the graphs chained as the runtime runs them."""
    import onnxruntime as ort

    tolerances = {**TOLERANCES, **(tolerances or {})}
    sessions = {g: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for g, p in files.items()}
    names = graph_inputs(runtime_config(model), "context")
    rows = []
    for n in CHECK_MASK_COUNTS:
        inputs = model.example_inputs(num_masks=n, seed=100 + n)
        feed = {k: v.numpy() for k, v in inputs.items()}
        with torch.no_grad():
            context = model.encode_context(*(inputs[k] for k in names))
            expected = (context,) + tuple(model.audit_masks(context, inputs["masks"], inputs["key_frame"]))
        (got_context,) = sessions["context"].run(["context"], {k: feed[k] for k in names})
        got = sessions["masks"].run(list(OUTPUTS["masks"]), {"context": got_context, "masks": feed["masks"],
                                                             "key_frame": feed["key_frame"]})
        for name, g, e in zip(("context",) + OUTPUTS["masks"], [got_context] + got, expected):
            diff = float(np.max(np.abs(g - e.numpy())))
            rows.append({"graph": "context+masks", "num_masks": n, "output": name, "max_abs_diff": diff,
                         "tolerance": tolerances[name], "ok": diff <= tolerances[name]})
    return rows


def export_grounded_dir(checkpoint, out, *, opset: int = DEFAULT_OPSET, text_precision: str = "auto",
                        overwrite: bool = False, name: str | None = None, with_text: bool = True,
                        tolerances: dict | None = None):
    """``export onnx`` for a grounded checkpoint: FP32 graphs, text encoder, tokenizer, manifest."""
    from auditor_lite.export.model_dir import ExportSummary, _export_text, _vocab_size, staged_directory

    checkpoint, out = Path(checkpoint), Path(out)
    opset = check_opset(opset)
    try:
        model = load_grounded(checkpoint)
    except FileNotFoundError as exc:
        raise ExportError(f"{exc} (a checkpoint is the folder `train-grounding` and `train-scorer` "
                          "wrote: grounder.safetensors, scorer.safetensors and their configs)") from None
    summary = ExportSummary(out=out)
    with staged_directory(out, overwrite) as staging:
        cfg = runtime_config(model)
        (staging / "config.json").write_text(json.dumps(cfg, indent=2))
        files = {g: staging / GRAPH_FILES[g] for g in GRAPHS}
        for graph in GRAPHS:
            summary.seconds[graph] = export_grounded_graph(model, graph, files[graph], opset)
        start = perf_counter()
        summary.comparison = compare_grounded(model, files, tolerances)
        summary.seconds["compare"] = perf_counter() - start
        failed = [r for r in summary.comparison if not r["ok"]]
        if failed:
            worst = max(failed, key=lambda r: r["max_abs_diff"] / r["tolerance"])
            raise ExportError(f"{out}: ONNX Runtime differs from torch: {worst['output']} N={worst['num_masks']} "
                              f"{worst['max_abs_diff']:.2e} > {worst['tolerance']:.0e}", comparison=summary.comparison)
        graphs = {g: {"fp32": GRAPH_FILES[g]} for g in GRAPHS}
        contract = {g: grounded_contract(cfg, g) for g in GRAPHS}
        if with_text:
            graphs["text_encoder"] = _export_text(staging, opset, text_precision, summary)
            contract["text_encoder"] = text_encoder_contract(_vocab_size(staging))
        calibration = checkpoint / "score_calibration.json"
        extra = {"architecture": ARCHITECTURE,
                 "export": {"opset": opset, "exporter": "optimum.exporters.onnx.export (TorchScript)",
                            "source": {"checkpoint": checkpoint.name,
                                       "grounder_sha256": sha256_file(checkpoint / "grounder.safetensors"),
                                       "scorer_sha256": sha256_file(checkpoint / "scorer.safetensors")},
                            "torch_vs_onnxruntime": summary.comparison, "text_encoder": summary.text}}
        if calibration.is_file():
            shutil.copy2(calibration, staging / calibration.name)
            extra["score_calibration"] = calibration.name
        summary.manifest = write_manifest(staging, name=name or "auditor-lite-grounded", graphs=graphs,
                                          contract=contract, default_precision="fp32", extra=extra)
    return summary
