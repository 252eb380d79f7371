"""The text encoder's export wrapper (like Optimum's SamOnnxModel, it only rewires trained modules;
the grounded graphs' wrappers are in :mod:`auditor_lite.export.grounded`).

A wrapper's ``forward`` has exactly the ONNX graph's input names as parameters (Optimum orders
and names the inputs from the signature) and returns the graph's outputs as a tuple, in the order
of :data:`auditor_lite.graph_io.GRAPH_OUTPUTS`. ``config`` is exposed because Optimum's
exporter reads and sets ``model.config``.

``torch.onnx.export`` restores the training flag it found, so wrap as ``Wrapper(model).eval()``.
"""

from __future__ import annotations

import torch
from torch import nn

from auditor_lite.model.text import mean_pool_normalize


class TextEncoderOnnx(nn.Module):
    """``text_encoder`` graph: MiniLM token ids + attention mask -> L2-normalised embedding (1, 384)
    and the token states (1, T, 384) the grounding model reads."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.bert.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.encoder.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool_normalize(hidden, attention_mask), hidden

