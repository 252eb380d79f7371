"""The score calibration a model directory ships (``score_calibration.json``), read and applied.

The recalibration map (knots of a monotone IoU map) and the conformal half-widths, one per predicted
mask type. Fitting them lives above the runtime, in :mod:`auditor_lite.calibration.score` (it needs
labelled data and scikit-learn); the runtime only reads and applies them, with numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor_lite.data.schema import DataError
from auditor_lite.jsonio import read_json

CONFORMAL_SCORE = "abs residual after recalibration"


@dataclass
class ScoreCalibration:
    """Knots of the recalibration map and the conformal half-width ``q`` at ``coverage``."""

    x: list[float]
    y: list[float]
    coverage: float
    q: float
    n: int  # conformal scores behind q
    method: str = "centred isotonic"
    fit_on: str = ""
    extra: dict = field(default_factory=dict)  # provenance and test-coverage reports
    # Mondrian intervals: a half-width per predicted mask type (its own conformal quantile); a
    # mask whose predicted type has none gets ``q``. Empty: one width for every mask.
    q_by_group: dict = field(default_factory=dict)

    def apply(self, raw_iou, groups=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return apply_score_calibration(raw_iou, self, groups)

    def to_json(self) -> dict:
        out = {"method": self.method, "fit_on": self.fit_on, "x": list(self.x), "y": list(self.y),
               "conformal": {"coverage": self.coverage, "q": self.q, "n": self.n,
                             "score": CONFORMAL_SCORE}}
        if self.q_by_group:
            out["conformal"]["q_by_predicted_type"] = dict(self.q_by_group)
        out.update(self.extra)
        return out

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def _knots(values, name: str, source) -> list[float]:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise DataError(source, "must be a list of numbers", name) from None
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise DataError(source, "must be a non-empty list of finite numbers", name)
    return array.tolist()


def parse_score_calibration(obj, source="score_calibration.json") -> ScoreCalibration:
    """Validate a decoded ``score_calibration.json``; DataError naming the field on a problem."""
    if not isinstance(obj, dict):
        raise DataError(source, f"expected a JSON object, got {type(obj).__name__}")
    x, y = _knots(obj.get("x"), "x", source), _knots(obj.get("y"), "y", source)
    if len(x) != len(y):
        raise DataError(source, f"x has {len(x)} knots, y has {len(y)}", "y")
    if np.any(np.diff(x) <= 0):
        raise DataError(source, "knots must be strictly increasing (np.interp needs it)", "x")
    if np.any(np.diff(y) < 0) or min(y) < 0 or max(y) > 1:
        raise DataError(source, "must be non-decreasing values in [0, 1] (a monotone IoU map)", "y")
    conformal = obj.get("conformal")
    if not isinstance(conformal, dict):
        raise DataError(source, "missing object {coverage, q, n}", "conformal")
    numbers = {}
    for name, low, high in (("coverage", 0.0, 1.0), ("q", 0.0, 1.0), ("n", 1, math.inf)):
        value = conformal.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise DataError(source, f"must be a number in [{low}, {high}], got {value!r}",
                            f"conformal.{name}")
        numbers[name] = value
    by_group = conformal.get("q_by_predicted_type", {})
    if not isinstance(by_group, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in by_group.values()):
        raise DataError(source, "must map mask types to numbers in [0, 1]", "conformal.q_by_predicted_type")
    extra = {k: v for k, v in obj.items() if k not in ("method", "fit_on", "x", "y", "conformal")}
    return ScoreCalibration(x=x, y=y, coverage=float(numbers["coverage"]), q=float(numbers["q"]),
                            n=int(numbers["n"]), method=str(obj.get("method", "centred isotonic")),
                            fit_on=str(obj.get("fit_on", "")), extra=extra,
                            q_by_group={str(k): float(v) for k, v in by_group.items()})


def load_score_calibration(path) -> ScoreCalibration:
    path = Path(path)
    return parse_score_calibration(read_json(path, DataError, missing="score calibration file not found"), path)


def apply_score_calibration(raw_iou, calib, groups=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw graph IoU -> ``(iou, low, high)`` float arrays: recalibrated IoU and its interval.

    ``calib`` is a :class:`ScoreCalibration` or the decoded JSON object; ``groups`` the predicted
    mask type of each row (used when the calibration has per-type widths). Torch-free, numpy only.
    """
    if not isinstance(calib, ScoreCalibration):
        calib = parse_score_calibration(calib)
    raw = np.asarray(raw_iou, dtype=np.float64)
    iou = np.interp(raw, calib.x, calib.y)  # clips outside the knots: out_of_bounds='clip'
    q = calib.q
    if calib.q_by_group and groups is not None:
        q = np.array([calib.q_by_group.get(str(g), calib.q) for g in groups], dtype=np.float64).reshape(iou.shape)
    low = np.clip(iou - q, 0.0, 1.0)
    high = np.clip(iou + q, 0.0, 1.0)
    return iou, low, high
