"""Candidate masks for one frame: the perturbations that make MQ-RAVSBench's test samples.

Each candidate is a :class:`~auditor_lite.data.writer.MaskSpec` whose ``iou_to_gt`` is exactly
``mask_iou(candidate, gt)`` and whose action is :func:`~auditor_lite.data.schema.action_from_iou`.
The definitions and IoU bands are documented for users in ``docs/candidates.md``.

How a band is hit exactly: every ranked perturbation is an *ordering* of pixels (GT pixels for
cutout/erode, background pixels for dilate) plus a count ``n`` of pixels to remove or add. Removing
``n`` of the GT's ``A`` pixels gives IoU ``(A - n) / A``; adding ``n`` gives ``A / (A + n)``. Both are
monotone in ``n``, so the ``n`` nearest a target IoU inside the band is found by bisection and the
candidate takes exactly the first ``n`` pixels of the ordering (no threshold ties). Orderings:

- erode: distance to the background (``distance_transform_edt``) plus smooth noise, so the boundary
  recedes unevenly like a real segmenter's; smallest first.
- dilate: distance from the GT plus smooth noise; smallest first.
- cutout: a half-plane (projection on a random direction), a wedge (angle around the centroid) or a
  bite (distance from a boundary point), each removing one contiguous chunk.

Only the ``rng`` passed in is used, so a seed fixes every candidate.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import numpy as np
from scipy import ndimage

from auditor_lite.data.schema import action_from_iou
from auditor_lite.data.writer import MaskSpec

# rank 1 = Hard (a subtle error, high IoU), rank 2 = Medium. 0.70 belongs to rank 1: the rank-2 band
# is half-open at the top so that every IoU has one rank.
RANK_IOU_BANDS = {1: (0.70, 0.90), 2: (0.45, 0.70)}
RANKED_PERTURBATIONS = ("cutout", "erode", "dilate")
# A merge that adds under ~11% of the GT's area would be labelled "accept" (IoU > 0.9), which the
# spec does not allow for merge: merges must stay at or below this IoU.
MERGE_MAX_IOU = 0.90
# A full_neg is "the mask of a wrong object (IoU about 0)". Amodal or overlapping objects can make it
# larger; above this it would be a reject sharing the IoU of revisions, so it is skipped instead.
FULL_NEG_MAX_IOU = 0.25
MAX_FULL_NEGS = 3
NOISE_CELL_PX = 12  # spatial scale of the boundary wobble of erode/dilate/bite
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

# Candidates that could not be made without mislabelling, by setting ("erode_r1", "full_neg", ...).
# Process-local: a generator with worker processes should call pop_skip_counts() in each worker.
_skip_counts: Counter = Counter()


def pop_skip_counts() -> Counter:
    """Return the skipped-candidate counts accumulated in this process and reset them."""
    counts = Counter(_skip_counts)
    _skip_counts.clear()
    return counts


def _count_skips(setting: str, count: int) -> None:
    if count > 0:
        _skip_counts[setting] += count


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """``|a & b| / |a | b|``; 0.0 when both masks are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask_iou: shapes differ, {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def in_band(iou: float, rank: int) -> bool:
    """Whether ``iou`` lies in the rank's band, also after the 4-decimal rounding of the JSON."""
    low, high = RANK_IOU_BANDS[rank]
    inclusive_top = rank == 1
    return all(low <= v and (v <= high if inclusive_top else v < high) for v in (iou, round(iou, 4)))


def _label_survives_rounding(iou: float, mask_type: str) -> bool:
    # A reader recomputing the action from the written 4-decimal IoU must get the same action.
    return action_from_iou(iou, mask_type) == action_from_iou(round(iou, 4), mask_type)


def _spec(frame: int, mask_type: str, rank: int, mask: np.ndarray, gt: np.ndarray) -> MaskSpec:
    iou = mask_iou(mask, gt)
    return MaskSpec(frame=frame, mask_type=mask_type, rank=rank, iou_to_gt=float(iou),
                    action=action_from_iou(iou, mask_type), mask=mask)


def _components(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=_EIGHT_CONNECTED)[1]


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise of about unit scale varying over ~NOISE_CELL_PX pixels (bilinear lattice)."""
    grid = (max(2, math.ceil(shape[0] / NOISE_CELL_PX) + 1), max(2, math.ceil(shape[1] / NOISE_CELL_PX) + 1))
    coarse = rng.standard_normal(grid)
    return ndimage.zoom(coarse, (shape[0] / grid[0], shape[1] / grid[1]), order=1, grid_mode=True,
                        mode="nearest")[: shape[0], : shape[1]]


def _first_true(predicate: Callable[[int], bool], low: int, high: int) -> int:
    """Smallest n in [low, high] with predicate(n), for a predicate monotone False..True; high+1 if none."""
    while low <= high:
        mid = (low + high) // 2
        if predicate(mid):
            high = mid - 1
        else:
            low = mid + 1
    return low


def _pick_count(iou_of: Callable[[int], float], n_max: int, rank: int, target: float) -> int | None:
    """The n in 1..n_max whose IoU (decreasing in n) is nearest ``target`` within the band, or None."""
    low, high = RANK_IOU_BANDS[rank]
    first = _first_true(lambda n: iou_of(n) <= high if rank == 1 else iou_of(n) < high, 1, n_max)
    last = _first_true(lambda n: iou_of(n) < low, 1, n_max) - 1
    # Rounding to 4 decimals can push an endpoint out of the band: step inwards until it holds.
    while first <= last and not in_band(iou_of(first), rank):
        first += 1
    while last >= first and not in_band(iou_of(last), rank):
        last -= 1
    if first > last:
        return None
    nearest = _first_true(lambda n: iou_of(n) <= target, first, last)
    if nearest > last or (nearest > first and iou_of(nearest - 1) - target < target - iou_of(nearest)):
        nearest -= 1
    # Within 5e-5 of the 0.6 action threshold the written IoU would imply the other action.
    for n in (nearest, nearest - 1, nearest + 1):
        if first <= n <= last and _label_survives_rounding(iou_of(n), "cutout"):
            return n
    return None


class _FrameGeometry:
    """Per-frame quantities shared by all candidates of the frame (distance fields, pixel lists)."""

    def __init__(self, gt: np.ndarray):
        self.gt = gt
        self.shape = gt.shape
        self.area = int(np.count_nonzero(gt))
        self.gt_index = np.flatnonzero(gt)
        self.bg_index = np.flatnonzero(~gt)
        self.depth = ndimage.distance_transform_edt(gt).ravel()[self.gt_index]
        self.distance_out = ndimage.distance_transform_edt(~gt)
        self.gt_components = _components(gt)
        ys, xs = np.divmod(self.gt_index, self.shape[1])
        self.ys, self.xs = ys.astype(np.float64), xs.astype(np.float64)
        # Pixels touching the background; a GT filling the frame has none, so all pixels qualify.
        self.boundary_index = np.flatnonzero(self.depth < 1.5)
        if len(self.boundary_index) == 0:
            self.boundary_index = np.arange(self.area)

    def remove(self, order_score: np.ndarray, n: int) -> np.ndarray:
        """The GT without the ``n`` pixels of smallest ``order_score`` (one score per GT pixel)."""
        mask = self.gt.copy()
        mask.ravel()[self.gt_index[np.argpartition(order_score, n - 1)[:n]]] = False
        return mask

    def add(self, order_score: np.ndarray, n: int) -> np.ndarray:
        """The GT plus the ``n`` background pixels of smallest ``order_score``."""
        mask = self.gt.copy()
        mask.ravel()[self.bg_index[np.argpartition(order_score, n - 1)[:n]]] = True
        return mask


def _removal_orders(kind: str, geo: _FrameGeometry, rng: np.random.Generator):
    """Yield (score per GT pixel, lowest removed first; whether it is an erosion) for ``kind``.

    Later yields are fallbacks, tried when an erosion fragments the object.
    """
    if kind == "erode":
        amplitude = rng.uniform(0.3, 1.5)
        # Smaller wobble on retries: thin shapes fragment under a strong one.
        for scale in (1.0, 0.3, 0.01):
            noise = _smooth_noise(geo.shape, rng).ravel()[geo.gt_index]
            yield geo.depth + amplitude * scale * noise, True
        return
    shapes = ["half_plane", "wedge", "bite"]
    rng.shuffle(shapes)
    for shape in shapes:
        if shape == "half_plane":
            angle = rng.uniform(0, 2 * np.pi)
            yield -(geo.xs * np.cos(angle) + geo.ys * np.sin(angle)), False
        elif shape == "wedge":
            direction = rng.uniform(-np.pi, np.pi)
            angles = np.arctan2(geo.ys - geo.ys.mean(), geo.xs - geo.xs.mean())
            yield np.abs(np.angle(np.exp(1j * (angles - direction)))), False
        else:
            start = geo.boundary_index[rng.integers(len(geo.boundary_index))]
            distance = np.hypot(geo.ys - geo.ys[start], geo.xs - geo.xs[start])
            noise = _smooth_noise(geo.shape, rng).ravel()[geo.gt_index]
            yield distance + 0.15 * max(1.0, distance.max()) * noise, False


def _erosion_components(geo: _FrameGeometry, n: int) -> int:
    """How many pieces plain (noise-free) erosion leaves around the depth where ``n`` pixels go.

    Eroding a shape with thin parts legitimately splits it; the noisy erosion may split it as much
    as the plain one does at the neighbouring depth levels, and no more.
    """
    level = np.partition(geo.depth, n - 1)[n - 1]
    deeper = geo.gt.copy()
    deeper.ravel()[geo.gt_index[geo.depth <= level]] = False
    shallower = geo.gt.copy()
    shallower.ravel()[geo.gt_index[geo.depth < level]] = False
    return max(geo.gt_components, _components(deeper), _components(shallower))


def _ranked_candidate(kind: str, rank: int, geo: _FrameGeometry, rng: np.random.Generator,
                      frame: int) -> MaskSpec | None:
    low, high = RANK_IOU_BANDS[rank]
    target = rng.uniform(low, high)
    area = geo.area
    if kind == "dilate":
        amplitude = rng.uniform(0.3, 1.5)
        outside = geo.distance_out.ravel()[geo.bg_index]
        n = _pick_count(lambda k: area / (area + k), len(geo.bg_index), rank, target)
        if n is None:
            return None  # the frame is too small to grow the GT that much: no ordering helps
        for scale in (1.0, 0.3, 0.01):  # smaller wobble on retries, as for erode
            noise = _smooth_noise(geo.shape, rng).ravel()[geo.bg_index]
            mask = geo.add(outside + amplitude * scale * noise, n)
            if _components(mask) <= geo.gt_components:
                return _checked(_spec(frame, kind, rank, mask, geo.gt))
        return None
    n = _pick_count(lambda k: (area - k) / area, area - 1, rank, target)
    if n is None:
        return None  # too few pixels for any removal count to land in the band
    for order, is_erosion in _removal_orders(kind, geo, rng):
        mask = geo.remove(order, n)
        if is_erosion and _components(mask) > _erosion_components(geo, n):
            continue  # the wobble cut through a thin part: chunks missing look like a cutout
        return _checked(_spec(frame, kind, rank, mask, geo.gt))
    return None


def _checked(spec: MaskSpec) -> MaskSpec:
    # The count was chosen from the IoU formula; this guards the formula against the actual mask.
    if not in_band(spec.iou_to_gt, spec.rank):
        raise AssertionError(f"{spec.mask_type} r{spec.rank} IoU {spec.iou_to_gt} left its band")
    return spec


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) without wrapping; what leaves the frame is lost."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
        mask[max(-dy, 0): h + min(-dy, 0), max(-dx, 0): w + min(-dx, 0)]
    return out


def _shifted_copy(mask: np.ndarray, gt: np.ndarray, rng: np.random.Generator,
                  tries: int = 12) -> np.ndarray | None:
    """A copy of ``mask`` moved away from the GT (least overlap of ``tries`` random moves, at most
    FULL_NEG_MAX_IOU), keeping at least half of it in the frame; None if no move qualifies."""
    area = np.count_nonzero(mask)
    h, w = mask.shape
    best, best_iou = None, FULL_NEG_MAX_IOU
    for _ in range(tries):
        dy, dx = int(rng.integers(-h // 2, h // 2 + 1)), int(rng.integers(-w // 2, w // 2 + 1))
        moved = _shift(mask, dy, dx)
        if np.count_nonzero(moved) * 2 < area or np.array_equal(moved, mask):
            continue
        iou = mask_iou(moved, gt)
        if iou <= best_iou:
            best, best_iou = moved, iou
            if iou == 0.0:
                break
    return best


def _adjacent_blob(geo: _FrameGeometry, rng: np.random.Generator) -> np.ndarray:
    """An ellipse centred just outside the GT boundary: a plausible neighbouring region to merge."""
    h, w = geo.shape
    start = geo.boundary_index[rng.integers(len(geo.boundary_index))]
    cy, cx = geo.ys[start] - geo.ys.mean(), geo.xs[start] - geo.xs.mean()
    norm = math.hypot(cy, cx) or 1.0
    size = math.sqrt(geo.area) * rng.uniform(0.35, 0.8) + 1.5
    centre_y = geo.ys[start] + cy / norm * size * 0.6
    centre_x = geo.xs[start] + cx / norm * size * 0.6
    ry, rx = size * rng.uniform(0.6, 1.2), size * rng.uniform(0.6, 1.2)
    yy, xx = np.ogrid[:h, :w]
    return ((yy - centre_y) / ry) ** 2 + ((xx - centre_x) / rx) ** 2 <= 1.0


def _merge_candidates(count: int, geo: _FrameGeometry, others: list[np.ndarray],
                      rng: np.random.Generator, frame: int) -> list[MaskSpec]:
    """GT united with a whole other object, the part of one nearest the GT, or an adjacent blob."""
    specs = []
    plans = ["whole_other", "near_part", "blob"] if others else ["blob"] * count
    for plan in plans * count:  # later plans are fallbacks when an earlier one adds too little
        if len(specs) == count:
            break
        if plan == "blob":
            extra = _adjacent_blob(geo, rng)
        else:
            other = others[int(rng.integers(len(others)))]
            extra = other
            if plan == "near_part":
                pixels = np.flatnonzero(other)
                keep = max(1, int(round(len(pixels) * rng.uniform(0.3, 0.9))))
                nearest = np.argpartition(geo.distance_out.ravel()[pixels], keep - 1)[:keep]
                extra = np.zeros_like(other)
                extra.ravel()[pixels[nearest]] = True
        spec = _spec(frame, "merge", 1, geo.gt | extra, geo.gt)
        if spec.iou_to_gt <= MERGE_MAX_IOU and _label_survives_rounding(spec.iou_to_gt, "merge"):
            specs.append(spec)
    _count_skips("merge", count - len(specs))
    return specs


def _full_neg_candidates(geo: _FrameGeometry, others: list[np.ndarray], rng: np.random.Generator,
                         frame: int) -> list[MaskSpec]:
    """Other objects' masks, others[0] first; shifted copies when fewer than two objects exist."""
    wrong = [o for o in others if mask_iou(o, geo.gt) <= FULL_NEG_MAX_IOU][:MAX_FULL_NEGS]
    _count_skips("full_neg", min(len(others), MAX_FULL_NEGS) - len(wrong))
    # With one object (or none) a moved copy of it (or of the GT's shape) stands for a wrong object.
    template = wrong[0] if wrong else geo.gt
    while len(wrong) < 2:
        moved = _shifted_copy(template, geo.gt, rng)
        if moved is None:
            _count_skips("full_neg", 2 - len(wrong))
            break
        wrong.append(moved)
    return [_spec(frame, "full_neg", 1, mask, geo.gt) for mask in wrong]


def _check_masks(gt: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    gt = np.asarray(gt, dtype=bool)
    if gt.ndim != 2:
        raise ValueError(f"make_candidates: gt must be a 2-D mask, got shape {gt.shape}")
    checked = []
    for i, other in enumerate(others):
        other = np.asarray(other, dtype=bool)
        if other.shape != gt.shape:
            raise ValueError(f"make_candidates: others[{i}] has shape {other.shape}, gt has {gt.shape}")
        if other.any():  # an object out of view in this frame offers no mask
            checked.append(other)
    return gt, checked


def make_candidates(gt: np.ndarray, others: list[np.ndarray], rng: np.random.Generator,
                    frame: int) -> list[MaskSpec]:
    """About 13 candidates for one frame of one expression (see docs/candidates.md).

    ``others`` are the masks of the other objects in the frame, most confusable first (others[0]
    becomes the first full_neg). Order: perfect, cutout/erode/dilate at rank 1 then 2, merges,
    full_negs, null. A ranked candidate whose band cannot be reached is skipped, never mislabelled;
    skips are counted (:func:`pop_skip_counts`).
    """
    gt, others = _check_masks(gt, others)
    if not gt.any():
        raise ValueError(f"make_candidates: the ground truth of frame {frame} is empty; an expression "
                         "whose object is absent is a null expression (make_null_expression_candidates)")
    geo = _FrameGeometry(gt)
    specs = [_spec(frame, "perfect", 1, gt.copy(), gt)]
    for kind in RANKED_PERTURBATIONS:
        for rank in (1, 2):
            spec = _ranked_candidate(kind, rank, geo, rng, frame)
            if spec is None:
                _count_skips(f"{kind}_r{rank}", 1)
            else:
                specs.append(spec)
    full_negs = _full_neg_candidates(geo, others, rng, frame)
    # Two merges when three distractors exist (13 candidates), else three merges 3 times in 4, so
    # a frame averages close to upstream's 12.7 candidates per expression.
    merges = 2 if len(full_negs) >= MAX_FULL_NEGS else 2 + int(rng.random() < 0.75)
    specs += _merge_candidates(merges, geo, others, rng, frame)
    specs += full_negs
    specs.append(_spec(frame, "null", 1, np.zeros_like(gt), gt))
    return specs


def make_null_expression_candidates(others: list[np.ndarray], rng: np.random.Generator,
                                    frame: int) -> list[MaskSpec]:
    """Candidates for an expression that refers to nothing: every object is a wrong answer.

    The ground truth is empty, so every object's mask is a full_neg with IoU 0 (reject), plus one
    empty ``null`` candidate (IoU 0 by the empty-union convention, reject). ``rng`` is accepted for
    symmetry with :func:`make_candidates`; no choice here is random.
    """
    if not others:
        raise ValueError("make_null_expression_candidates: need at least one object mask to size the null mask")
    shape = np.asarray(others[0]).shape
    empty = np.zeros(shape, dtype=bool)
    _, kept = _check_masks(empty, others)
    specs = [_spec(frame, "full_neg", 1, mask, empty) for mask in kept]
    specs.append(_spec(frame, "null", 1, empty.copy(), empty))
    return specs
