"""Calibration samples for static INT8 quantization, drawn from the benchmark.

A sample is one candidate mask with its clip's context inputs: the fused graph's five inputs at
N = 1. (Optimum's ``ORTQuantizer.fit`` wraps every row of its dataset in a list, adding a leading
batch axis to every input; the masks' axis 0 is N, so one mask per row is the layout that survives
it, and N = 1 loses nothing: the masks of a call are processed independently, so an activation's
range over 500 one-mask calls equals its range over the same masks batched by clip.)

Selection is stratified by mask type: the expressions are visited in a seeded random order until
every type can fill an equal share of ``samples`` (so clips are reused by several masks and the
saved file stays small), then each type gets an equal share, the shares of short types going to
the others (water-filling). Only key-frame candidates are used (image mode, the train split's only
kind).

The samples are saved as ``calibration_samples.npz`` keyed by input name: the clip inputs once per
clip (``frames``, ``key_frame``, ``audio``, ``text_embedding``: ``(C, ...)``) and ``masks``
``(M, 1, K, K)`` with ``clip_index`` ``(M,)`` naming each mask's clip, plus ``mask_type``,
``cand_id``, ``iou`` ``(M,)`` and ``uid`` ``(C,)`` for provenance.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from auditor_lite.media import load_audio, load_frames, load_mask
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import MASK_TYPES, Candidate, DataError, ExpressionRecord
from auditor_lite.graph_io import GRAPH_INPUTS, LEGACY
from auditor_lite.preprocess import prepare_masks

CLIP_INPUTS = GRAPH_INPUTS[LEGACY]["context"]
SAMPLES_FILE = "calibration_samples.npz"
DEFAULT_SAMPLES = 512


@dataclass
class CalibrationSamples:
    frames: np.ndarray          # (C, 10, 3, S, S) float32
    key_frame: np.ndarray       # (C, 3, K, K) float32
    audio: np.ndarray           # (C, samples) float32
    text_embedding: np.ndarray  # (C, 384) float32
    masks: np.ndarray           # (M, 1, K, K) float32 in {0, 1}
    clip_index: np.ndarray      # (M,) int64 into the clip arrays
    mask_type: np.ndarray       # (M,) str
    cand_id: np.ndarray         # (M,) str
    iou: np.ndarray             # (M,) float32, the candidate's true IoU
    uid: np.ndarray             # (C,) str

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def num_clips(self) -> int:
        return len(self.uid)

    def type_counts(self) -> dict[str, int]:
        counts = Counter(self.mask_type.tolist())
        return {t: counts[t] for t in MASK_TYPES if counts[t]}

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in fields(self)})
        return path

    @classmethod
    def load(cls, path) -> "CalibrationSamples":
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "calibration samples file not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [f.name for f in fields(cls) if f.name not in data.files]
                if missing:
                    raise DataError(path, f"missing array(s) {', '.join(missing)}", missing[0])
                samples = cls(**{f.name: data[f.name] for f in fields(cls)})
        except (OSError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(path, f"not a readable .npz file ({exc})") from None
        if samples.clip_index.size and (samples.clip_index.min() < 0
                                        or samples.clip_index.max() >= samples.num_clips):
            raise DataError(path, f"indices outside 0..{samples.num_clips - 1}", "clip_index")
        return samples


class CalibrationRows:
    """The part of a ``datasets.Dataset`` that Optimum's calibration reads, for one graph.

    ``ORTQuantizer.fit`` iterates the rows (dicts of input name -> array without the batch axis;
    its reader adds the axis), and ``AutoCalibrationConfig`` records ``info``, ``split`` and
    ``num_rows``. The rows are made on demand from the sample arrays, so no copy is held.
    """

    def __init__(self, graph: str, make_row: Callable[[int], dict], indices, split: str):
        self.graph = graph
        self._make_row = make_row
        self.indices = list(indices)
        self.split = split
        self.info = SimpleNamespace(builder_name="auditor-lite-benchmark", config_name=graph)

    @property
    def num_rows(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[dict]:
        return (self._make_row(i) for i in self.indices)

    def chunks(self, size: int) -> list["CalibrationRows"]:
        """Consecutive pieces of at most ``size`` rows (calibration memory grows with a piece)."""
        return [CalibrationRows(self.graph, self._make_row, self.indices[i:i + size], self.split)
                for i in range(0, len(self.indices), size)]


def fused_rows(samples: CalibrationSamples, split: str = "train") -> CalibrationRows:
    def row(i: int) -> dict:
        c = samples.clip_index[i]
        return {"frames": samples.frames[c], "key_frame": samples.key_frame[c], "audio": samples.audio[c],
                "text_embedding": samples.text_embedding[c], "masks": samples.masks[i]}
    return CalibrationRows("auditor", row, range(len(samples)), split)


def context_rows(samples: CalibrationSamples, split: str = "train") -> CalibrationRows:
    def row(c: int) -> dict:
        return {name: getattr(samples, name)[c] for name in CLIP_INPUTS}
    return CalibrationRows("context", row, range(samples.num_clips), split)


def masks_rows(samples: CalibrationSamples, contexts: np.ndarray, split: str = "train") -> CalibrationRows:
    """Rows of the split masks graph; ``contexts`` ``(C, L, D)`` from the FP32 context graph."""
    def row(i: int) -> dict:
        c = samples.clip_index[i]
        return {"context": contexts[c], "masks": samples.masks[i], "key_frame": samples.key_frame[c]}
    return CalibrationRows("masks", row, range(len(samples)), split)


def water_fill(available: dict[str, int], total: int) -> dict[str, int]:
    """Equal shares of ``total`` over the types; a type with fewer than its share gives the rest
    to the others. ``{'a': 2, 'b': 10, 'c': 10}, 12 -> {'a': 2, 'b': 5, 'c': 5}``."""
    shares, remaining = {}, total
    pending = sorted(available, key=lambda t: available[t])
    while pending:
        share = remaining // len(pending)
        name = pending[0]
        if available[name] <= share:
            shares[name] = available[name]
        else:  # every pending type can fill an equal share: split the rest evenly
            extra = remaining - share * len(pending)
            for k, other in enumerate(pending):
                shares[other] = share + (1 if k < extra else 0)
            break
        remaining -= shares[name]
        pending.pop(0)
    return shares


def select_stratified(records: list[ExpressionRecord], samples: int,
                      seed: int = 0) -> list[tuple[ExpressionRecord, list[Candidate]]]:
    """Stratified choice of ``samples`` key-frame candidates (see the module docstring)."""
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records))
    all_types = {c.mask_type for r in records for c in r.candidates if c.frame == r.kfid}
    if not all_types:
        raise ValueError("no key-frame candidates to calibrate with")
    quota = math.ceil(samples / len(all_types))
    pool: dict[str, list[tuple[int, Candidate]]] = {t: [] for t in all_types}
    for position in order:
        record = records[position]
        for cand in record.candidates:
            if cand.frame == record.kfid:
                pool[cand.mask_type].append((int(position), cand))
        if all(len(items) >= quota for items in pool.values()):
            break
    shares = water_fill({t: len(items) for t, items in pool.items()}, samples)
    chosen: list[tuple[int, Candidate]] = []
    for mask_type in sorted(pool):
        items = pool[mask_type]
        for k in sorted(rng.choice(len(items), size=shares[mask_type], replace=False)):
            chosen.append(items[k])
    by_record: dict[int, list[Candidate]] = {}
    for position, cand in chosen:
        by_record.setdefault(position, []).append(cand)
    return [(records[p], by_record[p]) for p in sorted(by_record)]


def build_samples(bench, auditor, samples: int = DEFAULT_SAMPLES, split: str = "train", seed: int = 0,
                  progress: bool = True) -> CalibrationSamples:
    """Decode and preprocess the stratified selection of ``split`` (train mode for ``train``,
    image mode for a test split) through ``auditor``'s own session (an FP32
    :class:`~auditor_lite.runtime.Auditor` of the directory being quantized): the graphs are
    calibrated on exactly the tensors the runtime will feed them."""
    benchmark = Benchmark(bench)
    mode = "train" if split == "train" else "image"
    records = list(benchmark.records(split, mode))
    if not records:
        raise DataError(benchmark.json_path(split, mode), f"no {split}/{mode} expressions to calibrate with")
    selection = select_stratified(records, samples, seed)
    clip_arrays: dict[str, list] = {name: [] for name in CLIP_INPUTS}
    masks, clip_index, mask_type, cand_id, iou, uids = [], [], [], [], [], []
    key_size = auditor.config.key_size
    for c, (record, cands) in enumerate(tqdm(selection, desc=f"calibration samples {split}",
                                             unit="expr", file=sys.stderr, disable=not progress)):
        wave, rate = load_audio(record.clip.audio_path)
        session = auditor.session(record.exp, load_frames(record.clip), wave, sample_rate=rate,
                                  allow_silent=True)
        inputs = session.context_feed(record.kfid)
        for name in CLIP_INPUTS:
            clip_arrays[name].append(inputs[name][0])
        masks.append(np.concatenate([prepare_masks(load_mask(x.mask_path), key_size) for x in cands]))
        clip_index += [c] * len(cands)
        mask_type += [x.mask_type for x in cands]
        cand_id += [x.cand_id for x in cands]
        iou += [x.iou_to_gt for x in cands]
        uids.append(record.uid)
    # Shuffled, so that any chunk of the rows holds every type (calibration runs in chunks).
    order = np.random.default_rng(seed + 1).permutation(len(clip_index))
    return CalibrationSamples(
        **{name: np.stack(clip_arrays[name]).astype(np.float32) for name in CLIP_INPUTS},
        masks=np.concatenate(masks)[order], clip_index=np.asarray(clip_index, np.int64)[order],
        mask_type=np.asarray(mask_type)[order], cand_id=np.asarray(cand_id)[order],
        iou=np.asarray(iou, np.float32)[order], uid=np.asarray(uids))
