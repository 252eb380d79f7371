"""Would a decision rule tuned for macro F2 lift F2-M / F2-A without touching the model?

The runtime reports the argmax of the type and action heads. Macro F2 weighs recall four times
over precision, so per-class offsets on the log-probabilities (a cost-sensitive decision rule) can
beat the argmax. This fits them on one benchmark's test_s (coordinate ascent over a grid, never on
the evaluation benchmark) and reports what they do on another, beside two rule-based actions (the
spec's IoU rule from the predicted type and IoU). Offline, on predictions JSONL that carry
``type_probs`` / ``action_probs`` (what ``audit --bench`` writes).

    auditor-lite data synth --out runs/dec-cal --clips 2000 --seed 4242
    cp -al runs/dec-cal runs/dec-cal-nosc && rm -r runs/dec-cal-nosc/synth_sidecar
    auditor-lite audit --bench runs/dec-cal-nosc --mode image --out runs/dec-cal.int8.jsonl
    auditor-lite audit --bench runs/eval-fresh-nosc --mode image --out runs/eval.int8.jsonl
    python bench/experiments/decision_offsets.py --fit runs/dec-cal-nosc runs/dec-cal.int8.jsonl \
        --check runs/eval-fresh-nosc runs/eval.int8.jsonl
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import ACTIONS, MASK_TYPES
from auditor_lite.eval import metrics
from auditor_lite.eval.protocol import ground_truth_table

GRID = np.linspace(-3.0, 3.0, 25)


def load(bench: str, pred_path: str, split: str):
    """Ground truth of (split, image) and the predictions' probabilities and IoU in its row order."""
    gt = ground_truth_table(Benchmark(bench).records(split, "image"), split, "image")
    preds = {}
    with open(pred_path, encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            if item["split"] == split:
                preds[(item["uid"], item["frame"], item["cand_id"])] = item
    rows = [preds[key] for key in gt.keys()]
    type_probs = np.array([[r["type_probs"][t] for t in MASK_TYPES] for r in rows])
    action_probs = np.array([[r["action_probs"][a] for a in ACTIONS] for r in rows])
    return gt, type_probs, action_probs, np.array([r["iou"] for r in rows])


def macro_f2_types(gt, pred) -> float:
    labels = metrics.mask_type_labels(gt.mask_type, pred, MASK_TYPES)
    return metrics.fbeta_summary(gt.mask_type, pred, labels)["macro_f"]


def macro_f2_actions(gt, pred) -> float:
    return metrics.fbeta_summary(gt.action, pred, metrics.action_labels(gt.action, ACTIONS))["macro_f"]


def decide(probs: np.ndarray, offsets: np.ndarray, names) -> np.ndarray:
    return np.array(names, dtype=object)[(np.log(probs + 1e-6) + offsets).argmax(1)]


def fit_offsets(gt, probs, names, score, rounds: int = 3) -> np.ndarray:
    """Coordinate ascent: each class's offset over GRID in turn, kept where the score improves."""
    offsets = np.zeros(len(names))
    best = score(gt, decide(probs, offsets, names))
    for _ in range(rounds):
        for c in range(len(names)):
            for value in GRID:
                trial = offsets.copy()
                trial[c] = value
                got = score(gt, decide(probs, trial, names))
                if got > best + 1e-9:
                    best, offsets = got, trial
    return offsets


def rule_actions(types, iou) -> np.ndarray:
    """The spec's action rule from a type and an IoU (docs/mq-ravsbench.md section 2)."""
    def one(t, v):
        if t == "perfect":
            return "accept"
        if t in ("full_neg", "null") or v <= 0:
            return "reject"
        return "accept" if v > 0.9 else "minor revision" if v > 0.6 else "major revision"
    return np.array([one(t, v) for t, v in zip(types, iou)], dtype=object)


def report(name: str, data, type_offsets, action_offsets) -> None:
    gt, type_probs, action_probs, iou = data
    argmax_types = decide(type_probs, np.zeros(len(MASK_TYPES)), MASK_TYPES)
    argmax_actions = decide(action_probs, np.zeros(len(ACTIONS)), ACTIONS)
    tuned_types = decide(type_probs, type_offsets, MASK_TYPES)
    full_neg = gt.mask_type == "full_neg"
    print(f"{name}: F2-M {100 * macro_f2_types(gt, argmax_types):.1f} -> {100 * macro_f2_types(gt, tuned_types):.1f}"
          f" | F2-A {100 * macro_f2_actions(gt, argmax_actions):.1f} -> "
          f"{100 * macro_f2_actions(gt, decide(action_probs, action_offsets, ACTIONS)):.1f}"
          f" (spec rule from the argmax type {100 * macro_f2_actions(gt, rule_actions(argmax_types, iou)):.1f})"
          f" | full_neg recall {np.mean(argmax_types[full_neg] == 'full_neg'):.3f} -> "
          f"{np.mean(tuned_types[full_neg] == 'full_neg'):.3f}")


def full_neg_sweep(name: str, data) -> None:
    """The full_neg offset alone: its recall against the perfect masks' (the referent's trade-off)."""
    gt, type_probs, _, _ = data
    column = MASK_TYPES.index("full_neg")
    for value in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0):
        offsets = np.zeros(len(MASK_TYPES))
        offsets[column] = value
        pred = decide(type_probs, offsets, MASK_TYPES)
        print(f"{name} full_neg offset {value:+.1f}: F2-M {100 * macro_f2_types(gt, pred):.1f}, full_neg recall "
              f"{np.mean(pred[gt.mask_type == 'full_neg'] == 'full_neg'):.3f}, perfect recall "
              f"{np.mean(pred[gt.setting == 'perfect'] == 'perfect'):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", nargs=2, metavar=("BENCH", "PRED"), required=True)
    parser.add_argument("--check", nargs=2, metavar=("BENCH", "PRED"), action="append", default=[])
    args = parser.parse_args()
    fit = load(*args.fit, "test_s")
    type_offsets = fit_offsets(fit[0], fit[1], MASK_TYPES, macro_f2_types)
    action_offsets = fit_offsets(fit[0], fit[2], ACTIONS, macro_f2_actions)
    print("type offsets:", {t: round(float(o), 2) for t, o in zip(MASK_TYPES, type_offsets)})
    print("action offsets:", {a: round(float(o), 2) for a, o in zip(ACTIONS, action_offsets)})
    for bench, pred in [tuple(args.fit)] + [tuple(c) for c in args.check]:
        for split in ("test_s", "test_u"):
            report(f"{bench} {split}", load(bench, pred, split), type_offsets, action_offsets)
    for bench, pred in [tuple(args.fit)] + [tuple(c) for c in args.check]:
        full_neg_sweep(f"{bench} test_s", load(bench, pred, "test_s"))


if __name__ == "__main__":
    main()
