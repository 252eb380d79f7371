"""The evaluation protocol: which samples form which subset, and what is measured on each.

The spec (docs/mq-ravsbench.md section 4) evaluates nine settings on their own -- perfect, merge,
full_neg over all ranks and cutout / erode / dilate at rank 1 (Hard) and rank 2 (Medium) -- for
each of test_s / test_u and image / video. On top of that we report an ``overall`` group (every
sample of the split and mode, null candidates and unusual ranks included), IoU RMSE per type and
per rank, and the extra metrics listed in :func:`overall_metrics`.

Video mode: RMSE (the headline number) is video-level -- per uid, the mean predicted IoU against
the mean true IoU over that uid's samples in the subset, RMSE over uids. ``rmse_samples``, MAE,
correlations, AUROC and all classification metrics stay sample-level in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from auditor_lite.data.schema import ACTIONS, MASK_TYPES, RANKED_TYPES, ExpressionRecord
from auditor_lite.eval import metrics
from auditor_lite.eval.predictions import Prediction, PredictionKey

# Column order of the paper's table.
SETTINGS = ("perfect", "cutout_r1", "cutout_r2", "erode_r1", "erode_r2", "dilate_r1",
            "dilate_r2", "merge", "full_neg")
SETTING_TITLES = {
    "perfect": "Perfect", "cutout_r1": "Cutout-H", "cutout_r2": "Cutout-M",
    "erode_r1": "Erode-H", "erode_r2": "Erode-M", "dilate_r1": "Dilate-H",
    "dilate_r2": "Dilate-M", "merge": "Merge", "full_neg": "FullNeg", "overall": "Overall",
}
RANK_TITLES = {1: "H", 2: "M"}


@dataclass
class GroundTruthTable:
    """The samples of one (split, mode) as parallel arrays, one row per candidate mask."""

    split: str
    mode: str
    uid: np.ndarray  # object (str)
    frame: np.ndarray  # int
    cand_id: np.ndarray  # object (str)
    mask_type: np.ndarray  # object (str)
    rank: np.ndarray  # int
    setting: np.ndarray  # object (str), Candidate.setting
    iou: np.ndarray  # float
    action: np.ndarray  # object (str)

    def __len__(self) -> int:
        return int(self.iou.size)

    def keys(self) -> list[PredictionKey]:
        return list(zip(self.uid.tolist(), self.frame.tolist(), self.cand_id.tolist()))


def ground_truth_table(records: Iterable[ExpressionRecord], split: str,
                       mode: str) -> GroundTruthTable:
    """Flatten the records of one (split, mode); a repeated ``(uid, frame, cand_id)`` is an error."""
    rows: list[tuple] = []
    seen: set[PredictionKey] = set()
    for record in records:
        for cand in record.candidates:
            key = (record.uid, int(cand.frame), cand.cand_id)
            if key in seen:
                raise ValueError(f"{split}/{mode}: candidate {key} appears twice in the benchmark")
            seen.add(key)
            rows.append(key + (cand.mask_type, int(cand.rank), cand.setting,
                               float(cand.iou_to_gt), cand.action))
    columns = list(zip(*rows)) if rows else [()] * 8

    def obj(values) -> np.ndarray:
        return np.array(list(values), dtype=object)

    return GroundTruthTable(
        split=split, mode=mode, uid=obj(columns[0]), frame=np.array(columns[1], dtype=int),
        cand_id=obj(columns[2]), mask_type=obj(columns[3]), rank=np.array(columns[4], dtype=int),
        setting=obj(columns[5]), iou=np.array(columns[6], dtype=float), action=obj(columns[7]))


@dataclass
class AlignedPredictions:
    """One method's predictions in the ground-truth table's row order, missing ones filled in.

    A missing IoU counts as 0 (spec); a missing class is :data:`metrics.MISSING`, which is wrong
    for every true class. ``missing`` marks rows with no prediction line at all.
    """

    iou: np.ndarray
    mask_type: np.ndarray
    action: np.ndarray
    missing: np.ndarray  # bool
    iou_low: np.ndarray  # nan where no interval was given
    iou_high: np.ndarray
    missing_fields: dict[str, int] = field(default_factory=dict)  # field -> rows without a value
    n_unmatched: int = 0  # predictions whose key is not in this table


def align_predictions(gt: GroundTruthTable,
                      predictions: Mapping[PredictionKey, Prediction]) -> AlignedPredictions:
    n = len(gt)
    iou, low, high = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
    mask_type = np.full(n, metrics.MISSING, dtype=object)
    action = np.full(n, metrics.MISSING, dtype=object)
    missing = np.ones(n, dtype=bool)
    matched = iou_unparsed = 0
    for row, key in enumerate(gt.keys()):
        pred = predictions.get(key)
        if pred is None:
            continue
        matched += 1
        missing[row] = False
        if pred.iou is not None:
            iou[row] = pred.iou
        else:
            iou_unparsed += 1
        if pred.mask_type is not None:
            mask_type[row] = pred.mask_type
        if pred.action is not None:
            action[row] = pred.action
        if pred.iou_low is not None:
            low[row], high[row] = pred.iou_low, pred.iou_high
    without = {
        "iou": int(missing.sum()) + iou_unparsed,
        "mask_type": int(np.sum(mask_type == metrics.MISSING)),
        "action": int(np.sum(action == metrics.MISSING)),
    }
    return AlignedPredictions(iou=iou, mask_type=mask_type, action=action, missing=missing,
                              iou_low=low, iou_high=high, missing_fields=without,
                              n_unmatched=len(predictions) - matched)


def _iou_rmse(gt: GroundTruthTable, pred: AlignedPredictions, rows: np.ndarray) -> float | None:
    if gt.mode == "video":
        return metrics.video_level_rmse(pred.iou[rows], gt.iou[rows], gt.uid[rows])
    return metrics.rmse(pred.iou[rows], gt.iou[rows])


def subset_metrics(gt: GroundTruthTable, pred: AlignedPredictions, rows: np.ndarray) -> dict:
    """RMSE, MAE, F2-M, F2-A and accuracies on the samples selected by the boolean ``rows``."""
    true_t, pred_t = gt.mask_type[rows], pred.mask_type[rows]
    true_a, pred_a = gt.action[rows], pred.action[rows]
    return {
        "n": int(rows.sum()),
        "n_uids": int(np.unique(gt.uid[rows].astype(str)).size),
        "n_missing": int(pred.missing[rows].sum()),
        "rmse": _iou_rmse(gt, pred, rows),
        "rmse_samples": metrics.rmse(pred.iou[rows], gt.iou[rows]),
        "mae": metrics.mae(pred.iou[rows], gt.iou[rows]),
        "f2_m": metrics.fbeta_summary(true_t, pred_t,
                                      metrics.mask_type_labels(true_t, pred_t, MASK_TYPES)),
        "f2_a": metrics.fbeta_summary(true_a, pred_a, metrics.action_labels(true_a, ACTIONS)),
        "accuracy_m": metrics.accuracy(true_t, pred_t),
        "accuracy_a": metrics.accuracy(true_a, pred_a),
    }


def overall_metrics(gt: GroundTruthTable, pred: AlignedPredictions) -> dict:
    """:func:`subset_metrics` over every sample plus the metrics beyond the paper."""
    rows = np.ones(len(gt), dtype=bool)
    out = subset_metrics(gt, pred, rows)
    type_labels = metrics.mask_type_labels(gt.mask_type, pred.mask_type, MASK_TYPES)
    action_labels = metrics.present_labels(gt.action, pred.action, ACTIONS)
    groups = np.array([f"{u}@{f}" for u, f in zip(gt.uid, gt.frame)], dtype=object)
    out.update({
        "correlation": metrics.correlations(pred.iou, gt.iou),
        "failure_auroc": metrics.failure_auroc(pred.iou, gt.iou),
        "best_of_candidates": metrics.best_of_candidates(pred.iou, gt.iou, groups),
        "iou_interval": metrics.interval_coverage(pred.iou_low, pred.iou_high, gt.iou),
        "confusion_m": metrics.confusion(gt.mask_type, pred.mask_type, type_labels),
        "confusion_a": metrics.confusion(gt.action, pred.action, action_labels),
    })
    return out


def evaluate(gt: GroundTruthTable, pred: AlignedPredictions) -> dict:
    """Everything measured for one method on one (split, mode); plain JSON-ready values."""
    settings = {s: subset_metrics(gt, pred, gt.setting == s) for s in SETTINGS}
    per_type = {}
    for mask_type in MASK_TYPES:
        rows = gt.mask_type == mask_type
        if rows.any():
            per_type[mask_type] = {"n": int(rows.sum()), "rmse": _iou_rmse(gt, pred, rows)}
    per_rank = {}
    for rank, title in RANK_TITLES.items():
        rows = np.isin(gt.mask_type, RANKED_TYPES) & (gt.rank == rank)
        if rows.any():
            per_rank[title] = {"n": int(rows.sum()), "rmse": _iou_rmse(gt, pred, rows)}
    return {
        "split": gt.split,
        "mode": gt.mode,
        "rmse_level": "video" if gt.mode == "video" else "sample",
        "n_samples": len(gt),
        "n_missing": int(pred.missing.sum()),
        "n_missing_fields": pred.missing_fields,
        "n_unmatched": pred.n_unmatched,
        "settings": settings,
        "overall": overall_metrics(gt, pred),
        "per_type": per_type,
        "per_rank": per_rank,
    }


@dataclass
class MethodResult:
    """A method's results on one (split, mode), with the aligned arrays the plots need."""

    method: str
    gt: GroundTruthTable
    aligned: AlignedPredictions
    metrics: dict


def evaluate_method(method: str, gt: GroundTruthTable,
                    predictions: Mapping[PredictionKey, Prediction]) -> MethodResult:
    aligned = align_predictions(gt, predictions)
    return MethodResult(method=method, gt=gt, aligned=aligned, metrics=evaluate(gt, aligned))
