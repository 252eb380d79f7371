"""What an audit returns: one :class:`AuditResult` per candidate mask, and how it is worded.

The graph gives a raw IoU in [0, 1] and logits for the mask type and the action. The runtime
recalibrates the IoU and attaches a conformal interval when the model directory has a
``score_calibration.json`` (docs/artifact.md); without one, ``iou`` is the raw value and the
interval is ``None``. Probabilities are a softmax of the logits; the reported class is the argmax.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TYPE_PHRASES = {
    "perfect": "matches the referred object",
    "cutout": "looks cut out (part of the object missing)",
    "erode": "looks eroded (boundary too tight)",
    "dilate": "looks dilated (boundary too loose)",
    "merge": "looks merged with another object",
    "full_neg": "looks like the wrong object",
    "null": "looks empty",
}
ACTION_PHRASES = {
    "accept": "accept as is",
    "minor revision": "minor revision recommended",
    "major revision": "major revision recommended",
    "reject": "reject",
}
PROB_DECIMALS = 5


@dataclass(frozen=True)
class AuditResult:
    """The audit of candidate mask ``index`` (its position in the call's list of masks).

    ``iou`` is the (recalibrated) estimate of the mask's IoU with the unseen ground truth,
    ``[iou_low, iou_high]`` its conformal interval (``None`` without a score calibration),
    ``raw_iou`` the graph's own output. ``type_probs`` / ``action_probs`` map every class to its
    probability; ``mask_type`` / ``action`` are the most probable. ``empty`` flags an all-zero mask.
    """

    index: int
    iou: float
    iou_low: float | None
    iou_high: float | None
    mask_type: str
    type_probs: dict
    action: str
    action_probs: dict
    explanation: str
    raw_iou: float
    empty: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits, in float64 (stable: the row maximum is subtracted)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def explain(iou: float, low: float | None, high: float | None, mask_type: str, type_p: float,
            action: str, empty: bool) -> str:
    """One line a person can act on, e.g.
    ``IoU 0.62 [0.51, 0.73]: looks eroded (boundary too tight) (p=0.81); minor revision recommended``."""
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None else ""
    note = "; the mask is empty" if empty else ""
    return (f"IoU {iou:.2f}{interval}: {TYPE_PHRASES.get(mask_type, mask_type)} (p={type_p:.2f}); "
            f"{ACTION_PHRASES.get(action, action)}{note}")


def build_results(raw_iou: np.ndarray, type_logits: np.ndarray, action_logits: np.ndarray,
                  mask_types, actions, calibrate, empty: set[int] | frozenset = frozenset()
                  ) -> list[AuditResult]:
    """AuditResults from one graph call's outputs.

    ``calibrate(raw_iou, predicted_types) -> (iou, low, high)`` (arrays, ``low``/``high`` may be
    None) maps the raw IoU; it is the model directory's score calibration or the identity, and the
    predicted type of each mask picks its interval width where the calibration has one per type.
    """
    raw = np.clip(np.asarray(raw_iou, dtype=np.float64).reshape(-1), 0.0, 1.0)
    type_probs, action_probs = softmax(type_logits), softmax(action_logits)
    predicted = [mask_types[int(t)] for t in type_probs.argmax(axis=1)]
    iou, low, high = calibrate(raw, predicted)
    results = []
    for i in range(len(raw)):
        t, a = int(type_probs[i].argmax()), int(action_probs[i].argmax())
        lo = None if low is None else float(low[i])
        hi = None if high is None else float(high[i])
        results.append(AuditResult(
            index=i, iou=float(iou[i]), iou_low=lo, iou_high=hi,
            mask_type=mask_types[t],
            type_probs={c: round(float(p), PROB_DECIMALS) for c, p in zip(mask_types, type_probs[i])},
            action=actions[a],
            action_probs={c: round(float(p), PROB_DECIMALS) for c, p in zip(actions, action_probs[i])},
            explanation=explain(float(iou[i]), lo, hi, mask_types[t], float(type_probs[i, t]),
                                actions[a], i in empty),
            raw_iou=float(raw[i]), empty=i in empty))
    return results
