"""Thin export wrappers (like Optimum's SamOnnxModel): each only rewires trained modules.

Each wrapper's ``forward`` has exactly the ONNX graph's input names as parameters (Optimum orders
and names the inputs from the signature) and returns the graph's outputs as a tuple, in the order
of :data:`auditor_lite.export.contract.GRAPH_OUTPUTS`. ``config`` is exposed because Optimum's
exporter reads and sets ``model.config``.

``torch.onnx.export`` restores the training flag it found, so wrap as ``Wrapper(model).eval()``.
"""

from __future__ import annotations

import torch
from torch import nn

from auditor_lite.model.text import mean_pool_normalize


class FusedAuditorOnnx(nn.Module):
    """``auditor`` graph: clip + N masks -> (iou, type_logits, action_logits); context encoded once."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, frames: torch.Tensor, key_frame: torch.Tensor, audio: torch.Tensor,
                text_embedding: torch.Tensor, masks: torch.Tensor):
        return self.model(frames, key_frame, audio, text_embedding, masks, return_dict=False)


class ContextOnnx(nn.Module):
    """``context`` graph: clip -> context tokens (1, L, D)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, frames: torch.Tensor, key_frame: torch.Tensor, audio: torch.Tensor,
                text_embedding: torch.Tensor):
        return (self.model.encode_context(frames, key_frame, audio, text_embedding),)


class MasksOnnx(nn.Module):
    """``masks`` graph: cached context + N masks + key frame -> (iou, type_logits, action_logits)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, context: torch.Tensor, masks: torch.Tensor, key_frame: torch.Tensor):
        return self.model.audit_masks(context, masks, key_frame, return_dict=False)


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


AUDITOR_WRAPPERS = {"auditor": FusedAuditorOnnx, "context": ContextOnnx, "masks": MasksOnnx}
