"""Optimum ONNX configurations for the auditor's graphs and for the MiniLM text encoder.

Optimum cannot infer the library of a custom model, so its high-level ``main_export`` does not
apply; the lower-level ``optimum.exporters.onnx.export`` / ``validate_model_outputs`` take an
``OnnxConfig`` directly. Like Optimum's SAM config, :class:`AuditorOnnxConfig` has two variants:

* ``fused``: one graph (``auditor``), the clip context plus N masks in, per-mask outputs out;
* ``split``: a ``context`` graph and a ``masks`` graph, for streams that reuse a clip's context.

The config's sizes reach the dummy input generators through :class:`AuditorNormalizedConfig`.
Every shape is fixed except the mask batch ``N`` (and the text encoder's token count ``T``).
Dummy inputs default to N = 3 masks: an example with one mask lets an exporter bake the batch in.
"""

from __future__ import annotations

from optimum.exporters.onnx import OnnxConfig
from optimum.utils import DummyInputGenerator, DummyTextInputGenerator, NormalizedConfig, NormalizedTextConfig

from auditor_lite.export.contract import GRAPH_INPUTS, GRAPH_OUTPUTS, MASK_DIM, TOKEN_DIM

DEFAULT_OPSET = 17   # LayerNormalization (TensorRT >= 8.6); Gelu stays Erf-based below opset 20
DEFAULT_NUM_MASKS = 3
PER_MASK_TENSORS = ("masks", "iou", "type_logits", "action_logits")


class AuditorNormalizedConfig(NormalizedConfig):
    """AuditorConfig attribute names under the generic names Optimum's tooling reads."""

    HIDDEN_SIZE = "d_model"
    NUM_ATTENTION_HEADS = "num_heads"
    NUM_FRAMES = "num_frames"
    FRAME_SIZE = "frame_size"
    KEY_SIZE = "key_size"
    CLIP_SAMPLES = "clip_samples"
    TEXT_DIM = "text_dim"
    CONTEXT_TOKENS = "context_tokens"  # a derived property of AuditorConfig


def _as_float_mask(tensor, framework: str):
    """``tensor > 0.5`` as float 0/1 in the tensor's framework."""
    return (tensor > 0.5).float() if framework == "pt" else (tensor > 0.5).astype("float32")


def _unit_rows(tensor, framework: str):
    """Each row divided by its L2 norm (the text embedding is L2-normalised)."""
    if framework == "pt":
        return tensor / tensor.norm(dim=-1, keepdim=True)
    import numpy as np

    return tensor / np.linalg.norm(tensor, axis=-1, keepdims=True)


class DummyClipInputGenerator(DummyInputGenerator):
    """One clip's inputs, in their value ranges: frames and key frame in [0, 1], audio in
    [-0.5, 0.5], a unit-norm text embedding."""

    SUPPORTED_INPUT_NAMES = ("frames", "key_frame", "audio", "text_embedding")

    def __init__(self, task: str, normalized_config: AuditorNormalizedConfig, **input_shapes):
        self.task = task
        self.normalized_config = normalized_config

    def generate(self, input_name: str, framework: str = "pt", int_dtype: str = "int64",
                 float_dtype: str = "fp32"):
        c = self.normalized_config
        if input_name == "frames":
            shape, low, high = [1, c.num_frames, 3, c.frame_size, c.frame_size], 0.0, 1.0
        elif input_name == "key_frame":
            shape, low, high = [1, 3, c.key_size, c.key_size], 0.0, 1.0
        elif input_name == "audio":
            shape, low, high = [1, c.clip_samples], -0.5, 0.5
        else:  # text_embedding
            values = self.random_float_tensor([1, c.text_dim], -1.0, 1.0, framework, float_dtype)
            return _unit_rows(values, framework)
        return self.random_float_tensor(shape, low, high, framework, float_dtype)


class DummyMaskInputGenerator(DummyInputGenerator):
    """``num_masks`` random binary candidate masks."""

    SUPPORTED_INPUT_NAMES = ("masks",)

    def __init__(self, task: str, normalized_config: AuditorNormalizedConfig,
                 num_masks: int = DEFAULT_NUM_MASKS, **input_shapes):
        self.task = task
        self.normalized_config = normalized_config
        self.num_masks = num_masks

    def generate(self, input_name: str, framework: str = "pt", int_dtype: str = "int64",
                 float_dtype: str = "fp32"):
        size = self.normalized_config.key_size
        values = self.random_float_tensor([self.num_masks, 1, size, size], 0.0, 1.0, framework, float_dtype)
        return _as_float_mask(values, framework)


class DummyContextInputGenerator(DummyInputGenerator):
    """Context tokens as the context graph leaves them (LayerNorm output: about unit scale)."""

    SUPPORTED_INPUT_NAMES = ("context",)

    def __init__(self, task: str, normalized_config: AuditorNormalizedConfig, **input_shapes):
        self.task = task
        self.normalized_config = normalized_config

    def generate(self, input_name: str, framework: str = "pt", int_dtype: str = "int64",
                 float_dtype: str = "fp32"):
        c = self.normalized_config
        return self.random_float_tensor([1, c.context_tokens, c.hidden_size], -2.0, 2.0, framework,
                                        float_dtype)


class AuditorOnnxConfig(OnnxConfig):
    """Export description of one auditor graph: ``auditor`` (fused) or ``context`` / ``masks`` (split)."""

    NORMALIZED_CONFIG_CLASS = AuditorNormalizedConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyClipInputGenerator, DummyMaskInputGenerator,
                                     DummyContextInputGenerator)
    VARIANTS = {  # noqa: RUF012 (Optimum's class attribute)
        "fused": "One graph, auditor.onnx: clip frames, key frame, audio, text embedding and N masks "
                 "in; iou, type_logits, action_logits out. The context is encoded once per call.",
        "split": "context.onnx encodes the clip once; masks.onnx scores N masks against a cached "
                 "context (streams that audit many mask batches of one clip).",
    }
    DEFAULT_VARIANT = "fused"
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-3

    def __init__(self, config, task: str = "feature-extraction", graph: str = "auditor",
                 int_dtype: str = "int64", float_dtype: str = "fp32"):
        if graph not in ("auditor", "context", "masks"):
            raise ValueError(f"AuditorOnnxConfig: unknown graph {graph!r} (auditor, context or masks)")
        super().__init__(config, task=task, int_dtype=int_dtype, float_dtype=float_dtype)
        self.graph = graph
        self.variant = "fused" if graph == "auditor" else "split"

    @staticmethod
    def _axes(name: str) -> dict[int, str]:
        return {0: MASK_DIM} if name in PER_MASK_TENSORS else {}

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return {name: self._axes(name) for name in GRAPH_INPUTS[self.graph]}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {name: self._axes(name) for name in GRAPH_OUTPUTS[self.graph]}


class MiniLMOnnxConfig(OnnxConfig):
    """The MiniLM sentence encoder: ``input_ids``, ``attention_mask`` (1, T) -> ``text_embedding``.

    The batch is fixed at 1 (the runtime embeds one expression at a time and caches it); the
    token count ``T`` is dynamic.
    """

    NORMALIZED_CONFIG_CLASS = NormalizedTextConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator,)
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4

    def _create_dummy_input_generator_classes(self, **input_shapes):
        input_shapes = {"sequence_length": 16, **input_shapes, "batch_size": 1}
        return super()._create_dummy_input_generator_classes(**input_shapes)

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        return {name: {1: TOKEN_DIM} for name in GRAPH_INPUTS["text_encoder"]}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {"text_embedding": {}, "token_states": {1: TOKEN_DIM}}
