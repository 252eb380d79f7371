"""Distillation of the student from a teacher: a trained model directory or a predictions JSONL.

The teacher's outputs are computed once over the training expressions and cached next to the
feature cache (keyed by the teacher's weights file and the features), so a student step never runs
the teacher. Per candidate mask the targets are its IoU and log-probabilities of mask type and
action; a model teacher also gives its decoder query states and pooled context tokens (hints).

A predictions file (e.g. MQ-Auditor's outputs converted by ``convert-mqauditor``) is matched by
``(uid, frame, cand_id)``; only the output-level terms apply. A line without ``type_probs`` /
``action_probs`` teaches the one-hot of its class smoothed by ``pred_smoothing``; a ``null`` field
teaches nothing for that mask; masks without a line learn from the ground truth alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from auditor_lite.data.schema import ACTIONS, MASK_TYPES, DataError
from auditor_lite.eval.predictions import index_predictions, read_prediction_lines
from auditor_lite.model import AuditorModel
from auditor_lite.training.batches import make_batch
from auditor_lite.training.features import FeatureSet, load_or_build_features
from auditor_lite.training.losses import (DistillWeights, HintProjections, QueryStateRecorder,
                                          distill_losses)
from auditor_lite.training.train import HELDOUT_FILE, Trainer, TrainOptions

STUDENT_PARAMETER_BUDGET = 5_000_000  # issue 4: the student, MiniLM excluded
PROB_FLOOR = 1e-4                     # keeps log-probabilities of unlisted classes finite
TEACHER_BATCH = 8


def _file_stamp(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _log_probs(probs: dict[str, float] | None, label: str | None, classes: tuple[str, ...],
               smoothing: float) -> np.ndarray | None:
    """Log-probabilities over ``classes`` from a probability dict, else a smoothed one-hot."""
    if probs is not None:
        vec = np.array([probs.get(c, 0.0) for c in classes], np.float64)
    elif label is not None:
        vec = np.full(len(classes), smoothing / (len(classes) - 1))
        vec[classes.index(label)] = 1.0 - smoothing
    else:
        return None
    vec = np.maximum(vec, PROB_FLOOR)
    return np.log(vec / vec.sum()).astype(np.float32)


def targets_from_predictions(path, features: FeatureSet, smoothing: float = 0.1) -> dict:
    """Teacher targets from a predictions JSONL, row-aligned with ``features``' masks."""
    path = Path(path)
    # Training candidates are key-frame candidates, i.e. image mode; lines without a mode apply too.
    preds = index_predictions(read_prediction_lines(path), path, mode="image")
    m = features.num_masks
    out = {"iou": np.zeros(m, np.float32), "type_log_probs": np.zeros((m, len(MASK_TYPES)), np.float32),
           "action_log_probs": np.zeros((m, len(ACTIONS)), np.float32),
           "valid_iou": np.zeros(m, bool), "valid_type": np.zeros(m, bool), "valid_action": np.zeros(m, bool)}
    uid_of_row = np.repeat(features.uids, np.diff(features.mask_start))
    matched = 0
    for row in range(m):
        pred = preds.get((str(uid_of_row[row]), int(features.cand_frames[row]), str(features.cand_ids[row])))
        if pred is None:
            continue
        matched += 1
        if pred.iou is not None:
            out["iou"][row], out["valid_iou"][row] = pred.iou, True
        for field, probs, label, classes in (("type", pred.type_probs, pred.mask_type, MASK_TYPES),
                                             ("action", pred.action_probs, pred.action, ACTIONS)):
            log_probs = _log_probs(probs, label, classes, smoothing)
            if log_probs is not None:
                out[f"{field}_log_probs"][row], out[f"valid_{field}"][row] = log_probs, True
    if matched == 0:
        raise DataError(path, f"no prediction matches a training candidate of the benchmark "
                        f"({m} candidates keyed (uid, frame, cand_id)); was it made for this benchmark?")
    out["coverage"] = matched / m
    return out


@torch.inference_mode()
def targets_from_model(teacher: AuditorModel, features: FeatureSet, rows: np.ndarray,
                       progress: bool = True) -> dict:
    """Run the teacher (eval mode, unaugmented inputs) over expressions ``rows``."""
    teacher.eval()
    m, d = features.num_masks, teacher.config.d_model
    out = {"iou": np.zeros(m, np.float32), "type_log_probs": np.zeros((m, len(MASK_TYPES)), np.float32),
           "action_log_probs": np.zeros((m, len(ACTIONS)), np.float32),
           "valid_iou": np.zeros(m, bool), "query": np.zeros((m, 3, d), np.float16),
           "context": np.zeros((len(features), d), np.float16)}
    for start in tqdm(range(0, len(rows), TEACHER_BATCH), desc="teacher outputs", unit="batch",
                      file=sys.stderr, disable=not progress):
        batch = make_batch(features, rows[start:start + TEACHER_BATCH])
        with QueryStateRecorder(teacher) as recorder:
            context = teacher.encode_context(**batch.model_inputs())
            res = teacher.audit_masks(context, batch.masks, batch.key_frame, clip_index=batch.clip_index)
        r = batch.mask_rows
        out["iou"][r] = res.iou.numpy()
        out["type_log_probs"][r] = torch.log_softmax(res.type_logits, -1).numpy()
        out["action_log_probs"][r] = torch.log_softmax(res.action_logits, -1).numpy()
        out["query"][r] = recorder.states.numpy()
        out["context"][batch.expressions] = context.mean(dim=1).numpy()
        out["valid_iou"][r] = True
    out["valid_type"] = out["valid_action"] = out["valid_iou"]
    out["coverage"] = float(out["valid_iou"].mean())
    return out


class Distiller(Trainer):
    """A Trainer whose loss adds the teacher terms of :func:`losses.distill_losses`."""

    def __init__(self, options: TrainOptions, teacher_dir=None, teacher_pred=None,
                 weights: DistillWeights | None = None, pred_smoothing: float = 0.1):
        if (teacher_dir is None) == (teacher_pred is None):
            raise ValueError("give exactly one teacher: --teacher DIR or --teacher-pred FILE")
        self.teacher_dir = Path(teacher_dir) if teacher_dir is not None else None
        self.teacher_pred = Path(teacher_pred) if teacher_pred is not None else None
        if self.teacher_dir is not None:
            if not (self.teacher_dir / "config.json").is_file():
                raise FileNotFoundError(f"{self.teacher_dir}: not a model directory (no config.json)")
            held = self.teacher_dir / HELDOUT_FILE
            if options.heldout_uids is None and held.is_file():
                # The teacher never saw these expressions: keeping them out of the student too keeps
                # the held-out split clean for model selection and calibration.
                options.heldout_uids = [u for u in held.read_text().split() if u]
        super().__init__(options)
        self.weights = weights or DistillWeights()
        self.gt_weight = self.weights.ground_truth
        self.pred_smoothing = pred_smoothing
        self.hints = None  # a model teacher's embedding-hint projections (prepare)

    def prepare(self, features: FeatureSet) -> None:
        cache = Path(self.cache_path).parent
        if self.teacher_pred is not None:
            self.targets = targets_from_predictions(self.teacher_pred, features, self.pred_smoothing)
            self.teacher_info = {"teacher_pred": str(self.teacher_pred.resolve())}
            return
        teacher = AuditorModel.from_pretrained(self.teacher_dir)
        stamp = json.dumps([_file_stamp(p) for p in sorted(self.teacher_dir.glob("*.safetensors"))]
                           + [str(self.cache_path), self.val_rows.tolist()])
        path = cache / f"teacher_{hashlib.sha1(stamp.encode()).hexdigest()[:16]}.npz"
        if path.is_file():
            with np.load(path) as data:
                self.targets = {k: data[k] for k in data.files}
        else:
            tc = teacher.config
            tfeatures = features
            if (tc.frame_size, tc.key_size) != (features.frame_size, features.key_size):
                tfeatures, _, _ = load_or_build_features(self.opt.bench, cache, tc.frame_size, tc.key_size,
                                                         progress=self.opt.progress)
                if not np.array_equal(tfeatures.uids, features.uids):
                    raise DataError(self.opt.bench, "teacher and student feature caches list different "
                                    "expressions; delete the feature cache and retry")
            self.targets = targets_from_model(teacher, tfeatures, self.train_rows, self.opt.progress)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, **self.targets)
            tmp.replace(path)
        self.hints = HintProjections(self.config.d_model, teacher.config.d_model)
        self.extra_modules = self.hints
        self.teacher_info = {"teacher": str(self.teacher_dir.resolve()), "teacher_cache": str(path),
                             "teacher_parameters": sum(p.numel() for p in teacher.parameters())}

    def _build(self) -> None:
        super()._build()
        count = self.parameter_count()
        if count > STUDENT_PARAMETER_BUDGET:
            raise ValueError(f"the student has {count:,} parameters (MiniLM excluded), over the "
                             f"{STUDENT_PARAMETER_BUDGET:,} budget; choose a smaller preset or overrides")

    def wants_query_states(self) -> bool:
        return "query" in self.targets

    def extra_losses(self, batch, out, context, query_states) -> dict[str, torch.Tensor]:
        rows = batch.mask_rows
        teacher = {name: torch.from_numpy(self.targets[name][rows])
                   for name in ("iou", "type_log_probs", "action_log_probs",
                                "valid_iou", "valid_type", "valid_action")}
        if "query" in self.targets:
            teacher["query"] = torch.from_numpy(self.targets["query"][rows].astype(np.float32))
            teacher["context"] = torch.from_numpy(
                self.targets["context"][batch.expressions].astype(np.float32))
        return distill_losses(out, query_states, context, teacher, self.hints, self.weights)

    def describe(self) -> dict:
        return {"distilled": True, "teacher_coverage": round(float(self.targets["coverage"]), 4),
                "distill_weights": vars(self.weights), **self.teacher_info}


def distill(options: TrainOptions, teacher_dir=None, teacher_pred=None,
            weights: DistillWeights | None = None, pred_smoothing: float = 0.1) -> dict:
    """Distil ``options.preset`` (the student) from a teacher; returns the training summary."""
    return Distiller(options, teacher_dir, teacher_pred, weights, pred_smoothing).run()
