"""Training batches from a FeatureSet: B expressions with all their candidate masks.

A batch holds each expression's clip once (context encoded once per clip) and the concatenated
masks of all of them with ``clip_index`` saying which clip each mask belongs to, the layout
:meth:`AuditorModel.audit_masks` takes. Augmentation keeps the expression's meaning: no flips or
crops (expressions say "left" / "right"), only brightness/contrast jitter, shared by a clip's
frames and its key frame so that they stay consistent, and a small audio gain change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from auditor_lite.training.features import FeatureSet

BRIGHTNESS = 0.08      # additive shift of [0, 1] pixels, uniform in +-BRIGHTNESS
CONTRAST = 0.15        # contrast factor uniform in 1 +- CONTRAST, pivoting on mid grey
AUDIO_GAIN_DB = 4.0    # audio gain uniform in +-AUDIO_GAIN_DB dB


@dataclass
class Batch:
    expressions: np.ndarray        # (B,) rows of the FeatureSet
    mask_rows: np.ndarray          # (N,) rows of the per-mask arrays
    frames: torch.Tensor           # (B, 10, 3, S, S) float32 in [0, 1]
    key_frame: torch.Tensor        # (B, 3, K, K)
    audio: torch.Tensor            # (B, CLIP_SAMPLES)
    text_embedding: torch.Tensor   # (B, 384)
    masks: torch.Tensor            # (N, 1, K, K) in {0, 1}
    clip_index: torch.Tensor       # (N,) int64 in [0, B)
    iou: torch.Tensor              # (N,) float32
    type_index: torch.Tensor       # (N,) int64
    action_index: torch.Tensor     # (N,) int64
    gt_mask: torch.Tensor          # (B, 1, K, K) ground truth of the key frame, in {0, 1}
    gt_valid: torch.Tensor         # (B,) bool: the expression has a ground-truth mask

    def model_inputs(self) -> dict:
        return dict(frames=self.frames, key_frame=self.key_frame, audio=self.audio,
                    text_embedding=self.text_embedding)


def _jitter(images: torch.Tensor, contrast: torch.Tensor, brightness: torch.Tensor) -> torch.Tensor:
    """Per-clip contrast/brightness; ``contrast`` and ``brightness`` broadcast over ``images``."""
    return ((images - 0.5) * contrast + 0.5 + brightness).clamp_(0.0, 1.0)


def make_batch(features: FeatureSet, expressions, rng: np.random.Generator | None = None) -> Batch:
    """The batch of FeatureSet rows ``expressions``; ``rng`` given -> augmented (else exact)."""
    expressions = np.asarray(expressions, dtype=np.int64)
    rows = [features.mask_rows(e) for e in expressions]
    clip_index = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
    mask_rows = np.concatenate(rows)
    frames = torch.from_numpy(features.frames[expressions]).permute(0, 1, 4, 2, 3).float() / 255.0
    key_frame = torch.from_numpy(features.key_frames[expressions]).permute(0, 3, 1, 2).float() / 255.0
    audio = torch.from_numpy(features.audio[expressions].astype(np.float32))
    if rng is not None:
        b = len(expressions)
        contrast = torch.from_numpy(rng.uniform(1 - CONTRAST, 1 + CONTRAST, b).astype(np.float32))
        brightness = torch.from_numpy(rng.uniform(-BRIGHTNESS, BRIGHTNESS, b).astype(np.float32))
        gain = torch.from_numpy((10.0 ** (rng.uniform(-AUDIO_GAIN_DB, AUDIO_GAIN_DB, b) / 20.0))
                                .astype(np.float32))
        frames = _jitter(frames, contrast.view(b, 1, 1, 1, 1), brightness.view(b, 1, 1, 1, 1))
        key_frame = _jitter(key_frame, contrast.view(b, 1, 1, 1), brightness.view(b, 1, 1, 1))
        audio = (audio * gain[:, None]).clamp_(-1.0, 1.0)
    masks = torch.from_numpy(features.unpack_masks(mask_rows)).float().unsqueeze(1)
    return Batch(
        expressions=expressions, mask_rows=mask_rows, frames=frames, key_frame=key_frame,
        audio=audio, text_embedding=torch.from_numpy(features.text[expressions]),
        masks=masks, clip_index=torch.from_numpy(clip_index),
        iou=torch.from_numpy(features.iou[mask_rows]),
        type_index=torch.from_numpy(features.type_index[mask_rows]),
        action_index=torch.from_numpy(features.action_index[mask_rows]),
        gt_mask=torch.from_numpy(features.unpack_gt(expressions)).float().unsqueeze(1),
        gt_valid=torch.from_numpy(features.gt_valid[expressions]))


def heldout_split(vids: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): a seeded ``fraction`` of the clips, with all their expressions.

    Splitting by clip keeps two expressions of one clip (same frames and audio) on one side, so the
    held-out numbers measure generalisation to unseen clips. At least one clip is held out when
    ``fraction > 0`` and there are at least two clips.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    clips = np.unique(vids)
    n_held = int(round(fraction * len(clips)))
    if fraction > 0 and len(clips) >= 2:
        n_held = min(max(n_held, 1), len(clips) - 1)
    held = set(np.random.default_rng([seed, 7919]).permutation(clips)[:n_held].tolist())
    is_held = np.array([v in held for v in vids], dtype=bool)
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def rows_of_uids(uids: np.ndarray, wanted: list[str], source) -> np.ndarray:
    """Rows whose uid is in ``wanted`` (a held-out list read from ``source``)."""
    wanted_set = set(wanted)
    rows = np.flatnonzero(np.isin(uids, list(wanted_set)))
    if len(rows) != len(wanted_set):
        raise ValueError(f"{source}: {len(wanted_set) - len(rows)} held-out uids are not "
                         "training expressions of this benchmark")
    return rows


def epoch_order(train_rows: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The shuffled training rows of ``epoch``: a function of (seed, epoch) only, so a resumed
    run replays exactly the order it was interrupted in."""
    return np.random.default_rng([seed, epoch]).permutation(train_rows)
