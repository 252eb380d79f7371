"""Losses: ground truth (IoU, mask type, action) and distillation from a teacher.

IoU is learned with a mean squared error on the sigmoid output (the benchmark scores RMSE, so this
is the metric itself), scaled by ``iou_weight`` because an MSE of IoUs (~0.01-0.05) is far smaller
than a cross-entropy (~0.5-2). Type and action are cross-entropies with light label smoothing. The
grounding map is supervised by the ground-truth mask of the key frame, pooled to the map's grid:
binary cross-entropy plus a soft Dice term (Dice keeps small objects from being ignored).

Distillation (Hinton et al.): KL divergence between the teacher's and the student's class
distributions softened at temperature T (scaled by T^2 so its gradient does not shrink with T),
an MSE towards the teacher's IoU, and MSE between learned linear projections of the student's
decoder query states / pooled context and the teacher's (FitNets-style hints).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from auditor_lite.model.modeling import NUM_QUERIES


@dataclass
class LossWeights:
    iou: float = 5.0
    mask_type: float = 1.0
    action: float = 1.0
    label_smoothing: float = 0.05
    grounding: float = 2.0
    category: float = 0.5       # training.category: pixel embeddings under the object name it


@dataclass
class DistillWeights:
    ground_truth: float = 1.0   # multiplies the whole ground-truth loss
    iou: float = 5.0            # MSE to the teacher's IoU (same scale as the GT IoU term)
    soft_labels: float = 1.0    # KL on mask type and on action, each
    query: float = 1.0          # decoder query-state hint
    context: float = 0.5        # pooled context hint
    temperature: float = 2.0


def grounding_loss(logits: torch.Tensor, gt_mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice of grounding logits ``(B, 1, G, G)`` against masks ``(B, 1, K, K)``."""
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logits, target = logits[valid], gt_mask[valid]
    target = F.adaptive_avg_pool2d(target, logits.shape[-2:])  # the share of each cell covered
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    # +1 smoothing: an empty target (null expression) is matched by an empty map.
    dice = 1.0 - (2.0 * inter + 1.0) / (prob.sum(1) + target.sum(1) + 1.0)
    return bce + dice.mean()


def supervised_losses(out, iou, type_index, action_index, weights: LossWeights,
                      gt_mask: torch.Tensor | None = None,
                      gt_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-term ground-truth losses and their weighted ``total`` (all scalars); with ``gt_mask``
    the grounding map's loss is included."""
    terms = {
        "iou_mse": F.mse_loss(out.iou, iou),
        "type_ce": F.cross_entropy(out.type_logits, type_index, label_smoothing=weights.label_smoothing),
        "action_ce": F.cross_entropy(out.action_logits, action_index,
                                     label_smoothing=weights.label_smoothing),
    }
    terms["total"] = (weights.iou * terms["iou_mse"] + weights.mask_type * terms["type_ce"]
                      + weights.action * terms["action_ce"])
    if gt_mask is not None and getattr(out, "grounding_logits", None) is not None:
        if gt_valid is None:
            gt_valid = torch.ones(gt_mask.shape[0], dtype=torch.bool)
        terms["grounding"] = grounding_loss(out.grounding_logits, gt_mask, gt_valid)
        terms["total"] = terms["total"] + weights.grounding * terms["grounding"]
    return terms


def soft_kl(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at ``temperature``, times T^2, averaged over rows.

    ``teacher_log_probs`` are log-probabilities at T = 1 (a model's log-softmax, or the log of a
    predictions file's probabilities); dividing them by T and renormalising softens them the same
    way as dividing logits by T.
    """
    teacher = F.log_softmax(teacher_log_probs / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature ** 2


class HintProjections(nn.Module):
    """Learned maps from the student's width to the teacher's, for the embedding hints.

    They are trained with the student, saved in its training checkpoint, and not part of the
    exported student.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.query = nn.Linear(student_dim, teacher_dim)
        self.context = nn.Linear(student_dim, teacher_dim)


class QueryStateRecorder(contextlib.AbstractContextManager):
    """Records the decoder's final query states ``(N, NUM_QUERIES, d_model)`` of a model call.

    A forward hook on ``model.decoder_norm`` (a public PyTorch mechanism): the model's own code is
    untouched and its outputs are unchanged.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.states: torch.Tensor | None = None
        self._handle = None

    def _hook(self, module, inputs, output):
        self.states = output[:, :NUM_QUERIES]

    def __enter__(self):
        self._handle = self.model.decoder_norm.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False


def distill_losses(out, query_states: torch.Tensor | None, context: torch.Tensor | None,
                   teacher: dict, projections: HintProjections | None,
                   weights: DistillWeights) -> dict[str, torch.Tensor]:
    """Teacher terms over the masks the teacher has a value for (all tensors row-aligned).

    ``teacher`` holds ``iou`` (N,), ``type_log_probs`` (N, 7), ``action_log_probs`` (N, 4) and
    their validity masks ``valid_iou`` / ``valid_type`` / ``valid_action`` (N,) bool (a predictions
    file may lack a field for some masks), and optionally ``query`` (N, Q, Dt) and ``context`` (B, Dt).
    """
    zero = out.iou.sum() * 0.0
    t = weights.temperature
    valid = teacher["valid_iou"]
    terms = {"kd_iou_mse": F.mse_loss(out.iou[valid], teacher["iou"][valid]) if valid.any() else zero}
    valid = teacher["valid_type"]
    terms["kd_type_kl"] = (soft_kl(out.type_logits[valid], teacher["type_log_probs"][valid], t)
                           if valid.any() else zero)
    valid = teacher["valid_action"]
    terms["kd_action_kl"] = (soft_kl(out.action_logits[valid], teacher["action_log_probs"][valid], t)
                             if valid.any() else zero)
    total = (weights.iou * terms["kd_iou_mse"]
             + weights.soft_labels * (terms["kd_type_kl"] + terms["kd_action_kl"]))
    if projections is not None and query_states is not None and "query" in teacher:
        terms["kd_query_mse"] = F.mse_loss(projections.query(query_states), teacher["query"])
        total = total + weights.query * terms["kd_query_mse"]
    if projections is not None and context is not None and "context" in teacher:
        pooled = projections.context(context.mean(dim=1))
        terms["kd_context_mse"] = F.mse_loss(pooled, teacher["context"])
        total = total + weights.context * terms["kd_context_mse"]
    terms["kd_total"] = total
    return terms
