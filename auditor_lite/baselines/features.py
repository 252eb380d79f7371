"""Hand-made geometry features of a candidate mask alone (no frame, no audio, no text).

These are what a mask-only quality predictor can see: how big the mask is, how many pieces and holes
it has, how ragged or straight its boundary is. They separate erode (smooth, compact) from dilate
(swollen, rounded corners) from cutout (a straight cut edge, a missing chunk) reasonably well, and
they cannot tell a perfect mask of the wrong object (full_neg) from a perfect mask: that gap is what
the multimodal auditor must close.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FEATURE_NAMES = (
    "area_frac", "n_components", "largest_component_frac", "n_holes", "hole_frac",
    "perimeter_ratio", "compactness", "bbox_fill", "bbox_aspect", "centroid_x", "centroid_y",
    "open_loss", "close_gain", "straight_edge_frac", "border_touch", "is_empty",
)
_DISK3 = ndimage.generate_binary_structure(2, 1)


def _perimeter(mask: np.ndarray) -> int:
    """Number of mask pixels with a 4-neighbour outside the mask."""
    inner = ndimage.binary_erosion(mask, structure=_DISK3, border_value=0)
    return int(mask.sum() - inner.sum())


def _straight_edge_fraction(mask: np.ndarray) -> float:
    """Share of boundary pixels that lie on long horizontal/vertical/diagonal runs.

    A cutout made by a straight cut leaves a long straight edge; drawn objects rarely have one.
    """
    edge = mask & ~ndimage.binary_erosion(mask, structure=_DISK3, border_value=0)
    total = edge.sum()
    if total == 0:
        return 0.0
    straight = np.zeros_like(edge)
    for kernel in (np.ones((1, 7), bool), np.ones((7, 1), bool), np.eye(7, dtype=bool),
                   np.fliplr(np.eye(7, dtype=bool))):
        straight |= ndimage.binary_opening(edge, structure=kernel)
    return float(straight.sum() / total)


def mask_features(mask: np.ndarray) -> np.ndarray:
    """Feature vector (FEATURE_NAMES order) of one boolean HxW mask."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    area = int(mask.sum())
    if area == 0:
        out = np.zeros(len(FEATURE_NAMES), np.float32)
        out[FEATURE_NAMES.index("is_empty")] = 1.0
        return out
    labels, n_comp = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    filled = ndimage.binary_fill_holes(mask)
    _, n_holes = ndimage.label(filled & ~mask)
    ys, xs = np.nonzero(mask)
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    perim = _perimeter(mask)
    opened = ndimage.binary_opening(mask, structure=_DISK3, iterations=2)
    closed = ndimage.binary_closing(mask, structure=_DISK3, iterations=2)
    border = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
    feats = {
        "area_frac": area / (h * w),
        "n_components": float(n_comp),
        "largest_component_frac": sizes.max() / area,
        "n_holes": float(n_holes),
        "hole_frac": (filled.sum() - area) / max(filled.sum(), 1),
        "perimeter_ratio": perim / np.sqrt(area),
        "compactness": 4 * np.pi * area / max(perim, 1) ** 2,
        "bbox_fill": area / (bh * bw),
        "bbox_aspect": bw / bh,
        "centroid_x": xs.mean() / w,
        "centroid_y": ys.mean() / h,
        "open_loss": (area - opened.sum()) / area,
        "close_gain": (closed.sum() - area) / area,
        "straight_edge_frac": _straight_edge_fraction(mask),
        "border_touch": float(border),
        "is_empty": 0.0,
    }
    return np.array([feats[name] for name in FEATURE_NAMES], np.float32)


def track_features(masks: list[np.ndarray]) -> np.ndarray:
    """Temporal features of one candidate followed across frames (video mode).

    Area change and frame-to-frame overlap: a segmenter's error that flickers is less trustworthy
    than one that is stable.
    """
    areas = np.array([m.sum() for m in masks], np.float64)
    overlaps = []
    for a, b in zip(masks[:-1], masks[1:]):
        union = np.logical_or(a, b).sum()
        overlaps.append(np.logical_and(a, b).sum() / union if union else 1.0)
    mean_area = areas.mean() if len(areas) else 0.0
    return np.array([
        areas.std() / mean_area if mean_area > 0 else 0.0,
        float(np.mean(overlaps)) if overlaps else 1.0,
        float(np.min(overlaps)) if overlaps else 1.0,
        float(len(masks)),
    ], np.float32)


TRACK_FEATURE_NAMES = ("area_cv", "mean_frame_overlap", "min_frame_overlap", "n_frames")
