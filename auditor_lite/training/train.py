"""The training loop: seeded, time-budgeted, checkpointed and resumable (docs/training.md).

One step = ``batch_clips`` expressions with all their candidate masks: the clip context is encoded
once per expression and ``audit_masks(..., clip_index=...)`` scores its masks. AdamW with linear
warmup and cosine decay; gradients clipped by global norm.

Schedule length: ``epochs`` x steps per epoch, or, with ``max_minutes``, the steps that fit the
budget, estimated from the speed of the first steps and re-estimated every RESIZE_EVERY steps (the
CPU is shared, so speed drifts); the cosine then ends when time runs out.
``max_steps`` only interrupts a run (for tests and manual stops): it never changes the schedule,
so an interrupted-then-resumed run is identical to an uninterrupted one.

Outputs in ``out``: the best model by held-out score (``save_pretrained``, safetensors),
``checkpoint/`` (last state, for ``resume``), ``train_log.jsonl``, ``heldout_uids.txt`` and
``training_summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from auditor_lite.model import AuditorConfig, AuditorModel
from auditor_lite.training.batches import epoch_order, heldout_split, make_batch, rows_of_uids
from auditor_lite.training.category import (CategoryPrototypes, PixelRecorder, category_loss,
                                             category_targets)
from auditor_lite.training.features import default_cache_dir, encode_texts, load_or_build_features
from auditor_lite.training.losses import LossWeights, supervised_losses
from auditor_lite.training.metrics import grounding_iou, selection_score

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.pt"


def _plain_numpy_state(state: tuple) -> list:
    """np.random.get_state() with its key array as a list (torch.load(weights_only=True) reads it)."""
    name, keys, position, has_gauss, cached = state
    return [name, keys.tolist(), int(position), int(has_gauss), float(cached)]
LOG_FILE = "train_log.jsonl"
HELDOUT_FILE = "heldout_uids.txt"
SUMMARY_FILE = "training_summary.json"
CALIBRATION_STEPS = 4    # steps timed (after the first, slower one) to size a time-budgeted schedule
RESIZE_EVERY = 25        # then re-sized from the speed of each such window (the CPU is shared)
VAL_FORWARD_SHARE = 0.4  # a held-out batch (forward only) costs about this share of a train step


@dataclass
class TrainOptions:
    bench: str
    out: str
    preset: str = "teacher"
    overrides: dict = field(default_factory=dict)
    cache_dir: str | None = None
    epochs: float | None = None
    max_minutes: float | None = None
    max_steps: int | None = None
    batch_clips: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 40
    grad_clip: float = 1.0
    seed: int = 0
    heldout_fraction: float = 0.1
    heldout_uids: list | None = None      # a given held-out set (distillation reuses the teacher's)
    val_every_minutes: float = 10.0
    checkpoint_every_minutes: float = 10.0
    log_every: int = 10
    augment: bool = True
    threads: int = 2
    resume: bool = False
    progress: bool = True
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self):
        if self.epochs is None and self.max_minutes is None:
            self.epochs = 10.0
        for name in ("epochs", "max_minutes", "max_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.batch_clips < 1:
            raise ValueError(f"--batch-clips must be >= 1, got {self.batch_clips}")


class Trainer:
    """Supervised training of one AuditorModel; :class:`~auditor_lite.training.distill` extends
    it through :meth:`extra_losses` and :attr:`extra_modules`."""

    def __init__(self, options: TrainOptions):
        self.opt = options
        self.out = Path(options.out)
        self.extra_modules: torch.nn.Module | None = None
        self.gt_weight = 1.0  # weight of the ground-truth loss (distillation may lower it)
        self.config = AuditorConfig.from_preset(options.preset, **options.overrides)

    # ---------------------------------------------------------------- hooks for distillation
    def extra_losses(self, batch, out, context, query_states) -> dict[str, torch.Tensor]:
        """Additional loss terms; ``kd_total`` among them is added to the loss."""
        return {}

    def prepare(self, features) -> None:
        """Called once the features and split are known, before the model is built."""

    def describe(self) -> dict:
        return {}

    def wants_query_states(self) -> bool:
        return False

    # ---------------------------------------------------------------- setup
    def _seed(self) -> None:
        torch.manual_seed(self.opt.seed)
        np.random.seed(self.opt.seed)
        random.seed(self.opt.seed)

    def _load_data(self) -> None:
        cache = self.opt.cache_dir or default_cache_dir(self.out)
        self.features, self.cache_path, self.cache_hit = load_or_build_features(
            self.opt.bench, cache, self.config.frame_size, self.config.key_size, progress=self.opt.progress)
        if self.opt.heldout_uids is not None:
            self.val_rows = rows_of_uids(self.features.uids, self.opt.heldout_uids, "held-out uids")
            self.train_rows = np.setdiff1d(np.arange(len(self.features)), self.val_rows)
        else:
            self.train_rows, self.val_rows = heldout_split(self.features.vids, self.opt.heldout_fraction,
                                                           self.opt.seed)
        if len(self.train_rows) == 0:
            raise ValueError(f"{self.opt.bench}: no training expressions left after the held-out split")
        (self.out / HELDOUT_FILE).write_text("".join(f"{u}\n" for u in self.features.uids[self.val_rows]))
        self.steps_per_epoch = math.ceil(len(self.train_rows) / self.opt.batch_clips)

    def _setup_category(self) -> None:
        """The category auxiliary (training/category.py), when the uids name >= 2 categories."""
        self.category_prototypes = None
        vocabulary, self.category_index = category_targets(self.features.uids)
        if self.opt.loss_weights.category <= 0 or len(vocabulary) < 2:
            return
        names = encode_texts([f"the {name.replace('_', ' ')}" for name in vocabulary], progress=False)
        self.category_prototypes = CategoryPrototypes(names, self.config.grounding_channels)
        modules = {"category": self.category_prototypes}
        if self.extra_modules is not None:
            modules["hints"] = self.extra_modules
        self.extra_modules = torch.nn.ModuleDict(modules)
        self.category_vocabulary = vocabulary

    def _build(self) -> None:
        self.model = AuditorModel(self.config)
        self.model.train()
        params = list(self.model.named_parameters())
        if self.extra_modules is not None:
            params += [(f"extra.{n}", p) for n, p in self.extra_modules.named_parameters()]
        # No weight decay on biases and norm scales (1-D), as usual for AdamW on transformers.
        groups = [{"params": [p for _, p in params if p.ndim > 1], "weight_decay": self.opt.weight_decay},
                  {"params": [p for _, p in params if p.ndim <= 1], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=self.opt.lr, betas=(0.9, 0.98))
        self.aug_rng = np.random.default_rng([self.opt.seed, 1])
        self.state = dict(step=0, epoch=0, batch_in_epoch=0, total_steps=None, elapsed_s=0.0,
                          best_score=None, best_metrics=None, best_step=None)
        if self.opt.epochs is not None:
            self.epoch_steps = int(math.ceil(self.opt.epochs * self.steps_per_epoch))
        else:
            self.epoch_steps = None
        if self.opt.max_minutes is None:
            self.state["total_steps"] = self.epoch_steps

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ---------------------------------------------------------------- schedule
    def lr_at(self, step: int) -> float:
        total = self.state["total_steps"]
        if total is None:  # budget not sized yet: the warmup ramp only
            return self.opt.lr * min(1.0, (step + 1) / self.opt.warmup_steps)
        warmup = max(1, min(self.opt.warmup_steps, total // 10))
        if step < warmup:
            return self.opt.lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return self.opt.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    def _size_schedule(self, seconds_per_step: float, elapsed_s: float) -> None:
        budget = self.opt.max_minutes * 60 - elapsed_s
        n_val = math.ceil(len(self.val_rows) / (2 * self.opt.batch_clips))
        val_s = n_val * 2 * seconds_per_step * VAL_FORWARD_SHARE
        passes = 1 + int(budget / (60 * self.opt.val_every_minutes))  # validations still to come
        steps = self.state["step"] + max(1, int((budget - passes * val_s - 5) / seconds_per_step))
        self.state["total_steps"] = steps if self.epoch_steps is None else min(steps, self.epoch_steps)
        self.val_seconds_estimate = val_s

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        ckpt = self.out / CHECKPOINT_DIR
        self.model.save_pretrained(ckpt)
        torch.save({
            "state": self.state, "optimizer": self.optimizer.state_dict(),
            "extra_modules": self.extra_modules.state_dict() if self.extra_modules is not None else None,
            # plain containers only, so that resuming never unpickles code (weights_only=True)
            "torch_rng": torch.get_rng_state(), "numpy_rng": _plain_numpy_state(np.random.get_state()),
            "python_rng": random.getstate(), "aug_rng": self.aug_rng.bit_generator.state,
            "options": {k: v for k, v in asdict(self.opt).items() if k != "loss_weights"},
        }, ckpt / STATE_FILE)

    def load_checkpoint(self) -> None:
        ckpt = self.out / CHECKPOINT_DIR
        if not (ckpt / STATE_FILE).is_file():
            raise FileNotFoundError(f"{ckpt / STATE_FILE}: no checkpoint to resume from")
        saved = torch.load(ckpt / STATE_FILE, weights_only=True)
        self.model = AuditorModel.from_pretrained(ckpt)
        self.model.train()
        self.config = self.model.config
        self._rebuild_optimizer_for_loaded_model(saved)
        self.state = saved["state"]
        torch.set_rng_state(saved["torch_rng"])
        name, keys, position, has_gauss, cached = saved["numpy_rng"]
        np.random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, cached))
        random.setstate(saved["python_rng"])
        self.aug_rng.bit_generator.state = saved["aug_rng"]

    def _rebuild_optimizer_for_loaded_model(self, saved) -> None:
        if self.extra_modules is not None and saved["extra_modules"] is not None:
            self.extra_modules.load_state_dict(saved["extra_modules"])
        params = list(self.model.named_parameters())
        if self.extra_modules is not None:
            params += [(f"extra.{n}", p) for n, p in self.extra_modules.named_parameters()]
        groups = [{"params": [p for _, p in params if p.ndim > 1], "weight_decay": self.opt.weight_decay},
                  {"params": [p for _, p in params if p.ndim <= 1], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=self.opt.lr, betas=(0.9, 0.98))
        self.optimizer.load_state_dict(saved["optimizer"])

    # ---------------------------------------------------------------- evaluation
    @torch.inference_mode()
    def validate(self) -> dict | None:
        if len(self.val_rows) == 0:
            return None
        self.model.eval()
        preds, types, actions, grounding = [], [], [], []
        size = 2 * self.opt.batch_clips
        for start in range(0, len(self.val_rows), size):
            batch = make_batch(self.features, self.val_rows[start:start + size])
            out = self.model(**batch.model_inputs(), masks=batch.masks, clip_index=batch.clip_index)
            preds.append(out.iou)
            types.append(out.type_logits.argmax(-1))
            actions.append(out.action_logits.argmax(-1))
            grounding.append(grounding_iou(out.grounding_logits, batch.gt_mask, batch.gt_valid))
        self.model.train()
        rows = np.concatenate([self.features.mask_rows(e) for e in self.val_rows])
        iou = torch.cat(preds).numpy()
        metrics = {
            "iou_rmse": float(np.sqrt(np.mean((iou - self.features.iou[rows]) ** 2))),
            "type_acc": float(np.mean(torch.cat(types).numpy() == self.features.type_index[rows])),
            "action_acc": float(np.mean(torch.cat(actions).numpy() == self.features.action_index[rows])),
            "masks": int(len(rows)),
        }
        ious = np.concatenate(grounding)
        # Mean IoU of the thresholded grounding map with the ground truth, over the referring
        # expressions (a diagnostic: it is not part of the selection score).
        metrics["grounding_iou"] = float(ious.mean()) if len(ious) else float("nan")
        metrics["score"] = selection_score(metrics)
        return metrics

    # ---------------------------------------------------------------- one step
    def train_step(self, rows: np.ndarray) -> dict[str, float]:
        batch = make_batch(self.features, rows, self.aug_rng if self.opt.augment else None)
        lr = self.lr_at(self.state["step"])
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        recorder = None
        if self.wants_query_states():
            from auditor_lite.training.losses import QueryStateRecorder
            recorder = QueryStateRecorder(self.model)
        pixels = PixelRecorder(self.model) if self.category_prototypes is not None else None
        with recorder if recorder is not None else contextlib.nullcontext(), \
                pixels if pixels is not None else contextlib.nullcontext():
            context = self.model.encode_context(**batch.model_inputs())
            out = self.model.audit_masks(context, batch.masks, batch.key_frame, clip_index=batch.clip_index)
        terms = supervised_losses(out, batch.iou, batch.type_index, batch.action_index,
                                  self.opt.loss_weights, batch.gt_mask, batch.gt_valid)
        if pixels is not None:
            terms["category"] = category_loss(pixels.pixels, batch.gt_mask,
                                              torch.from_numpy(self.category_index[batch.expressions]),
                                              self.category_prototypes())
            terms["total"] = terms["total"] + self.opt.loss_weights.category * terms["category"]
        loss = self.gt_weight * terms["total"]
        extra = self.extra_losses(batch, out, context, recorder.states if recorder else None)
        if extra:
            loss = loss + extra["kd_total"]
            terms.update(extra)
        terms["loss"] = loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.opt.grad_clip)
        self.optimizer.step()
        self.state["step"] += 1
        logged = {k: float(v.detach()) for k, v in terms.items()}
        logged.update(lr=lr, grad_norm=float(grad_norm))
        return logged

    # ---------------------------------------------------------------- the loop
    def _log(self, record: dict) -> None:
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _save_best(self, metrics: dict | None) -> None:
        if metrics is None:  # no held-out split: the latest model is the result
            self.model.save_pretrained(self.out)
            return
        best = self.state["best_score"]
        if best is None or metrics["score"] < best:
            self.state.update(best_score=metrics["score"], best_metrics=metrics, best_step=self.state["step"])
            self.model.save_pretrained(self.out)

    def _evaluate_and_log(self, session_start: float) -> None:
        started = time.perf_counter()
        metrics = self.validate()
        self.val_seconds_estimate = time.perf_counter() - started
        self._save_best(metrics)
        self._log({"step": self.state["step"], "time_s": round(self._elapsed(session_start), 1),
                   "val": metrics})

    def _elapsed(self, session_start: float) -> float:
        return self.state["elapsed_s"] + time.perf_counter() - session_start

    def run(self) -> dict:
        opt = self.opt
        run_start = time.perf_counter()  # a fresh run's budget includes loading and teacher outputs
        torch.set_num_threads(opt.threads)
        self.out.mkdir(parents=True, exist_ok=True)
        self._seed()
        self._load_data()
        self.prepare(self.features)
        self._setup_category()
        self._build()
        if opt.resume:
            self.load_checkpoint()
        elif (self.out / LOG_FILE).exists():
            (self.out / LOG_FILE).unlink()  # a fresh run starts a fresh log
        self.val_seconds_estimate = 0.0
        session_start = time.perf_counter() if opt.resume else run_start
        last_val = last_ckpt = session_start
        timing_from, timing_step = None, None
        bar = tqdm(total=self.state["total_steps"], initial=self.state["step"], desc=f"train {opt.preset}",
                   unit="step", file=sys.stderr, disable=not opt.progress, dynamic_ncols=True)
        running: dict[str, list[float]] = {}
        stop_reason = "schedule finished"
        while True:
            total = self.state["total_steps"]
            cap = total if total is not None else self.epoch_steps  # epochs bound a schedule not sized yet
            if cap is not None and self.state["step"] >= cap:
                self.state["total_steps"] = cap
                break
            if opt.max_steps is not None and self.state["step"] >= opt.max_steps:
                stop_reason = "max_steps reached"
                break
            if opt.max_minutes is not None and (self._elapsed(session_start) + self.val_seconds_estimate
                                                 >= opt.max_minutes * 60):
                stop_reason = "time budget reached"
                break
            order = epoch_order(self.train_rows, opt.seed, self.state["epoch"])
            start = self.state["batch_in_epoch"] * opt.batch_clips
            if start >= len(order):
                self.state.update(epoch=self.state["epoch"] + 1, batch_in_epoch=0)
                continue
            logged = self.train_step(order[start:start + opt.batch_clips])
            self.state["batch_in_epoch"] += 1
            for key, value in logged.items():
                running.setdefault(key, []).append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.3f}", iou_rmse=f"{math.sqrt(logged['iou_mse']):.3f}")
            now = time.perf_counter()
            if opt.max_minutes is not None:  # size the schedule from measured speed, and re-size it
                window = CALIBRATION_STEPS if total is None else RESIZE_EVERY
                if timing_from is None:
                    timing_from, timing_step = now, self.state["step"]
                elif self.state["step"] - timing_step >= window and self.state["step"] < 0.9 * (total or 1e9):
                    self._size_schedule((now - timing_from) / (self.state["step"] - timing_step),
                                        self._elapsed(session_start))
                    timing_from, timing_step = now, self.state["step"]
                    bar.total = self.state["total_steps"]
                    bar.refresh()
            if self.state["step"] % opt.log_every == 0:
                record = {"step": self.state["step"], "epoch": self.state["epoch"],
                          "time_s": round(self._elapsed(session_start), 1)}
                record.update({k: round(float(np.mean(v)), 6) for k, v in running.items()})
                self._log(record)
                running = {}
            if now - last_val >= opt.val_every_minutes * 60:
                self._evaluate_and_log(session_start)
                last_val = time.perf_counter()
                if timing_from is not None:  # time spent validating is not step speed
                    timing_from, timing_step = last_val, self.state["step"]
            if now - last_ckpt >= opt.checkpoint_every_minutes * 60:
                self.state["elapsed_s"] = self._elapsed(session_start)
                session_start = time.perf_counter()
                self.save_checkpoint()
                last_ckpt = time.perf_counter()
                if timing_from is not None:
                    timing_from, timing_step = last_ckpt, self.state["step"]
        bar.close()
        self._evaluate_and_log(session_start)
        self.state["elapsed_s"] = self._elapsed(session_start)
        self.save_checkpoint()
        return self._write_summary(stop_reason)

    def _write_summary(self, stop_reason: str) -> dict:
        summary = {
            "preset": self.opt.preset, "parameters": self.parameter_count(),
            "minutes": round(self.state["elapsed_s"] / 60, 2), "steps": self.state["step"],
            "scheduled_steps": self.state["total_steps"], "epochs_done": round(
                self.state["step"] / self.steps_per_epoch, 2),
            "stop_reason": stop_reason, "best_step": self.state["best_step"],
            "val": self.state["best_metrics"], "seed": self.opt.seed,
            "bench": str(Path(self.opt.bench).resolve()), "feature_cache": str(self.cache_path),
            "train_expressions": int(len(self.train_rows)), "heldout_expressions": int(len(self.val_rows)),
            "batch_clips": self.opt.batch_clips, "lr": self.opt.lr, "overrides": self.opt.overrides,
            "category_aux": (len(self.category_vocabulary) if self.category_prototypes is not None
                             else None),
        }
        summary.update(self.describe())
        (self.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def train(options: TrainOptions) -> dict:
    """Train ``options.preset`` on the benchmark's train split; returns the training summary."""
    return Trainer(options).run()
