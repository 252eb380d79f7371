"""The Optimum ONNX configuration of the MiniLM text encoder, and the default opset.

Optimum cannot infer the library of a custom model, so its high-level ``main_export`` does not
apply; the lower-level ``optimum.exporters.onnx.export`` / ``validate_model_outputs`` take an
``OnnxConfig`` directly. The grounded graphs' config is
:class:`auditor_lite.export.grounded.GroundedOnnxConfig`.
"""

from __future__ import annotations

from optimum.exporters.onnx import OnnxConfig
from optimum.utils import DummyTextInputGenerator, NormalizedTextConfig

from auditor_lite.graph_io import TEXT_ENCODER_INPUTS, TOKEN_DIM

DEFAULT_OPSET = 17   # LayerNormalization (TensorRT >= 8.6); Gelu stays Erf-based below opset 20


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
        return {name: {1: TOKEN_DIM} for name in TEXT_ENCODER_INPUTS}

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        return {"text_embedding": {}, "token_states": {1: TOKEN_DIM}}
