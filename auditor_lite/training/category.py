"""Auxiliary loss: the grounding head's pixel embeddings under the referred object should name it.

The grounding map selects the referred object by a dot product between pixel embeddings and a
query read from the expression; that only works once the pixel embeddings say *what* each object is.
Learning that from the grounding loss alone is slow (the map learns objectness within minutes but
picks the wrong object for a long time). MQ-RAVSBench uids carry the referred object's category
(``<vid>_<category>_<k>``, docs/mq-ravsbench.md), so during training the mean pixel embedding under
the ground-truth mask is also classified among the training categories, against prototypes made
from the MiniLM embeddings of the category names (a learned linear map; InfoNCE, temperature 0.1).
Using the names' sentence embeddings, not free class vectors, keeps the visual embedding space tied
to language, which is what the expression query lives in.

The prototype map is a training-only module (kept in the training checkpoint, not exported); the
pixel embeddings are read with a forward hook on ``model.grounding.pixel_mix``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from auditor_lite.data.schema import NULL_UID_PREFIX

TEMPERATURE = 0.1


def category_of(uid: str) -> str | None:
    """The category named in a uid (``<vid>_<category>_<k>``); None for null expressions."""
    if uid.startswith(NULL_UID_PREFIX):
        return None
    parts = uid.rsplit("_", 2)
    return parts[1] if len(parts) == 3 and parts[1] else None


class CategoryPrototypes(nn.Module):
    """Category names' MiniLM embeddings (fixed) -> prototypes in the pixel-embedding space."""

    def __init__(self, name_embeddings: np.ndarray, channels: int):
        super().__init__()
        self.register_buffer("names", torch.from_numpy(np.asarray(name_embeddings, np.float32)))
        self.proj = nn.Linear(self.names.shape[1], channels)

    def forward(self) -> torch.Tensor:
        return self.proj(self.names)


def category_targets(uids: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(vocabulary, per-expression index into it or -1) from the training uids."""
    names = [category_of(str(u)) for u in uids]
    vocabulary = sorted({n for n in names if n is not None})
    index = {n: i for i, n in enumerate(vocabulary)}
    return vocabulary, np.array([index.get(n, -1) if n is not None else -1 for n in names], np.int64)


class PixelRecorder(contextlib.AbstractContextManager):
    """Records the grounding head's pixel embeddings ``(B, C, G, G)`` of a model call."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.pixels: torch.Tensor | None = None
        self._handle = None

    def _hook(self, module, inputs, output):
        self.pixels = output

    def __enter__(self):
        self._handle = self.model.grounding.pixel_mix.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False


def category_loss(pixels: torch.Tensor, gt_mask: torch.Tensor, target: torch.Tensor,
                  prototypes: torch.Tensor) -> torch.Tensor:
    """InfoNCE of the mean pixel embedding under each ground truth against the prototypes.

    ``pixels`` (B, C, G, G); ``gt_mask`` (B, 1, K, K); ``target`` (B,) category index or -1 (skipped).
    """
    weights = F.adaptive_avg_pool2d(gt_mask, pixels.shape[-2:])
    area = weights.sum(dim=(2, 3))
    keep = (target >= 0) & (area[:, 0] > 0.5)
    if not bool(keep.any()):
        return pixels.sum() * 0.0
    pooled = (pixels * weights).sum(dim=(2, 3)) / area.clamp(min=1e-3)
    logits = F.normalize(pooled[keep], dim=1) @ F.normalize(prototypes, dim=1).t() / TEMPERATURE
    return F.cross_entropy(logits, target[keep])
