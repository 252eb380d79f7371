"""Decoded arrays for training and diagnosing the grounding model (stage A), cached on disk.

One directory of ``.npy`` files per (benchmark, split, mode), memory-mapped when read:

* per clip: ``frames`` (C, 10, S, S, 3) uint8 at the grounder's key size; ``instance`` (C, 10, S, S)
  uint8 (0 = background, k + 1 = object k; from the generator's sidecar, or, without one, only the
  expression's ground-truth mask as object 0); ``sounding`` (C, MAX_OBJECTS, 10) int8 (-1 unknown);
  ``category`` (C, MAX_OBJECTS) int32 into ``categories.json`` (-1 unknown); ``num_objects`` (C,);
* per expression: ``clip`` (E,), ``kfid``, ``target`` (-1 for a null expression), ``anchor`` (-1 for
  none or unknown), ``mel_row`` into ``log_mel`` (A, 64, 501) float16 (numpy log-mel of each audio
  file once; null uids are heard with their cross audio), MiniLM ``tokens`` (E, T, 384) float16 and
  ``token_mask`` (E, T) uint8, and ``meta.json`` (uids, vids, expressions, cues, needs_audio,
  has_sidecar, extra);
* ``motion`` (C, 10, N, 4) float16: :func:`auditor_lite.motion.cell_motion` of the frames, added
  on first use (:func:`ensure_cell_motion`).

``extra_per_clip`` > 0 appends that many more expressions per clip with a sidecar, phrased by the
generator's resolver about other targets of the same scene (:mod:`extra_expressions`); their uids
start with ``extra:`` and ``meta["extra"]`` marks them, so that validation can leave them out.

Everything the runtime would compute comes from the same torch-free functions
(:func:`auditor_lite.preprocess.area_resize`, :func:`auditor_lite.preprocess.log_mel`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from auditor_lite.media import load_audio, load_frames, load_mask
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import NUM_FRAMES
from auditor_lite.data.sidecar import read_sidecar
from auditor_lite.motion import CELL, NUM_MOTION_FEATURES, cell_motion
from auditor_lite.preprocess import area_resize, log_mel, prepare_audio

CACHE_VERSION = 2
MAX_OBJECTS = 6
CLIP_ARRAYS = ("frames", "instance", "sounding", "category", "num_objects")
EXPR_ARRAYS = ("clip", "kfid", "target", "anchor", "mel_row", "tokens", "token_mask")
OTHER_ARRAYS = ("log_mel",)


@dataclass
class GroundingSet:
    root: Path
    arrays: dict
    meta: dict

    def __len__(self) -> int:
        return len(self.arrays["clip"])

    def __getattr__(self, name):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def categories(self) -> list[str]:
        return self.meta["categories"]


def audio_features(wave: np.ndarray, rate: int, where: str) -> np.ndarray:
    """The clip's 10 s (the runtime's padding and checks) as a log-mel; errors name ``where``."""
    try:
        return log_mel(prepare_audio(wave, rate)[0])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _decode_clip(job):
    """Worker: frames (and instance map) of one clip, resized to ``size``."""
    root, vid, clip, size, gt = job
    frames = load_frames(clip)
    if frames.shape[1:3] != (size, size):
        frames = np.clip(np.rint(area_resize(frames, size, size)), 0, 255).astype(np.uint8)
    side = read_sidecar(root, vid)
    instance = np.zeros((NUM_FRAMES, size, size), np.uint8)
    if side is not None:
        inst = side.instance
        if inst.shape[1:] != (size, size):      # nearest: ids are labels, not intensities
            ys = (np.arange(size) * inst.shape[1] // size)
            xs = (np.arange(size) * inst.shape[2] // size)
            inst = inst[:, ys][:, :, xs]
        instance = inst.astype(np.uint8)
    else:
        for frame, path in gt.items():           # the target's masks only: object 0
            mask = load_mask(path)
            cover = area_resize(mask[..., None].astype(np.float32), size, size)[..., 0]
            instance[frame][cover >= 0.5] = 1
    return frames, instance, side


def _extra_job(job):
    root, vid, count, seed, exclude = job
    from auditor_lite.training.extra_expressions import extra_expressions
    side = read_sidecar(root, vid)
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(hashlib.sha1(vid.encode()).hexdigest()[:8], 16)]))
    return vid, extra_expressions(side, rng, count, exclude=set(exclude))


def _own_audio(bench: Path, vid: str) -> Path:
    return bench / "media" / vid / "audio.wav"


def _audio_job(path):
    wave, rate = load_audio(path)
    return audio_features(wave, rate, str(path)).astype(np.float16)


def cache_key(bench: Path, split: str, mode: str, size: int, max_tokens: int, extra: int = 0) -> str:
    meta = bench / "train_test_meta_files"
    stamp = [str(bench.resolve()), split, mode, str(size), str(max_tokens), str(extra), str(CACHE_VERSION)]
    stamp += [f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(meta.glob("*")) if p.is_file()]
    return hashlib.sha1("|".join(stamp).encode()).hexdigest()[:16]


def build_grounding_set(bench, split: str, mode: str, out_dir, *, size: int = 128, max_tokens: int = 24,
                        workers: int = 2, progress: bool = True, extra_per_clip: int = 0,
                        seed: int = 0) -> GroundingSet:
    bench = Path(bench)
    out_dir = Path(out_dir)
    records = list(Benchmark(bench).records(split, mode))
    if not records:
        raise ValueError(f"{bench}: no {split}/{mode} expressions to build a grounding set from")
    started = time.perf_counter()
    vids = sorted({r.vid for r in records})
    clip_of = {v: i for i, v in enumerate(vids)}
    first = {}
    for r in records:
        first.setdefault(r.vid, r)
    C, E = len(vids), len(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    arr = {
        "frames": np.lib.format.open_memmap(out_dir / "frames.npy", "w+", np.uint8, (C, NUM_FRAMES, size, size, 3)),
        "instance": np.lib.format.open_memmap(out_dir / "instance.npy", "w+", np.uint8, (C, NUM_FRAMES, size, size)),
        "sounding": np.full((C, MAX_OBJECTS, NUM_FRAMES), -1, np.int8),
        "category": np.full((C, MAX_OBJECTS), -1, np.int32),
        "num_objects": np.zeros(C, np.int32),
        "clip": np.array([clip_of[r.vid] for r in records], np.int32),
        "kfid": np.array([r.kfid for r in records], np.int32),
        "target": np.full(E, -1, np.int32),
        "anchor": np.full(E, -1, np.int32),
    }
    categories: dict[str, int] = {}
    sides = {}
    jobs = [(bench, v, first[v].clip, size,
             {} if first[v].is_null else dict(first[v].gt_masks)) for v in vids]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        bar = tqdm(total=C, desc=f"grounding set {split}/{mode}: clips", file=sys.stderr, disable=not progress)
        for c, (frames, instance, side) in enumerate(pool.map(_decode_clip, jobs, chunksize=16)):
            arr["frames"][c] = frames
            arr["instance"][c] = instance
            sides[vids[c]] = side
            if side is not None:
                k = min(side.num_objects, MAX_OBJECTS)
                arr["num_objects"][c] = k
                arr["sounding"][c, :k] = side.sounding[:k].astype(np.int8)
                for j, obj in enumerate(side.objects[:k]):
                    arr["category"][c, j] = categories.setdefault(obj["category"], len(categories))
            else:
                arr["num_objects"][c] = 1
            bar.update(1)
        bar.close()
        audio_paths = {str(r.clip.audio_path) for r in records}
        if extra_per_clip > 0:       # extra expressions are heard with the clip's own audio
            audio_paths |= {str(_own_audio(bench, v)) for v in vids}
        audio_paths = sorted(audio_paths)
        mel_index = {p: i for i, p in enumerate(audio_paths)}
        mels = list(tqdm(pool.map(_audio_job, audio_paths, chunksize=16), total=len(audio_paths),
                         desc=f"grounding set {split}/{mode}: audio", file=sys.stderr, disable=not progress))
        extras = []
        if extra_per_clip > 0:
            own = {}
            for r in records:
                own.setdefault(r.vid, []).append(r.exp)
            jobs = [(bench, v, extra_per_clip, seed, own[v]) for v in vids if sides[v] is not None]
            extras = list(tqdm(pool.map(_extra_job, jobs, chunksize=32), total=len(jobs),
                               desc=f"grounding set {split}/{mode}: extra expressions", file=sys.stderr,
                               disable=not progress))
    arr["log_mel"] = np.stack(mels)
    arr["mel_row"] = np.array([mel_index[str(r.clip.audio_path)] for r in records], np.int32)
    cues, needs, has_side = [], [], []
    for e, r in enumerate(records):
        side = sides[r.vid]
        info = side.expression(r.uid) if side is not None else None
        has_side.append(info is not None)
        if info is not None:
            arr["target"][e] = -1 if info["null"] else info["target"]
            arr["anchor"][e] = -1 if info["anchor"] is None else info["anchor"]
            cues.append("null" if info["null"] else info["cue"])
            needs.append(bool(info["needs_audio"]))
        else:
            arr["target"][e] = -1 if r.is_null else 0
            cues.append("null" if r.is_null else "unknown")
            needs.append(False)
    uids, texts, extra = [r.uid for r in records], [r.exp for r in records], [False] * E
    more = {"clip": [], "kfid": [], "target": [], "anchor": [], "mel_row": []}
    for vid, items in extras:
        c = clip_of[vid]
        for n, item in enumerate(items):
            areas = (arr["instance"][c] == item["target"] + 1).reshape(NUM_FRAMES, -1).sum(1)
            more["clip"].append(c)
            more["kfid"].append(int(areas.argmax()))
            more["target"].append(item["target"])
            more["anchor"].append(-1 if item["anchor"] is None else item["anchor"])
            more["mel_row"].append(mel_index[str(_own_audio(bench, vid))])
            uids.append(f"extra:{vid}:{n}")
            texts.append(item["text"])
            cues.append(item["cue"])
            needs.append(item["needs_audio"])
            has_side.append(True)
            extra.append(True)
    for name, values in more.items():
        if values:
            arr[name] = np.concatenate([arr[name], np.array(values, arr[name].dtype)])
    arr["tokens"], arr["token_mask"] = encode_tokens(texts, max_tokens)
    meta = {"version": CACHE_VERSION, "bench": str(bench.resolve()), "split": split, "mode": mode,
            "size": size, "max_tokens": max_tokens, "uids": uids, "vids": vids, "expressions": texts,
            "cues": cues, "needs_audio": needs, "has_sidecar": has_side, "extra": extra,
            "categories": list(categories), "seconds": round(time.perf_counter() - started, 1)}
    for name in ("sounding", "category", "num_objects", "clip", "kfid", "target", "anchor",
                 "mel_row", "log_mel", "tokens", "token_mask"):
        np.save(out_dir / f"{name}.npy", arr[name])
    arr["frames"].flush()
    arr["instance"].flush()
    (out_dir / "meta.json").write_text(json.dumps(meta))      # last: its presence marks a complete set
    return load_grounding_set(out_dir)


def encode_tokens(texts: list[str], max_tokens: int, batch: int = 128):
    """MiniLM token states of each distinct text once (templates repeat), float16."""
    from auditor_lite.model.text import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    unique = sorted(set(texts))
    states = np.zeros((len(unique), max_tokens, 384), np.float16)
    masks = np.zeros((len(unique), max_tokens), np.uint8)
    for i in range(0, len(unique), batch):
        h, m = encoder.encode_tokens(unique[i:i + batch], max_tokens)
        states[i:i + batch] = h.numpy().astype(np.float16)
        masks[i:i + batch] = m.numpy().astype(np.uint8)
    index = {t: i for i, t in enumerate(unique)}
    rows = np.array([index[t] for t in texts], np.int64)
    return states[rows], masks[rows]


def load_grounding_set(out_dir) -> GroundingSet:
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "meta.json").read_text())
    arrays = {n: np.load(out_dir / f"{n}.npy", mmap_mode="r") for n in CLIP_ARRAYS + EXPR_ARRAYS + OTHER_ARRAYS}
    if (out_dir / "motion.npy").is_file():
        arrays["motion"] = np.load(out_dir / "motion.npy", mmap_mode="r")
    return GroundingSet(out_dir, arrays, meta)


def _motion_job(frames: np.ndarray) -> np.ndarray:
    return cell_motion(frames).astype(np.float16)


def ensure_cell_motion(data: GroundingSet, workers: int = 2, progress: bool = True) -> GroundingSet:
    """Add ``motion`` (C, 10, N, 4) float16, :func:`auditor_lite.motion.cell_motion` of every
    clip's frames (it does not depend on the key frame), to a cached set that lacks it: about
    30 ms per clip, computed once."""
    if "motion" in data.arrays:
        return data
    frames = data.frames
    out = np.lib.format.open_memmap(data.root / "motion.tmp.npy", mode="w+", dtype=np.float16,
                                    shape=(len(frames), NUM_FRAMES, (frames.shape[2] // CELL) ** 2,
                                           NUM_MOTION_FEATURES))
    chunks = (np.asarray(frames[i]) for i in range(len(frames)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = pool.map(_motion_job, chunks, chunksize=16)
        for i, motion in enumerate(tqdm(done, total=len(frames), desc="cell motion", disable=not progress)):
            out[i] = motion
    out.flush()
    del out
    os.replace(data.root / "motion.tmp.npy", data.root / "motion.npy")
    data.arrays["motion"] = np.load(data.root / "motion.npy", mmap_mode="r")
    return data


def grounding_set(bench, split: str, mode: str, cache_root=None, *, size: int = 128,
                  max_tokens: int = 24, progress: bool = True, extra_per_clip: int = 0) -> GroundingSet:
    """The cached set for (bench, split, mode), built on first use."""
    bench = Path(bench)
    cache_root = Path(cache_root) if cache_root else bench.parent / ".grounding_cache"
    key = cache_key(bench, split, mode, size, max_tokens, extra_per_clip)
    out_dir = cache_root / f"{bench.name}-{split}-{mode}-{key}"
    workers = min(2, os.cpu_count() or 1)
    if (out_dir / "meta.json").is_file():
        data = load_grounding_set(out_dir)
    else:
        data = build_grounding_set(bench, split, mode, out_dir, size=size, max_tokens=max_tokens,
                                   workers=workers, progress=progress, extra_per_clip=extra_per_clip)
    return ensure_cell_motion(data, workers, progress)
