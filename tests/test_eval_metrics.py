"""Metric functions on tiny inputs with hand-computed values, cross-checked against sklearn/scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, precision_recall_fscore_support

from auditor_lite.data.schema import ACTIONS, MASK_TYPES
from auditor_lite.eval import metrics
from auditor_lite.eval.metrics import MISSING

approx = pytest.approx


def test_rmse_and_mae_by_hand_and_against_sklearn():
    pred, true = [0.5, 1.0, 0.0], [1.0, 1.0, 0.3]
    # errors -0.5, 0, -0.3: squares 0.25 + 0 + 0.09 = 0.34
    assert metrics.rmse(pred, true) == approx(math.sqrt(0.34 / 3))
    assert metrics.mae(pred, true) == approx(0.8 / 3)
    assert metrics.rmse(pred, true) == approx(math.sqrt(mean_squared_error(true, pred)))
    assert metrics.mae(pred, true) == approx(mean_absolute_error(true, pred))
    assert metrics.rmse([], []) is None and metrics.mae([], []) is None


def test_video_level_rmse_averages_per_uid_first():
    pred, true, uids = [0.2, 0.4, 0.9], [0.5, 0.5, 0.6], ["a", "a", "b"]
    # a: mean 0.3 vs 0.5 -> -0.2 ; b: 0.9 vs 0.6 -> +0.3 ; RMSE over 2 uids
    assert metrics.video_level_rmse(pred, true, uids) == approx(math.sqrt((0.04 + 0.09) / 2))
    assert metrics.group_means([1.0, 3.0, 5.0], ["b", "a", "b"]).tolist() == [3.0, 3.0]
    # Errors of opposite sign inside one uid cancel at video level, not at sample level.
    assert metrics.video_level_rmse([0.6, 0.9], [0.8, 0.7], ["u", "u"]) == approx(0.0)
    assert metrics.video_level_rmse([], [], []) is None


# Mask types: cutout x3, erode x2, dilate x1; predictions include a class absent from the ground
# truth (merge), a class never predicted (dilate) and one missing prediction.
TYPE_TRUE = ["cutout", "cutout", "cutout", "erode", "erode", "dilate"]
TYPE_PRED = ["cutout", "cutout", "erode", "erode", "merge", MISSING]


def test_fbeta_per_class_by_hand():
    labels = metrics.mask_type_labels(TYPE_TRUE, TYPE_PRED, MASK_TYPES)
    assert labels == ["cutout", "erode", "dilate", "merge"]  # vocabulary order, no MISSING
    scores = metrics.class_scores(TYPE_TRUE, TYPE_PRED, labels, beta=2)
    # cutout: TP 2 of 2 predicted, 3 true: P 1, R 2/3, F2 = 5 * 2/3 / (4 + 2/3) = 10/14
    assert (scores["cutout"].precision, scores["cutout"].recall) == approx((1.0, 2 / 3))
    assert scores["cutout"].fbeta == approx(10 / 14)
    # erode: TP 1 of 2 predicted, 2 true: P = R = 0.5, F2 = 1.25 / 2.5
    assert scores["erode"].fbeta == approx(0.5)
    # dilate: true once, never predicted (the missing one): P 0 by convention, R 0, F 0
    assert (scores["dilate"].precision, scores["dilate"].recall, scores["dilate"].fbeta) == (0, 0, 0)
    # merge: predicted once, absent from the truth: P 0, recall and F undefined
    assert scores["merge"].precision == 0.0
    assert scores["merge"].recall is None and scores["merge"].fbeta is None
    assert (scores["merge"].support, scores["merge"].predicted) == (0, 1)


def test_fbeta_macro_and_micro_by_hand():
    labels = metrics.mask_type_labels(TYPE_TRUE, TYPE_PRED, MASK_TYPES)
    summary = metrics.fbeta_summary(TYPE_TRUE, TYPE_PRED, labels, beta=2)
    # macro over classes with a defined F (cutout, erode, dilate); merge is left out
    assert summary["macro_f"] == approx((10 / 14 + 0.5 + 0.0) / 3)
    # micro over all listed classes: TP 3, FP 2 (erode once, merge once), FN 3
    assert summary["micro_precision"] == approx(3 / 5)
    assert summary["micro_recall"] == approx(3 / 6)
    assert summary["micro_f"] == approx(5 * 0.6 * 0.5 / (4 * 0.6 + 0.5))


def test_fbeta_matches_sklearn():
    labels = metrics.mask_type_labels(TYPE_TRUE, TYPE_PRED, MASK_TYPES)
    summary = metrics.fbeta_summary(TYPE_TRUE, TYPE_PRED, labels, beta=2)
    with_truth = [c for c in labels if c in TYPE_TRUE]
    p, r, f, support = precision_recall_fscore_support(
        TYPE_TRUE, TYPE_PRED, labels=with_truth, beta=2, average=None, zero_division=0)
    for i, label in enumerate(with_truth):
        row = summary["per_class"][label]
        assert (row["precision"], row["recall"], row["fbeta"], row["support"]) == approx(
            (p[i], r[i], f[i], support[i]))
    _, _, macro, _ = precision_recall_fscore_support(
        TYPE_TRUE, TYPE_PRED, labels=with_truth, beta=2, average="macro", zero_division=0)
    assert summary["macro_f"] == approx(macro)
    micro = precision_recall_fscore_support(
        TYPE_TRUE, TYPE_PRED, labels=labels, beta=2, average="micro", zero_division=0)
    assert (summary["micro_precision"], summary["micro_recall"], summary["micro_f"]) == approx(
        micro[:3])


def test_action_classes_are_restricted_to_the_ground_truth():
    true = ["minor revision", "minor revision", "major revision"]
    pred = ["minor revision", "accept", "reject"]
    labels = metrics.action_labels(true, ACTIONS)
    assert labels == ["minor revision", "major revision"]
    summary = metrics.fbeta_summary(true, pred, labels, beta=2)
    assert set(summary["per_class"]) == {"minor revision", "major revision"}
    # minor: P 1, R 0.5, F2 = 2.5 / 4.5 ; major: never predicted -> 0
    assert summary["macro_f"] == approx((2.5 / 4.5 + 0.0) / 2)
    # micro: accept / reject predictions are not false positives of a listed class
    assert summary["micro_precision"] == approx(1.0)
    assert summary["micro_recall"] == approx(1 / 3)
    assert summary["micro_f"] == approx(5 / 13)
    micro = precision_recall_fscore_support(true, pred, labels=labels, beta=2, average="micro",
                                            zero_division=0)
    assert summary["micro_f"] == approx(micro[2])


def test_single_type_subset_macro_is_that_class():
    true = ["full_neg"] * 4
    pred = ["full_neg", "full_neg", "merge", "null"]
    labels = metrics.mask_type_labels(true, pred, MASK_TYPES)
    assert labels == ["merge", "full_neg", "null"]
    summary = metrics.fbeta_summary(true, pred, labels, beta=2)
    # full_neg: P 1, R 0.5 -> F2 2.5/4.5; merge and null have no truth -> undefined, not averaged
    assert summary["macro_f"] == approx(2.5 / 4.5)
    assert summary["per_class"]["full_neg"]["fbeta"] == approx(2.5 / 4.5)
    assert summary["micro_f"] == approx(0.5)  # TP 2, FP 2, FN 2


def test_all_correct_and_empty_subsets():
    summary = metrics.fbeta_summary(["perfect"] * 3, ["perfect"] * 3, ["perfect"], beta=2)
    assert summary["macro_f"] == 1.0 and summary["micro_f"] == 1.0
    empty = metrics.fbeta_summary([], [], [], beta=2)
    assert empty["macro_f"] is None and empty["micro_f"] is None and empty["per_class"] == {}
    assert metrics.accuracy([], []) is None


def test_all_missing_predictions_score_zero():
    summary = metrics.fbeta_summary(["cutout", "erode"], [MISSING, MISSING],
                                    metrics.mask_type_labels(["cutout", "erode"],
                                                             [MISSING, MISSING], MASK_TYPES))
    assert summary["macro_f"] == 0.0 and summary["micro_f"] == 0.0
    assert summary["labels"] == ["cutout", "erode"]


def test_accuracy_and_confusion():
    true, pred = ["cutout", "cutout", "erode"], ["cutout", MISSING, "cutout"]
    assert metrics.accuracy(true, pred) == approx(1 / 3)
    table = metrics.confusion(true, pred, ["cutout", "erode"])
    assert table["rows"] == ["cutout", "erode"]
    assert table["columns"] == ["cutout", "erode", MISSING]
    assert table["matrix"] == [[1, 0, 1], [1, 0, 0]]
    assert metrics.confusion(["accept"], ["accept"], ["accept"])["columns"] == ["accept"]
    with pytest.raises(ValueError, match="reject"):
        metrics.confusion(["reject"], ["accept"], ["accept"])


def test_correlations_by_hand_and_against_scipy():
    pred, true = [0.1, 0.4, 0.3, 0.9], [0.2, 0.5, 0.6, 1.0]
    out = metrics.correlations(pred, true)
    # deviations: pred (-.325, -.025, -.125, .475), true (-.375, -.075, .025, .425)
    assert out["plcc"] == approx(0.3225 / math.sqrt(0.3475 * 0.3275))
    assert out["srcc"] == approx(1 - 6 * 2 / (4 * 15))  # ranks differ by 1 twice
    assert out["krcc"] == approx((5 - 1) / 6)  # one discordant pair out of six
    assert out["plcc"] == approx(stats.pearsonr(pred, true)[0])
    assert out["krcc"] == approx(stats.kendalltau(pred, true)[0])
    constant = metrics.correlations([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])
    assert constant == {"plcc": None, "srcc": None, "krcc": None}
    assert metrics.correlations([0.5], [0.5])["plcc"] is None


def test_failure_auroc_by_hand():
    true = [0.2, 0.4, 0.7, 0.9]  # the first two are failures (< 0.5)
    pred = [0.3, 0.8, 0.6, 0.9]
    # failure scores -0.3, -0.8 vs good -0.6, -0.9: 3 of 4 pairs ranked right
    assert metrics.failure_auroc(pred, true) == approx(0.75)
    assert metrics.failure_auroc([0.1, 0.9], [0.6, 0.9]) is None  # no failure at all
    assert metrics.failure_auroc([0.1, 0.9], [0.0, 0.1]) is None  # only failures


def test_best_of_candidates_by_hand():
    groups = ["g1", "g1", "g1", "g2", "g2", "g3"]
    pred = [0.9, 0.5, 0.9, 0.2, 0.7, 0.4]
    true = [0.6, 1.0, 0.8, 0.3, 0.9, 0.5]
    out = metrics.best_of_candidates(pred, true, groups)
    # g1: tie at 0.9 between true 0.6 and 0.8 -> expected pick 0.7; oracle 1.0; random 0.8
    # g2: pick 0.9 = oracle; random 0.6 ; g3 has one candidate and is left out
    assert out["n_groups"] == 2
    assert out["pick"] == approx((0.7 + 0.9) / 2)
    assert out["oracle"] == approx((1.0 + 0.9) / 2)
    assert out["random"] == approx((0.8 + 0.6) / 2)
    assert out["hit_rate"] == approx(0.5)
    assert metrics.best_of_candidates([0.5], [0.5], ["x"])["pick"] is None
    # A constant predictor picks at random: its pick equals the random baseline exactly.
    const = metrics.best_of_candidates([0.3] * 5, true[:5], groups[:5])
    assert const["pick"] == approx(const["random"])


def test_interval_coverage_skips_samples_without_interval():
    out = metrics.interval_coverage([0.5, np.nan, 0.0], [0.8, np.nan, 0.2], [0.7, 0.1, 0.3])
    assert out == {"n": 2, "coverage": approx(0.5), "mean_width": approx(0.25)}
    assert metrics.interval_coverage([np.nan], [np.nan], [0.5])["coverage"] is None
