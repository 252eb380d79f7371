"""Grounding: where on the key frame is the object the expression (and the sound) refers to?

MQ-Auditor judges a mask by knowing what the referred object looks like; a small network trained
from scratch on a few thousand clips does not learn that from per-mask IoU labels alone (13 numbers
per clip). So the auditor also predicts a *grounding map*, a soft segmentation of the referred
object on the key frame, supervised densely by the ground-truth mask during training (MaskFormer
style: per-pixel embeddings dotted with a query vector read from the context trunk), and each
candidate is compared with that map by soft overlap statistics that the heads read directly.

The map is computed from the key frame and the context tokens, both of which the ``masks`` graph
already receives, so the split/fused ONNX graphs keep their inputs and outputs; the map costs one
small CNN per clip call, never per mask. All ops (Conv, Resize, MatMul, ReduceSum, Div, Sigmoid)
run in ONNX Runtime and onnx-tensorrt.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from auditor_lite.model.layers import ConvStem

NUM_AGREEMENT_FEATURES = 6
AREA_EPS = 1.0  # one pixel: keeps the ratios finite for empty masks and empty grounding maps


class GroundingHead(nn.Module):
    """Key frame + context tokens -> grounding logits ``(B, 1, G, G)`` (G = key_size / stride).

    Pixel embeddings come from a small CNN over the key frame (edges and colours, at a quarter of
    the key frame's resolution) plus the trunk's key-frame tokens upsampled to the same grid (what
    is where, already mixed with text, audio and the video); the query vector is the trunk's
    grounding token, so the map depends on the expression and the sound.
    """

    def __init__(self, d_model: int, channels: int, stages: list, key_grid: int, key_size: int):
        super().__init__()
        self.pixel_stem = ConvStem(3, stages)
        self.grid = key_size // _total_stride(stages)
        # Normalised (x, y) of each cell, so that "the one on the left" is a direction in the
        # embedding space; a constant of the architecture (not learned, not saved).
        axis = (torch.arange(self.grid, dtype=torch.float32) + 0.5) / self.grid * 2.0 - 1.0
        coords = torch.stack([axis.expand(self.grid, self.grid), axis[:, None].expand(self.grid, self.grid)])
        self.register_buffer("coords", coords.unsqueeze(0), persistent=False)
        self.coord_in = nn.Conv2d(2, channels, 1, bias=False)
        if self.grid % key_grid:
            raise ValueError(f"AuditorConfig.grounding_stages: the grounding map ({self.grid} cells per "
                             f"side) must be a multiple of the key-frame token grid ({key_grid})")
        self.key_grid = key_grid
        self.key_size = key_size
        self.pixel_in = nn.Conv2d(self.pixel_stem.out_channels, channels, 1)
        self.token_in = nn.Linear(d_model, channels)
        self.pixel_mix = nn.Sequential(nn.GELU(), nn.Conv2d(channels, channels, 3, 1, 1), nn.GELU(),
                                       nn.Conv2d(channels, channels, 1))
        self.query = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, channels))
        # A direct path from the text tokens to the query: the category or attribute named by the
        # expression need not be routed into the grounding token first.
        self.text_query = nn.Linear(d_model, channels)
        self.bias = nn.Parameter(torch.zeros(1))
        self.scale = channels ** -0.5

    def forward(self, key_frame: torch.Tensor, grounding_token: torch.Tensor,
                key_tokens: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        batch, channels = key_frame.shape[0], self.pixel_in.out_channels
        pixels = self.pixel_in(self.pixel_stem(key_frame))                       # (B, C, G, G)
        tokens = self.token_in(key_tokens).transpose(1, 2)                       # (B, C, kg*kg)
        tokens = tokens.reshape(batch, channels, self.key_grid, self.key_grid)
        # Scale factors (not sizes): the exported Resize then has constant scales, which TensorRT
        # needs, instead of sizes computed from the input's shape.
        tokens = F.interpolate(tokens, scale_factor=float(self.grid // self.key_grid), mode="bilinear",
                               align_corners=False)
        pixels = self.pixel_mix(pixels + tokens + self.coord_in(self.coords))
        query = (self.query(grounding_token) + self.text_query(text_tokens.mean(dim=1))).reshape(batch, 1, channels)
        logits = torch.matmul(query, pixels.flatten(2)) * self.scale + self.bias  # (B, 1, G*G)
        return logits.reshape(batch, 1, self.grid, self.grid)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Grounding probabilities at the key frame's resolution ``(B, 1, K, K)``."""
        full = F.interpolate(logits, scale_factor=float(self.key_size // self.grid), mode="bilinear",
                             align_corners=False)
        return torch.sigmoid(full)


def _total_stride(stages: list) -> int:
    total = 1
    for _, stride in stages:
        total *= stride
    return total


def agreement_features(masks: torch.Tensor, grounding: torch.Tensor) -> torch.Tensor:
    """Soft overlap statistics of each mask with the grounding map, ``(N, 6)``.

    ``masks`` (N, 1, K, K) in {0, 1}; ``grounding`` (N or 1, 1, K, K) probabilities. The features
    are soft IoU, precision (share of the mask on the referred object), recall (share of the
    object covered), the square roots of both areas as fractions of the frame, and their log
    ratio: together they separate perfect, eroded (recall < 1), dilated and merged (precision < 1),
    wrong-object (both ~0) and empty masks.
    """
    pixels = masks.shape[-1] * masks.shape[-2]
    inter = (masks * grounding).sum(dim=(1, 2, 3))
    mask_area = masks.sum(dim=(1, 2, 3))
    ground_area = grounding.sum(dim=(1, 2, 3)).expand_as(mask_area)
    soft_iou = inter / (mask_area + ground_area - inter + AREA_EPS)
    precision = inter / (mask_area + AREA_EPS)
    recall = inter / (ground_area + AREA_EPS)
    log_ratio = torch.log((mask_area + AREA_EPS) / (ground_area + AREA_EPS)) * 0.25
    return torch.stack([soft_iou, precision, recall, torch.sqrt(mask_area / pixels),
                        torch.sqrt(ground_area / pixels), log_ratio], dim=1)


# ----------------------------------------------------------------------------- mask vs key frame
# What MQ-Auditor reads off the masked key frame at full resolution, and a stride-4 CNN blurs away:
# whether the mask's boundary sits on the image's edges (a perfect mask) or a few pixels inside
# (erode) or outside (dilate) them, and how ragged or swollen its outline is. Computed per mask at
# the key frame's resolution with max-pooling morphology (MaxPool, exported as-is).
NUM_BOUNDARY_FEATURES = 7
NUM_MASK_FEATURES = NUM_AGREEMENT_FEATURES + NUM_BOUNDARY_FEATURES
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def dilate(masks: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(masks, 3, 1, 1)


def erode(masks: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-masks, 3, 1, 1)


class EdgeMap(nn.Module):
    """Grey-level gradient magnitude of the key frame ``(B, 1, K, K)`` (fixed Sobel filters)."""

    def __init__(self):
        super().__init__()
        kx = torch.tensor(SOBEL_X) / 8.0
        # Not learned and not saved: the filters are constants of the architecture.
        self.register_buffer("kernels", torch.stack([kx, kx.t()]).unsqueeze(1), persistent=False)

    def forward(self, key_frame: torch.Tensor) -> torch.Tensor:
        grey = key_frame.mean(dim=1, keepdim=True)
        grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), self.kernels)
        return torch.sqrt((grad * grad).sum(dim=1, keepdim=True) + 1e-6)


def _mean_over(region: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (N, C, H, W) over each binary ``region`` (N, 1, H, W) -> (N, C)."""
    return (region * values).sum(dim=(2, 3)) / (region.sum(dim=(2, 3)) + AREA_EPS)


def boundary_features(masks: torch.Tensor, key_frame: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Per-mask outline statistics ``(N, 7)``; ``key_frame``/``edges`` have N or 1 rows.

    Edge strength on the mask's inner and outer 1-pixel boundary, the colour contrast between
    2-pixel rings inside and outside the boundary, the boundary length against the area, the
    share of the mask lost to a 2-pixel opening and gained by a 2-pixel closing (the geometry
    baseline's best features), and the share of the mask touching the frame border.
    """
    area = masks.sum(dim=(1, 2, 3))
    eroded = erode(masks)
    dilated = dilate(masks)
    inner, outer = masks - eroded, dilated - masks
    ring_in, ring_out = masks - erode(eroded), dilate(dilated) - masks
    edge_in = _mean_over(inner, edges)[:, 0]
    edge_out = _mean_over(outer, edges)[:, 0]
    contrast = (_mean_over(ring_in, key_frame) - _mean_over(ring_out, key_frame)).abs().sum(dim=1)
    opened = dilate(dilate(erode(eroded)))
    closed = erode(erode(dilate(dilated)))
    open_loss = (area - opened.sum(dim=(1, 2, 3))) / (area + AREA_EPS)
    close_gain = (closed.sum(dim=(1, 2, 3)) - area) / (area + AREA_EPS)
    perimeter = inner.sum(dim=(1, 2, 3)) / (4.0 * torch.sqrt(area + AREA_EPS))
    frame = masks.shape[-1] + masks.shape[-2]
    border = (masks[:, 0, 0].sum(-1) + masks[:, 0, -1].sum(-1) + masks[:, 0, :, 0].sum(-1)
              + masks[:, 0, :, -1].sum(-1)) / (2.0 * frame)
    return torch.stack([edge_in, edge_out, contrast, perimeter, open_loss, close_gain, border], dim=1)
