"""The accuracy gate: INT8 graphs against the FP32 graph on the benchmark, scored by the protocol.

Every graph runs through the public runtime path (``Auditor`` -> ``ClipSession.raw_outputs``, the
call that ``Auditor.audit`` formats), so the gate measures exactly what ships; each expression is
decoded once and its key-frame candidates audited in one call of N masks (image mode). Predictions are
scored with :mod:`auditor_lite.eval.protocol` and the headline numbers compared with FP32's:
a quantized graph fails when its overall IoU RMSE is higher by more than ``max_rmse_increase``
(0.01) or its macro F2-M / F2-A is lower by more than ``max_f2_drop`` points (1). Output-level
deltas (mean / max absolute difference of ``iou`` and of the logits, agreement of the argmax
type and action) are reported for every graph, and printed when the gate fails.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from auditor_lite.batch_audit import clip_audio
from auditor_lite.data.schema import ACTIONS, MASK_TYPES, ExpressionRecord
from auditor_lite.eval.predictions import Prediction, PredictionKey, write_predictions
from auditor_lite.eval.protocol import GroundTruthTable, evaluate_method
from auditor_lite.graph_io import HEAD_OUTPUTS
from auditor_lite.media import load_frames, load_mask

DEFAULT_MAX_RMSE_INCREASE = 0.01
DEFAULT_MAX_F2_DROP = 1.0  # F2 points (F2 x 100)
PROB_DECIMALS = 5


class GateFailed(RuntimeError):
    """The accuracy gate refused an INT8 graph: ``table`` holds the scores and deltas, ``hint`` what
    to do next; the message is both."""

    def __init__(self, table: str, hint: str):
        self.table, self.hint = table, hint
        super().__init__(f"{table}\n{hint}")


@dataclass
class GraphRun:
    """One graph's raw outputs over a list of candidates, in ``keys`` order."""

    keys: list[PredictionKey] = field(default_factory=list)
    true_iou: list[float] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def _stack(self, k: int, width: int | None) -> np.ndarray:
        if not self.chunks:
            return np.zeros((0,) if width is None else (0, width), np.float32)
        return np.concatenate([chunk[k] for chunk in self.chunks])

    @property
    def iou(self) -> np.ndarray:
        return self._stack(0, None)

    @property
    def type_logits(self) -> np.ndarray:
        return self._stack(1, len(MASK_TYPES))

    @property
    def action_logits(self) -> np.ndarray:
        return self._stack(2, len(ACTIONS))


def run_auditors(auditors: dict, records: list[ExpressionRecord], progress: bool = True,
                 label: str = "audit") -> dict[str, GraphRun]:
    """Audit every record's key-frame candidates with every auditor (``{name: Auditor}``), from
    one decode of the frames, the audio and the masks; raw outputs before the score calibration."""
    runs = {name: GraphRun() for name in auditors}
    for record in tqdm(records, desc=label, unit="expr", file=sys.stderr, disable=not progress):
        candidates = [c for c in record.candidates if c.frame == record.kfid]
        if not candidates:
            continue
        frames = load_frames(record.clip)
        audio = clip_audio(record)
        masks = [load_mask(c.mask_path) for c in candidates]
        keys = [(record.uid, c.frame, c.cand_id) for c in candidates]
        for name, auditor in auditors.items():
            session = auditor.session(record.exp, frames, audio, allow_silent=True)
            (iou, type_logits, action_logits), _ = session.raw_outputs(masks, record.kfid)
            run = runs[name]
            run.keys += keys
            run.true_iou += [c.iou_to_gt for c in candidates]
            run.uids += [record.uid] * len(candidates)
            run.chunks.append((iou.reshape(-1), type_logits, action_logits))
    return runs


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def to_predictions(run: GraphRun, method: str, split: str, mode: str, mask_types, actions,
                   iou=None, low=None, high=None) -> list[Prediction]:
    """Predictions JSONL records; ``iou``/``low``/``high`` override the raw IoU (recalibrated)."""
    iou = np.clip(run.iou if iou is None else iou, 0.0, 1.0)
    type_probs, action_probs = _softmax(run.type_logits), _softmax(run.action_logits)
    out = []
    for i, (uid, frame, cand_id) in enumerate(run.keys):
        extra = {} if low is None else {"iou_low": float(low[i]), "iou_high": float(high[i])}
        out.append(Prediction(
            uid=uid, frame=frame, cand_id=cand_id, iou=float(iou[i]),
            mask_type=mask_types[int(type_probs[i].argmax())], action=actions[int(action_probs[i].argmax())],
            type_probs={c: round(float(p), PROB_DECIMALS) for c, p in zip(mask_types, type_probs[i])},
            action_probs={c: round(float(p), PROB_DECIMALS) for c, p in zip(actions, action_probs[i])},
            method=method, mode=mode, split=split, **extra))
    return out


def headline(metrics: dict) -> dict:
    """Overall IoU RMSE and macro F2-M / F2-A in points (None where undefined)."""
    overall = metrics["overall"]

    def points(summary: dict):
        value = summary.get("macro_f")
        return None if value is None else 100.0 * value

    return {"rmse": overall["rmse"], "f2_m": points(overall["f2_m"]), "f2_a": points(overall["f2_a"])}


def output_deltas(reference: GraphRun, other: GraphRun) -> dict:
    """Per-output differences of ``other`` against ``reference`` (same candidates, same order)."""
    if reference.keys != other.keys:
        raise ValueError("output_deltas: the two runs cover different candidates")
    out = {}
    for name in HEAD_OUTPUTS:
        diff = np.abs(getattr(other, name).astype(np.float64) - getattr(reference, name))
        out[name] = {"mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
                     "max_abs_diff": float(diff.max()) if diff.size else 0.0}
    for name, field_name in (("type_agreement", "type_logits"), ("action_agreement", "action_logits")):
        a, b = getattr(reference, field_name), getattr(other, field_name)
        out[name] = float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))) if len(a) else 1.0
    return out


@dataclass
class GateReport:
    reference: str
    scores: dict[str, dict]       # graph -> headline()
    deltas: dict[str, dict]       # graph -> output_deltas()
    failures: dict[str, list[str]]  # graph -> reasons (empty: passed)
    thresholds: dict

    @property
    def passed(self) -> bool:
        return not any(self.failures.values())

    def to_json(self) -> dict:
        return {"reference": self.reference, "passed": self.passed, "thresholds": self.thresholds,
                "scores": self.scores, "deltas": self.deltas, "failures": self.failures}


def gate(runs: dict[str, GraphRun], reference: str, gt: GroundTruthTable, mask_types, actions,
         max_rmse_increase: float = DEFAULT_MAX_RMSE_INCREASE,
         max_f2_drop: float = DEFAULT_MAX_F2_DROP) -> GateReport:
    """Score every run with the protocol and check each non-reference run against the reference."""
    scores = {}
    for name, run in runs.items():
        predictions = {p.key: p for p in to_predictions(run, name, gt.split, gt.mode, mask_types, actions)}
        scores[name] = headline(evaluate_method(name, gt, predictions).metrics)
    base = scores[reference]
    failures, deltas = {}, {}
    for name, run in runs.items():
        if name == reference:
            continue
        deltas[name] = output_deltas(runs[reference], run)
        reasons, got = [], scores[name]
        if None not in (got["rmse"], base["rmse"]) and got["rmse"] - base["rmse"] > max_rmse_increase:
            rise = got["rmse"] - base["rmse"]
            reasons.append(f"IoU RMSE {got['rmse']:.4f} vs {base['rmse']:.4f} "
                           f"(+{rise:.4f} > {max_rmse_increase})")
        for key, title in (("f2_m", "F2-M"), ("f2_a", "F2-A")):
            if None not in (got[key], base[key]) and base[key] - got[key] > max_f2_drop:
                reasons.append(f"{title} {got[key]:.2f} vs {base[key]:.2f} (-{base[key] - got[key]:.2f} "
                               f"points > {max_f2_drop})")
        failures[name] = reasons
    return GateReport(reference=reference, scores=scores, deltas=deltas, failures=failures,
                      thresholds={"max_rmse_increase": max_rmse_increase, "max_f2_drop_points": max_f2_drop})


def format_gate(report: GateReport) -> str:
    """The score table, the per-output deltas, and the verdict of every quantized graph."""
    def number(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [f"{'graph':<16} {'IoU RMSE':>9} {'F2-M':>7} {'F2-A':>7}"]
    for name, s in report.scores.items():
        lines.append(f"{name:<16} {number(s['rmse'], '.4f'):>9} {number(s['f2_m'], '.2f'):>7} "
                     f"{number(s['f2_a'], '.2f'):>7}")
    lines.append(f"deltas against {report.reference}:")
    for name, d in report.deltas.items():
        diffs = "  ".join(f"{out} mean/max |d| {d[out]['mean_abs_diff']:.4f}/{d[out]['max_abs_diff']:.4f}"
                          for out in ("iou", "type_logits", "action_logits"))
        lines.append(f"  {name:<14} {diffs}  argmax agreement type {100 * d['type_agreement']:.1f}% "
                     f"action {100 * d['action_agreement']:.1f}%")
    for name, reasons in report.failures.items():
        lines.append(f"  {name}: " + ("PASS" if not reasons else "FAIL: " + "; ".join(reasons)))
    return "\n".join(lines)


def write_run_predictions(run: GraphRun, path, method: str, split: str, mode: str, mask_types,
                          actions, **override) -> Path:
    path = Path(path)
    write_predictions(path, to_predictions(run, method, split, mode, mask_types, actions, **override))
    return path
