"""Held-out metrics of the training loop: the model-selection score and the grounding map's IoU."""

from __future__ import annotations

import numpy as np
import torch


def grounding_iou(logits: torch.Tensor, gt_mask: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    """Per-expression IoU of the grounding map (> 0.5, upsampled) with non-empty ground truths."""
    size = gt_mask.shape[-1]
    pred = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear",
                                           align_corners=False) > 0
    gt = gt_mask > 0.5
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    keep = valid & (gt.flatten(1).sum(1) > 0)
    return (inter / union.clamp(min=1))[keep].numpy()


def selection_score(metrics: dict) -> float:
    """Lower is better: IoU RMSE plus half the type and action error rates (both in [0, 1])."""
    return metrics["iou_rmse"] + 0.5 * (1 - metrics["type_acc"]) + 0.5 * (1 - metrics["action_acc"])
