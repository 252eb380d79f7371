"""Compact training tensors of a benchmark split, built once and cached on disk as ``.npz``.

Decoding 10 JPEG frames, a WAV file and ~13 mask PNGs per expression on every step would dominate
a CPU training step, so every expression is decoded, resized (with :mod:`auditor_lite.preprocess`,
the same functions the runtime uses) and stored once:

* frames ``(E, 10, S, S, 3)`` uint8 and the key frame ``(E, K, K, 3)`` uint8 (S = frame_size,
  K = key_size of the model config); pixels are rounded back to uint8 after area resizing, an error
  of at most half a grey level against the runtime's float path;
* audio ``(E, CLIP_SAMPLES)`` float16 waveform (the log-mel front end is part of the model graph);
* MiniLM sentence embeddings ``(E, 384)`` float32, one per expression, encoded in batches;
* candidate masks at K x K, packed with ``np.packbits`` (``M`` rows, ``mask_start`` gives each
  expression's slice), with labels: IoU, type index, action index, frame and cand_id;
* the ground-truth mask of each expression's key frame at K x K, packed the same way (all zeros
  for a null expression; ``gt_valid`` is False where a referring expression has no ground-truth
  mask on its key frame), the dense target of the grounding head.

A cache file is keyed by the benchmark's absolute path, the mtimes of metadata.csv and of the split's
JSON, split/mode, S, K and :data:`FEATURE_VERSION`, so an edited benchmark or another model input
size builds a new file instead of silently reusing a stale one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from auditor_lite.media import load_audio, load_frames, load_mask
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import (ACTIONS, CLIP_SAMPLES, MASK_TYPES, META_DIR, METADATA_CSV,
                                      DataError, ExpressionRecord)
from auditor_lite.preprocess import (TEXT_EMBEDDING_DIM, area_resize, prepare_audio,
                                           prepare_masks)

FEATURE_VERSION = 2
CACHE_DIR_NAME = ".feature_cache"
TEXT_BATCH = 64


@dataclass
class FeatureSet:
    """Decoded, resized tensors of one (split, mode); row ``e`` of the per-expression arrays is
    expression ``e``, its masks are rows ``mask_start[e]:mask_start[e + 1]`` of the per-mask arrays."""

    uids: np.ndarray          # (E,) str
    vids: np.ndarray          # (E,) str
    frames: np.ndarray        # (E, 10, S, S, 3) uint8
    key_frames: np.ndarray    # (E, K, K, 3) uint8
    audio: np.ndarray         # (E, CLIP_SAMPLES) float16
    text: np.ndarray          # (E, 384) float32
    mask_start: np.ndarray    # (E + 1,) int64
    masks: np.ndarray         # (M, ceil(K * K / 8)) uint8, np.packbits of the flattened mask
    cand_ids: np.ndarray      # (M,) str
    cand_frames: np.ndarray   # (M,) int64
    iou: np.ndarray           # (M,) float32
    type_index: np.ndarray    # (M,) int64 into MASK_TYPES
    action_index: np.ndarray  # (M,) int64 into ACTIONS
    gt_masks: np.ndarray      # (E, ceil(K * K / 8)) uint8, packed ground truth of the key frame
    gt_valid: np.ndarray      # (E,) bool

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def num_masks(self) -> int:
        return len(self.iou)

    @property
    def frame_size(self) -> int:
        return int(self.frames.shape[2])

    @property
    def key_size(self) -> int:
        return int(self.key_frames.shape[1])

    def mask_rows(self, expression: int) -> np.ndarray:
        return np.arange(self.mask_start[expression], self.mask_start[expression + 1])

    def unpack_masks(self, rows: np.ndarray) -> np.ndarray:
        """Masks ``rows`` as uint8 ``(n, K, K)`` in {0, 1}."""
        return self._unpack(self.masks[rows])

    def unpack_gt(self, expressions: np.ndarray) -> np.ndarray:
        """Ground-truth key-frame masks of ``expressions`` as uint8 ``(n, K, K)`` in {0, 1}."""
        return self._unpack(self.gt_masks[expressions])

    def _unpack(self, packed: np.ndarray) -> np.ndarray:
        k = self.key_size
        return np.unpackbits(packed, axis=1, count=k * k).reshape(len(packed), k, k)

    def save(self, path: Path) -> None:
        # Written to a temporary name first: an interrupted build never leaves a truncated cache.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez(tmp, **{f.name: getattr(self, f.name) for f in fields(self)})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "FeatureSet":
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(**{f.name: data[f.name] for f in fields(cls)})
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(path, f"unreadable feature cache ({exc}); delete it to rebuild") from None


def default_cache_dir(out_dir) -> Path:
    """``<out>/../.feature_cache``: shared by the runs written next to each other."""
    return Path(out_dir).resolve().parent / CACHE_DIR_NAME


def cache_key(bench, split: str, mode: str, frame_size: int, key_size: int) -> str:
    root = Path(bench).resolve()
    bench_obj = Benchmark(root)
    stamps = []
    for path in (root / META_DIR / METADATA_CSV, bench_obj.json_path(split, mode)):
        if not path.is_file():
            raise DataError(path, "file not found")
        stamps.append(path.stat().st_mtime_ns)
    text = json.dumps([FEATURE_VERSION, str(root), stamps, split, mode, frame_size, key_size])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def resize_rgb(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(..., H, W, 3)`` -> uint8 ``(..., size, size, 3)`` by the runtime's area resize."""
    return to_uint8(area_resize(images, size, size))


def load_clip_audio(record: ExpressionRecord) -> np.ndarray:
    """The record's waveform as float32 ``(CLIP_SAMPLES,)``; a wrong sample rate names the file."""
    wave, rate = load_audio(record.clip.audio_path)
    try:
        return prepare_audio(wave, rate)[0]
    except ValueError as exc:
        raise DataError(record.clip.audio_path, str(exc)) from None


def load_candidate_masks(candidates, key_size: int) -> np.ndarray:
    """Candidates' masks as bool ``(n, K, K)``; masks of different sizes are resized one by one."""
    raw = [load_mask(c.mask_path) for c in candidates]
    if len({m.shape for m in raw}) == 1:
        return prepare_masks(raw, key_size)[:, 0] > 0.5
    return np.stack([prepare_masks(m, key_size)[0, 0] > 0.5 for m in raw])


@functools.lru_cache(maxsize=1)
def _minilm():
    """The MiniLM encoder, loaded once per process (loading costs seconds; calls are many)."""
    from auditor_lite.model.text import MiniLMTextEncoder

    return MiniLMTextEncoder()


def encode_texts(texts: list[str], progress: bool = True) -> np.ndarray:
    """MiniLM embeddings ``(len(texts), 384)`` float32, each distinct text encoded once."""
    import torch

    unique = sorted(set(texts))
    encoder = _minilm()
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for start in tqdm(range(0, len(unique), TEXT_BATCH), desc="MiniLM", unit="batch",
                          file=sys.stderr, disable=not progress):
            chunk = unique[start:start + TEXT_BATCH]
            for text, vec in zip(chunk, encoder.encode(chunk).numpy()):
                out[text] = vec
    if not texts:
        return np.zeros((0, TEXT_EMBEDDING_DIM), np.float32)
    return np.stack([out[t] for t in texts]).astype(np.float32)


def build_features(bench, frame_size: int, key_size: int, split: str = "train", mode: str = "train",
                   progress: bool = True) -> FeatureSet:
    """Decode every expression of ``(split, mode)`` whose candidates lie on its key frame.

    Training records carry key-frame candidates only; in a video split the candidates of other
    frames are skipped here (predict handles video mode itself).
    """
    records = list(Benchmark(bench).records(split, mode))
    if not records:
        raise DataError(Benchmark(bench).json_path(split, mode), f"no {split}/{mode} expressions")
    n = len(records)
    frames = np.zeros((n, 10, frame_size, frame_size, 3), np.uint8)
    key_frames = np.zeros((n, key_size, key_size, 3), np.uint8)
    audio = np.zeros((n, CLIP_SAMPLES), np.float16)
    masks, cand_ids, cand_frames, iou, type_index, action_index = [], [], [], [], [], []
    gt_masks = np.zeros((n, (key_size * key_size + 7) // 8), np.uint8)
    gt_valid = np.zeros(n, bool)
    mask_start = [0]
    for e, record in enumerate(tqdm(records, desc=f"features {split}", unit="expr",
                                    file=sys.stderr, disable=not progress)):
        clip_frames = load_frames(record.clip)
        frames[e] = resize_rgb(clip_frames, frame_size)
        key_frames[e] = resize_rgb(clip_frames[record.kfid], key_size)
        audio[e] = load_clip_audio(record).astype(np.float16)
        candidates = [c for c in record.candidates if c.frame == record.kfid]
        if not candidates:
            raise DataError(Benchmark(bench).json_path(split, mode),
                            "expression has no candidate on its key frame", f"uid={record.uid}")
        stack = load_candidate_masks(candidates, key_size)
        masks.append(np.packbits(stack.reshape(len(candidates), -1), axis=1))
        for c in candidates:
            cand_ids.append(c.cand_id)
            cand_frames.append(c.frame)
            iou.append(c.iou_to_gt)
            type_index.append(MASK_TYPES.index(c.mask_type))
            action_index.append(ACTIONS.index(c.action))
        mask_start.append(mask_start[-1] + len(candidates))
        gt_path = record.gt_masks.get(record.kfid)
        if gt_path is not None:
            gt = prepare_masks(load_mask(gt_path), key_size)[0, 0] > 0.5
            gt_masks[e] = np.packbits(gt.reshape(-1))
        gt_valid[e] = gt_path is not None or record.is_null
    return FeatureSet(
        uids=np.array([r.uid for r in records]), vids=np.array([r.vid for r in records]),
        frames=frames, key_frames=key_frames, audio=audio,
        text=encode_texts([r.exp for r in records], progress),
        mask_start=np.array(mask_start, np.int64), masks=np.concatenate(masks),
        cand_ids=np.array(cand_ids), cand_frames=np.array(cand_frames, np.int64),
        iou=np.array(iou, np.float32), type_index=np.array(type_index, np.int64),
        action_index=np.array(action_index, np.int64), gt_masks=gt_masks, gt_valid=gt_valid)


def load_or_build_features(bench, cache_dir, frame_size: int, key_size: int, split: str = "train",
                           mode: str = "train", progress: bool = True) -> tuple[FeatureSet, Path, bool]:
    """The cached FeatureSet (built and saved on first use); returns (features, path, was_cached)."""
    path = Path(cache_dir) / f"{split}_{mode}_f{frame_size}_k{key_size}_{cache_key(bench, split, mode, frame_size, key_size)}.npz"
    if path.is_file():
        return FeatureSet.load(path), path, True
    started = time.perf_counter()
    features = build_features(bench, frame_size, key_size, split, mode, progress)
    features.save(path)
    if progress:
        print(f"feature cache: {len(features)} expressions, {features.num_masks} masks in "
              f"{time.perf_counter() - started:.0f} s -> {path}", file=sys.stderr)
    return features, path, False
