"""The predictions interchange format: one JSON object per line (docs/predictions.md).

A prediction is keyed ``(uid, frame, cand_id)``, the same key the benchmark reader gives every
candidate, so any tool's output joins the ground truth without knowing how it was produced.
Reading validates every line and names ``file:line`` and the field on the first problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from auditor_lite.data.schema import ACTIONS, MASK_TYPES, DataError

PredictionKey = tuple[str, int, str]  # (uid, frame, cand_id)

REQUIRED_FIELDS = ("uid", "frame", "cand_id", "iou", "mask_type", "action")
OPTIONAL_FIELDS = ("type_probs", "action_probs", "iou_low", "iou_high", "method", "mode", "split")
PREDICTION_MODES = ("image", "video")
PREDICTION_SPLITS = ("test_s", "test_u")
# Probabilities written with a few decimals do not sum to exactly 1.
PROB_SUM_TOLERANCE = 1e-2


@dataclass
class Prediction:
    """One method's output for one candidate mask.

    ``iou``, ``mask_type`` and ``action`` may be ``None``: the method produced no usable value for
    that field (e.g. unparsable MQ-Auditor text); it is then scored like a missing prediction.
    ``mode`` / ``split``, when set, restrict the line to that mode / split of the benchmark.
    """

    uid: str
    frame: int
    cand_id: str
    iou: float | None
    mask_type: str | None
    action: str | None
    type_probs: dict[str, float] | None = None
    action_probs: dict[str, float] | None = None
    iou_low: float | None = None
    iou_high: float | None = None
    method: str | None = None
    mode: str | None = None
    split: str | None = None

    @property
    def key(self) -> PredictionKey:
        return (self.uid, self.frame, self.cand_id)

    def to_json(self) -> dict:
        """The JSONL object: required fields always, optional ones only when set."""
        out = {name: getattr(self, name) for name in REQUIRED_FIELDS}
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class _LineError(Exception):
    def __init__(self, field_name: str | None, message: str):
        super().__init__(message)
        self.field_name = field_name


def _number(obj: dict, name: str, *, nullable: bool = False) -> float | None:
    value = obj.get(name)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _LineError(name, f"must be a number, got {value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _LineError(name, f"must lie in [0, 1], got {value!r} (clip it when writing)")
    return float(value)


def _choice(obj: dict, name: str, allowed: tuple[str, ...], *, nullable: bool = False) -> str | None:
    value = obj.get(name)
    if value is None and nullable:
        return None
    if value not in allowed:
        raise _LineError(name, f"unknown value {value!r}; expected one of {', '.join(allowed)}")
    return value


def _probs(obj: dict, name: str, allowed: tuple[str, ...]) -> dict[str, float] | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise _LineError(name, "must be a non-empty object of class -> probability")
    out = {}
    for label, p in value.items():
        if label not in allowed:
            raise _LineError(name, f"unknown class {label!r}; expected among {', '.join(allowed)}")
        out[label] = _number(value, label)
    total = sum(out.values())
    if abs(total - 1.0) > PROB_SUM_TOLERANCE:
        raise _LineError(name, f"probabilities sum to {total:.4f}, not 1")
    return out


def _text(obj: dict, name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _LineError(name, f"must be a non-empty string, got {value!r}")
    return value


def parse_prediction(obj) -> Prediction:
    """Validate one decoded JSON object; raises ``_LineError`` naming the offending field."""
    if not isinstance(obj, dict):
        raise _LineError(None, f"expected a JSON object, got {type(obj).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in obj]
    if missing:
        raise _LineError(missing[0], f"missing required field(s) {', '.join(missing)}")
    unknown = sorted(set(obj) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:  # most often a typo ("mask-type"), which would otherwise be silently ignored
        raise _LineError(unknown[0], f"unknown field(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}")
    frame = obj["frame"]
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise _LineError("frame", f"must be a non-negative integer, got {frame!r}")
    low, high = _number(obj, "iou_low", nullable=True), _number(obj, "iou_high", nullable=True)
    if (low is None) != (high is None):
        raise _LineError("iou_low" if low is None else "iou_high",
                         "iou_low and iou_high must be given together")
    if low is not None and low > high:
        raise _LineError("iou_low", f"iou_low {low} is above iou_high {high}")
    return Prediction(
        uid=_text(obj, "uid", required=True), frame=frame,
        cand_id=_text(obj, "cand_id", required=True),
        iou=_number(obj, "iou", nullable=True),
        mask_type=_choice(obj, "mask_type", MASK_TYPES, nullable=True),
        action=_choice(obj, "action", ACTIONS, nullable=True),
        type_probs=_probs(obj, "type_probs", MASK_TYPES),
        action_probs=_probs(obj, "action_probs", ACTIONS),
        iou_low=low, iou_high=high, method=_text(obj, "method", required=False),
        mode=_choice(obj, "mode", PREDICTION_MODES, nullable=True),
        split=_choice(obj, "split", PREDICTION_SPLITS, nullable=True),
    )


def write_predictions(path, predictions: Iterable[Prediction | Mapping]) -> int:
    """Validate and write predictions as JSONL (parent directories created); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for index, item in enumerate(predictions):
            try:
                handle.write(prediction_line(item) + "\n")
            except _LineError as err:
                raise DataError(path, f"prediction {index}: {err}", err.field_name) from None
            count += 1
    return count


def prediction_line(item: Prediction | Mapping) -> str:
    """One validated JSONL line (no newline) of a prediction, exactly as :func:`write_predictions`
    writes it; a bad field raises an error whose ``field_name`` names it."""
    obj = item.to_json() if isinstance(item, Prediction) else dict(item)
    return json.dumps(parse_prediction(obj).to_json(), separators=(",", ":"))


def read_prediction_lines(path) -> list[tuple[int, Prediction]]:
    """Every prediction of a JSONL file with its line number; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "predictions file not found")
    out = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"line {line_no}: not valid JSON ({exc.msg})") from None
            try:
                out.append((line_no, parse_prediction(obj)))
            except _LineError as err:
                raise DataError(path, f"line {line_no}: {err}", err.field_name) from None
    return out


def index_predictions(lines: Iterable[tuple[int, Prediction]], path, mode: str | None = None,
                      split: str | None = None) -> dict[PredictionKey, Prediction]:
    """Key the lines that apply to ``mode`` / ``split`` (lines without them apply everywhere).

    The same key twice among the kept lines is an error: which one to score would be a guess.
    """
    out: dict[PredictionKey, Prediction] = {}
    first_line: dict[PredictionKey, int] = {}
    for line_no, pred in lines:
        if mode is not None and pred.mode not in (None, mode):
            continue
        if split is not None and pred.split not in (None, split):
            continue
        if pred.key in out:
            hint = "" if mode else " (lines of different modes? give each a \"mode\" field)"
            raise DataError(path, f"line {line_no}: duplicate prediction for {pred.key}, first "
                            f"given on line {first_line[pred.key]}{hint}", "cand_id")
        out[pred.key] = pred
        first_line[pred.key] = line_no
    return out


def read_predictions(path, mode: str | None = None,
                     split: str | None = None) -> dict[PredictionKey, Prediction]:
    """``(uid, frame, cand_id) -> Prediction`` for the lines that apply to ``mode`` / ``split``."""
    return index_predictions(read_prediction_lines(path), path, mode, split)


def method_name(lines: Iterable[tuple[int, Prediction]], path) -> str:
    """The table row name of a file: its lines' single ``method`` value, else the file stem."""
    names = sorted({pred.method for _, pred in lines if pred.method is not None})
    if len(names) > 1:
        raise DataError(path, f"the file mixes methods {', '.join(names)}; write one file per "
                        "method or name the row with --name", "method")
    return names[0] if names else Path(path).stem
