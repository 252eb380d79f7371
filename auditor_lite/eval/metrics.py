"""Metric functions: numpy arrays in, floats and plain dicts out (docs/mq-ravsbench.md section 4).

Every function here is pure and works on one subset of samples; :mod:`auditor_lite.eval.protocol`
decides which subsets exist. A metric that is undefined on its input (an empty subset, a constant
series for a correlation, one class only for an AUROC) is ``None``, never ``nan``, so that JSON
reports stay valid and tables can print a dash.

Classification conventions (F-beta, beta = 2, "F2-M" for mask types and "F2-A" for actions):

- per class: ``P = TP / (TP + FP)``, 0 when the class is never predicted;
  ``R = TP / (TP + FN)``; ``F = (1 + b^2) P R / (b^2 P + R)``, 0 when ``P = R = 0``.
- a class with predictions but no ground truth has ``P = 0`` and an undefined recall, hence an
  undefined F: it is listed (its false positives are real) but left out of the macro average;
  a class with neither ground truth nor predictions is not listed at all.
- macro = mean F over the listed classes whose F is defined (= the classes present in the
  ground truth); micro = F of the TP/FP/FN summed over the listed classes.
- which classes are listed is the caller's choice: :func:`mask_type_labels` (ground truth or
  predicted) and :func:`action_labels` (ground truth only, as the spec requires for actions).
- a missing prediction carries the class :data:`MISSING`: a false negative for its true class
  and a false positive for no class, so it never appears as a class of its own.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

# The predicted class of a sample the method did not predict (or whose output did not parse).
MISSING = "<missing>"
# Spec: a failure is a candidate whose true IoU is below this (the auditor should flag it).
FAILURE_IOU = 0.5


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)


def rmse(pred, true) -> float | None:
    """Root mean squared error; ``None`` for an empty input."""
    pred, true = _floats(pred), _floats(true)
    if pred.size == 0:
        return None
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def mae(pred, true) -> float | None:
    """Mean absolute error; ``None`` for an empty input."""
    pred, true = _floats(pred), _floats(true)
    if pred.size == 0:
        return None
    return float(np.mean(np.abs(pred - true)))


def group_means(values, groups) -> np.ndarray:
    """Mean of ``values`` per distinct group label, in sorted group order."""
    values = _floats(values)
    _, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    return sums / np.bincount(inverse)


def video_level_rmse(pred, true, groups) -> float | None:
    """The spec's video-level RMSE: per group (uid) mean predicted vs mean true IoU, RMSE over groups."""
    pred = _floats(pred)
    if pred.size == 0:
        return None
    return rmse(group_means(pred, groups), group_means(true, groups))


@dataclass(frozen=True)
class ClassScores:
    precision: float | None
    recall: float | None
    fbeta: float | None
    support: int  # samples whose true class is this one
    predicted: int  # samples predicted as this class


def fbeta_from(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    denominator = b2 * precision + recall
    return 0.0 if denominator == 0 else (1 + b2) * precision * recall / denominator


def class_scores(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str],
                 beta: float = 2.0) -> dict[str, ClassScores]:
    """Per-class precision / recall / F-beta by the conventions in the module docstring."""
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    scores = {}
    for label in labels:
        is_true, is_pred = y_true == label, y_pred == label
        tp = int(np.sum(is_true & is_pred))
        support, predicted = int(is_true.sum()), int(is_pred.sum())
        if support == 0 and predicted == 0:
            scores[label] = ClassScores(None, None, None, 0, 0)
            continue
        precision = tp / predicted if predicted else 0.0
        if support == 0:
            scores[label] = ClassScores(precision, None, None, 0, predicted)
            continue
        recall = tp / support
        scores[label] = ClassScores(precision, recall, fbeta_from(precision, recall, beta),
                                    support, predicted)
    return scores


def _mean_defined(values) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def fbeta_summary(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str],
                  beta: float = 2.0) -> dict:
    """Per-class scores plus macro and micro precision / recall / F-beta over ``labels``."""
    per_class = class_scores(y_true, y_pred, labels, beta)
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    tp = fp = fn = 0
    for label in labels:
        is_true, is_pred = y_true == label, y_pred == label
        tp += int(np.sum(is_true & is_pred))
        fp += int(np.sum(~is_true & is_pred))
        fn += int(np.sum(is_true & ~is_pred))
    micro_p = tp / (tp + fp) if tp + fp else 0.0
    micro_r = tp / (tp + fn) if tp + fn else None
    with_f = [s for s in per_class.values() if s.fbeta is not None]
    return {
        "labels": list(labels),
        "beta": beta,
        "macro_f": _mean_defined(s.fbeta for s in with_f),
        "macro_precision": _mean_defined(s.precision for s in with_f),
        "macro_recall": _mean_defined(s.recall for s in with_f),
        "micro_precision": micro_p if tp + fp + fn else None,
        "micro_recall": micro_r,
        "micro_f": fbeta_from(micro_p, micro_r, beta) if micro_r is not None else None,
        "per_class": {label: asdict(s) for label, s in per_class.items()},
    }


def _ordered(present: set, vocabulary: Sequence[str]) -> list[str]:
    """Classes of ``present`` in vocabulary order, unknown names after them in sorted order."""
    known = [c for c in vocabulary if c in present]
    return known + sorted(c for c in present if c not in vocabulary)


def present_labels(y_true, y_pred, vocabulary: Sequence[str]) -> list[str]:
    """Classes in the ground truth or in the predictions (never MISSING), vocabulary order."""
    present = (set(np.asarray(y_true, dtype=object)) | set(np.asarray(y_pred, dtype=object)))
    present.discard(MISSING)
    return _ordered(present, vocabulary)


def mask_type_labels(y_true, y_pred, vocabulary: Sequence[str]) -> list[str]:
    """Mask-type classes to score: those in the ground truth or in the predictions."""
    return present_labels(y_true, y_pred, vocabulary)


def action_labels(y_true, vocabulary: Sequence[str]) -> list[str]:
    """Action classes to score: only those present in the subset's ground truth (spec section 4)."""
    return _ordered(set(np.asarray(y_true, dtype=object)), vocabulary)


def accuracy(y_true, y_pred) -> float | None:
    """Fraction of samples whose predicted class is the true one (a missing one is wrong)."""
    y_true = np.asarray(y_true, dtype=object)
    if y_true.size == 0:
        return None
    return float(np.mean(y_true == np.asarray(y_pred, dtype=object)))


def confusion(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Counts with rows = true class, columns = predicted class (+ a MISSING column if needed)."""
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    columns = list(labels) + ([MISSING] if np.any(y_pred == MISSING) else [])
    unknown = sorted(set(y_true) - set(labels))
    if unknown:
        raise ValueError(f"true classes {unknown} are not among the confusion labels {list(labels)}")
    if y_true.size == 0:
        matrix = np.zeros((len(labels), len(columns)), dtype=int)
    else:
        with warnings.catch_warnings():
            # sklearn warns about a single class even though explicit labels fix the shape.
            warnings.filterwarnings("ignore", message="A single label was found")
            matrix = confusion_matrix(y_true, y_pred, labels=columns)[: len(labels)]
    return {"rows": list(labels), "columns": columns, "matrix": matrix.astype(int).tolist()}


def correlations(pred, true) -> dict[str, float | None]:
    """Pearson (PLCC), Spearman (SRCC) and Kendall (KRCC) correlation of predicted vs true IoU."""
    from scipy import stats

    pred, true = _floats(pred), _floats(true)
    if pred.size < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        # A constant series has no correlation (scipy would warn and return nan).
        return {"plcc": None, "srcc": None, "krcc": None}
    return {
        "plcc": float(stats.pearsonr(pred, true)[0]),
        "srcc": float(stats.spearmanr(pred, true)[0]),
        "krcc": float(stats.kendalltau(pred, true)[0]),
    }


def failure_auroc(pred, true, threshold: float = FAILURE_IOU) -> float | None:
    """AUROC of flagging failures (true IoU < threshold) with the score ``-predicted IoU``."""
    from sklearn.metrics import roc_auc_score

    pred, true = _floats(pred), _floats(true)
    failure = true < threshold
    if failure.all() or not failure.any():
        return None  # one class only: the AUROC is undefined
    return float(roc_auc_score(failure, -pred))


def best_of_candidates(pred, true, groups) -> dict:
    """Pick, per group (an expression's frame), the candidate with the highest predicted IoU.

    Returns the mean true IoU of the pick (ties: the mean over the tied candidates, i.e. the
    expectation of a random tie-break; taking the first would reward a constant predictor for the
    benchmark's candidate order, which lists the perfect mask first), of the
    oracle (the best candidate) and of a uniformly random pick (its exact expectation, the group
    mean), plus ``hit_rate``: the fraction of groups where the pick is as good as the oracle.
    Groups with a single candidate offer no choice and are left out.
    """
    pred, true = _floats(pred), _floats(true)
    groups = np.asarray(groups, dtype=object).astype(str)
    order: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        order.setdefault(group, []).append(index)
    picks, oracles, randoms = [], [], []
    for members in order.values():
        if len(members) < 2:
            continue
        members = np.asarray(members)
        scores = pred[members]
        tied = members[scores >= scores.max()]
        picks.append(true[tied].mean())
        oracles.append(true[members].max())
        randoms.append(true[members].mean())
    if not picks:
        return {"n_groups": 0, "pick": None, "oracle": None, "random": None, "hit_rate": None}
    picks, oracles = np.asarray(picks), np.asarray(oracles)
    return {
        "n_groups": int(picks.size),
        "pick": float(picks.mean()),
        "oracle": float(oracles.mean()),
        "random": float(np.mean(randoms)),
        "hit_rate": float(np.mean(np.isclose(picks, oracles))),
    }


def interval_coverage(low, high, true) -> dict:
    """Share of samples whose true IoU lies in the predicted interval, and the mean width.

    Samples without an interval carry ``nan`` bounds and are left out; ``n`` counts the rest.
    """
    low, high, true = _floats(low), _floats(high), _floats(true)
    has = ~(np.isnan(low) | np.isnan(high))
    if not has.any():
        return {"n": 0, "coverage": None, "mean_width": None}
    inside = (true[has] >= low[has]) & (true[has] <= high[has])
    return {"n": int(has.sum()), "coverage": float(inside.mean()),
            "mean_width": float(np.mean(high[has] - low[has]))}
