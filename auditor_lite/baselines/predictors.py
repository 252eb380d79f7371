"""Baselines that ignore audio and text: the floor every auditor must beat.

- ``constant``: the train split's mean IoU, majority mask type and majority action for every sample.
- ``geometry``: a small gradient-boosting model over features of the candidate mask alone
  (:mod:`auditor_lite.baselines.features`), trained on the train split.
- ``temporal``: in video mode, the geometry model's outputs averaged along each candidate's track
  across frames, plus the track's temporal-stability features; in image mode it equals ``geometry``.

Each writes the predictions JSONL that ``auditor-lite eval`` scores (docs/predictions.md).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from auditor_lite.media import load_mask
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import ACTIONS, MASK_TYPES, ExpressionRecord
from auditor_lite.baselines.features import FEATURE_NAMES, mask_features

BASELINES = ("constant", "geometry", "temporal")


def _train_samples(bench: Benchmark) -> Iterator[tuple[ExpressionRecord, object]]:
    for record in bench.records("train", "train"):
        for cand in record.candidates:
            yield record, cand


def _prediction(record, cand, iou, mask_type, action, method, type_probs=None, action_probs=None):
    out = {"uid": record.uid, "frame": int(cand.frame), "cand_id": cand.cand_id,
           "iou": float(np.clip(iou, 0.0, 1.0)), "mask_type": mask_type, "action": action,
           "method": method}
    if type_probs is not None:
        out["type_probs"] = {t: round(float(p), 5) for t, p in type_probs.items()}
    if action_probs is not None:
        out["action_probs"] = {a: round(float(p), 5) for a, p in action_probs.items()}
    return out


class ConstantBaseline:
    name = "constant"

    def fit(self, bench: Benchmark) -> "ConstantBaseline":
        ious, types, actions = [], Counter(), Counter()
        for _, cand in _train_samples(bench):
            ious.append(cand.iou_to_gt)
            types[cand.mask_type] += 1
            actions[cand.action] += 1
        if not ious:
            raise ValueError(f"{bench.root}: the train split has no candidates to fit a baseline on")
        self.iou = float(np.mean(ious))
        self.mask_type = types.most_common(1)[0][0]
        self.action = actions.most_common(1)[0][0]
        return self

    def predict(self, records: Iterable[ExpressionRecord], mode: str) -> Iterator[dict]:
        for record in records:
            for cand in record.candidates:
                yield _prediction(record, cand, self.iou, self.mask_type, self.action, self.name)


class GeometryBaseline:
    """Mask-only features -> IoU regressor, mask-type and action classifiers."""

    name = "geometry"

    def __init__(self, seed: int = 0, max_train_masks: int | None = None):
        self.seed = seed
        # Mask features cost a few ms each (scipy morphology at full resolution); on a large
        # benchmark a seeded sample of the training candidates fits the same boosted trees.
        self.max_train_masks = max_train_masks

    def fit(self, bench: Benchmark, progress: bool = True) -> "GeometryBaseline":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        feats, ious, types, actions = [], [], [], []
        cands = [cand for _, cand in _train_samples(bench)]
        if self.max_train_masks is not None and len(cands) > self.max_train_masks:
            keep = np.random.default_rng(self.seed).choice(len(cands), self.max_train_masks, replace=False)
            cands = [cands[i] for i in np.sort(keep)]
        self.train_masks = len(cands)
        samples = tqdm(cands, desc="geometry: train features", unit="mask", disable=not progress)
        for cand in samples:
            feats.append(mask_features(load_mask(cand.mask_path)))
            ious.append(cand.iou_to_gt)
            types.append(MASK_TYPES.index(cand.mask_type))
            actions.append(ACTIONS.index(cand.action))
        if not feats:
            raise ValueError(f"{bench.root}: the train split has no candidates to fit a baseline on")
        x = np.stack(feats)
        self.iou_model = HistGradientBoostingRegressor(max_iter=200, random_state=self.seed)
        self.iou_model.fit(x, np.array(ious))
        self.type_model = HistGradientBoostingClassifier(max_iter=200, random_state=self.seed)
        self.type_model.fit(x, np.array(types))
        self.action_model = HistGradientBoostingClassifier(max_iter=200, random_state=self.seed)
        self.action_model.fit(x, np.array(actions))
        return self

    def _raw(self, x: np.ndarray):
        """IoU, full 7-way type probabilities and 4-way action probabilities for a feature batch."""
        iou = np.clip(self.iou_model.predict(x), 0.0, 1.0)
        tprob = np.zeros((len(x), len(MASK_TYPES)))
        tprob[:, self.type_model.classes_] = self.type_model.predict_proba(x)
        aprob = np.zeros((len(x), len(ACTIONS)))
        aprob[:, self.action_model.classes_] = self.action_model.predict_proba(x)
        return iou, tprob, aprob

    def _emit(self, record, cand, iou, tprob, aprob, method):
        return _prediction(record, cand, iou, MASK_TYPES[int(np.argmax(tprob))],
                           ACTIONS[int(np.argmax(aprob))], method,
                           dict(zip(MASK_TYPES, tprob)), dict(zip(ACTIONS, aprob)))

    def predict(self, records: Iterable[ExpressionRecord], mode: str) -> Iterator[dict]:
        for record in records:
            if not record.candidates:
                continue
            x = np.stack([mask_features(load_mask(c.mask_path)) for c in record.candidates])
            iou, tprob, aprob = self._raw(x)
            for i, cand in enumerate(record.candidates):
                yield self._emit(record, cand, iou[i], tprob[i], aprob[i], self.name)


class TemporalBaseline(GeometryBaseline):
    """Geometry outputs averaged along each candidate's track (same ``cand_id`` across frames).

    A track whose per-frame IoU estimates disagree is pulled toward its mean, and the track's
    frame-to-frame stability lowers the IoU of flickering candidates (unstable masks are rarely
    right). In image mode there is one frame per track and this equals ``geometry``.
    """

    name = "temporal"

    def predict(self, records: Iterable[ExpressionRecord], mode: str) -> Iterator[dict]:
        for record in records:
            if not record.candidates:
                continue
            masks = [load_mask(c.mask_path) for c in record.candidates]
            iou, tprob, aprob = self._raw(np.stack([mask_features(m) for m in masks]))
            tracks: dict[str, list[int]] = defaultdict(list)
            for i, cand in enumerate(record.candidates):
                tracks[cand.cand_id].append(i)
            for members in tracks.values():
                members.sort(key=lambda i: record.candidates[i].frame)
                stability = _track_stability([masks[i] for i in members])
                t_iou = float(np.mean(iou[members])) * stability
                t_prob, a_prob = tprob[members].mean(0), aprob[members].mean(0)
                for i in members:
                    yield self._emit(record, record.candidates[i], t_iou, t_prob, a_prob,
                                     self.name)


def _track_stability(masks: list[np.ndarray]) -> float:
    """Mean frame-to-frame IoU of a track, softened: 1.0 for a steady mask, lower if it flickers."""
    if len(masks) < 2:
        return 1.0
    overlaps = []
    for a, b in zip(masks[:-1], masks[1:]):
        union = np.logical_or(a, b).sum()
        overlaps.append(np.logical_and(a, b).sum() / union if union else 1.0)
    # Objects move between frames, so even a perfect track overlaps < 1; only penalise large drops.
    return float(np.clip(0.5 + np.mean(overlaps), 0.0, 1.0))


def make_baseline(name: str, max_train_masks: int | None = None):
    factories = {"constant": ConstantBaseline, "geometry": GeometryBaseline,
                 "temporal": TemporalBaseline}
    if name not in factories:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    if name == "constant":
        return ConstantBaseline()
    return factories[name](max_train_masks=max_train_masks)


def usable_cpus() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # macOS, Windows
        return os.cpu_count() or 1


def run_baseline(name: str, bench_dir: Path, out: Path, splits=("test_s", "test_u"),
                 modes=("image", "video"), progress: bool = True,
                 max_train_masks: int | None = None, threads: int | None = None) -> dict[str, int]:
    """Fit ``name`` on the train split and write predictions for every (split, mode) present.
    BLAS and OpenMP (the gradient boosting) use ``threads`` (default: the usable CPUs): left alone
    they start one thread per host core, which oversubscribed a 2-core container many times."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads or usable_cpus()):
        return _run_baseline(name, bench_dir, out, splits, modes, progress, max_train_masks)


def _run_baseline(name, bench_dir, out, splits, modes, progress, max_train_masks) -> dict[str, int]:
    bench = Benchmark(bench_dir)
    model = make_baseline(name, max_train_masks)
    model.fit(bench, progress=progress) if name != "constant" else model.fit(bench)
    present = set(bench.available())
    counts: dict[str, int] = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        for split in splits:
            for mode in modes:
                if (split, mode) not in present:
                    continue
                n = 0
                records = tqdm(bench.records(split, mode), desc=f"{name}: {split}/{mode}",
                               unit="expr", disable=not progress)
                for pred in model.predict(records, mode):
                    pred["mode"] = mode
                    fh.write(json.dumps(pred) + "\n")
                    n += 1
                counts[f"{split}/{mode}"] = n
    if not counts:
        raise ValueError(f"{bench_dir}: no test split found (looked for {splits} x {modes})")
    return counts


__all__ = ["BASELINES", "ConstantBaseline", "GeometryBaseline", "TemporalBaseline",
           "make_baseline", "run_baseline", "FEATURE_NAMES"]
