"""Write a benchmark in the MQ-RAVSBench layout (docs/mq-ravsbench.md section 3).

Pixels go to disk as soon as they are added (frames, audio, masks); only the small JSON entries are
kept in memory until :meth:`BenchmarkWriter.close` writes ``metadata.csv`` and the JSON files.

What is written, and how :mod:`auditor_lite.data.reader` reads it back unchanged:

- ``gt_masks[f]`` -> ``gt_mask/<vid>/fid_<fid>/0000<f>.png`` (the Ref-AVS ground-truth layout).
  The ground truth of a frame is also that frame's ``gt_mask_path`` entry, which upstream, and our
  reader, treat as the ``perfect`` candidate ``perfect-0``. A ``perfect`` :class:`MaskSpec` is
  therefore optional; when given it must equal the ground truth and its label is stored with it.
- every other candidate -> ``masks/<split>/<uid>/<frame>/<type>-<k>.png``, ``k`` = its position in
  its type's list for that frame: the ``cand_id`` readers derive.
- ``train``: one entry of ``train_audit_only_filtered.json`` (dict keyed by uid) from the
  key-frame candidates, each with an upstream-style ``response`` holding ``<iou_token>``.
- ``test_s`` / ``test_u``: an item of ``<split>_image_filtered.json`` (key-frame candidates) and an
  item of ``<split>_video_filtered.json`` (every frame's candidates); both point at the same PNGs.
- every candidate carries ``iou_to_gt``, ``rank`` and ``action`` (also the perfect one), so no
  reader default is needed. JSON is written compactly (no indent); metadata.csv has a header.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auditor_lite import media
from auditor_lite.data.schema import (
    ACTIONS, IMAGE_JSON, IOU_PLACEHOLDER, MASK_TYPES, META_DIR, METADATA_CSV, NULL_UID_PREFIX,
    NUM_FRAMES, SAMPLE_RATE, SPLITS, TRAIN_JSON, VIDEO_JSON,
)

# Directories the writer owns inside ROOT: the only things ``overwrite=True`` deletes.
LAYOUT_DIRS = (META_DIR, "media", "media_cross", "gt_mask", "masks")
PART_NEG_TYPES = ("cutout", "erode", "dilate", "merge")


@dataclass
class MaskSpec:
    """One candidate as a generator produces it."""

    frame: int
    mask_type: str  # one of MASK_TYPES
    rank: int  # 1 (Hard) / 2 (Medium) for cutout/erode/dilate; 1 for others
    iou_to_gt: float
    action: str
    mask: np.ndarray  # bool HxW


def audit_response(mask_type: str, action: str) -> str:
    """The upstream target text; ``<iou_token>`` is replaced by ``<iou> 0.7100 </iou>`` at training."""
    return (f"<audit> {IOU_PLACEHOLDER} <mask_type> {mask_type} </mask_type> "
            f"<action> {action} </action> </audit>")


class BenchmarkWriter:
    """Context manager writing one benchmark; ``close()`` writes metadata.csv and the JSON files."""

    def __init__(self, root, overwrite: bool = False):
        self.root = Path(root)
        existing = [d for d in LAYOUT_DIRS if (self.root / d).exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{self.root} already holds a benchmark ({', '.join(existing)}); "
                                  "pass overwrite=True (--overwrite) to replace it")
        for name in existing:
            shutil.rmtree(self.root / name)
        self.root.mkdir(parents=True, exist_ok=True)
        self._frame_shapes: dict[str, tuple[int, int]] = {}  # vid -> (H, W)
        self._has_cross_audio: set[str] = set()
        self._meta_rows: list[tuple] = []
        self._uids: set[str] = set()
        self._train: dict[str, dict] = {}
        self._image_items: dict[str, list[dict]] = {"test_s": [], "test_u": []}
        self._video_items: dict[str, list[dict]] = {"test_s": [], "test_u": []}
        self._gt_digests: dict[str, str] = {}  # rel path -> digest, to catch conflicting GT masks
        self._closed = False

    def __enter__(self) -> BenchmarkWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception the JSON is not written: a half benchmark must not look complete.
        if exc_type is None:
            self.close()

    # ----------------------------------------------------------------------------- clips
    def add_clip(self, vid: str, frames: np.ndarray, audio: np.ndarray,
                 cross_audio: np.ndarray | None = None) -> None:
        """Frames uint8 (10,H,W,3) -> media/<vid>/frames/{0..9}.jpg; 16 kHz audio -> audio.wav.

        ``cross_audio`` -> media_cross/<vid>/audio.wav, what the clip's ``null_`` uids are heard with.
        """
        self._check_open()
        if not vid or "/" in vid or "\\" in vid:
            raise ValueError(f"add_clip: vid {vid!r} must be a non-empty name without path separators")
        if vid in self._frame_shapes:
            raise ValueError(f"add_clip: clip {vid!r} was already added")
        frames = np.asarray(frames)
        if frames.shape[:1] != (NUM_FRAMES,) or frames.ndim != 4 or frames.shape[3] != 3 \
                or frames.dtype != np.uint8:
            raise ValueError(f"add_clip({vid}): frames must be uint8 ({NUM_FRAMES}, H, W, 3), "
                             f"got {frames.dtype} {frames.shape}")
        clip_dir = self.root / "media" / vid
        for index, frame in enumerate(frames):
            media.save_frame(clip_dir / "frames" / f"{index}.jpg", frame)
        media.save_audio(clip_dir / "audio.wav", audio, SAMPLE_RATE)
        if cross_audio is not None:
            media.save_audio(self.root / "media_cross" / vid / "audio.wav", cross_audio, SAMPLE_RATE)
            self._has_cross_audio.add(vid)
        self._frame_shapes[vid] = frames.shape[1:3]

    # ----------------------------------------------------------------------- expressions
    def add_expression(self, *, split: str, uid: str, vid: str, fid: int, exp: str, kfid: int,
                       gt_masks: dict[int, np.ndarray], candidates: list[MaskSpec]) -> None:
        """Record one expression; its masks are written now, its JSON entries on close()."""
        self._check_open()
        where = f"add_expression(uid={uid!r})"
        if split not in SPLITS:
            raise ValueError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        if not uid or "/" in uid or "\\" in uid or "," in uid:
            raise ValueError(f"{where}: uid must be non-empty, without '/', '\\' or ','")
        if uid in self._uids:
            raise ValueError(f"{where}: uid was already added")
        if vid not in self._frame_shapes:
            raise ValueError(f"{where}: clip {vid!r} was not added (call add_clip first)")
        if uid.startswith(NULL_UID_PREFIX) and vid not in self._has_cross_audio:
            raise ValueError(f"{where}: a null_ uid needs cross_audio for clip {vid!r}")
        if not 0 <= int(kfid) < NUM_FRAMES:
            raise ValueError(f"{where}: kfid {kfid} is outside 0..{NUM_FRAMES - 1}")
        shape = self._frame_shapes[vid]
        for spec in candidates:
            self._check_spec(where, spec, shape)
        for frame, gt in gt_masks.items():
            self._check_mask(f"{where} gt_masks[{frame}]", gt, shape, int(frame))
        frames = sorted({int(f) for f in gt_masks} | {s.frame for s in candidates})
        for frame in frames:  # before any file is written, so a refused expression leaves none
            self._check_perfect(where, frame, gt_masks.get(frame),
                                [s for s in candidates if s.frame == frame and s.mask_type == "perfect"])

        # Only the frames this split's JSON refers to are written.
        if split == "train":
            frames = [kfid] if kfid in frames else []
        frame_entries = {f: self._frame_entry(split, uid, vid, fid, f, gt_masks.get(f),
                                              [s for s in candidates if s.frame == f],
                                              with_response=split == "train", where=where)
                         for f in frames}

        self._uids.add(uid)
        self._meta_rows.append((vid, uid, split, int(fid), exp, int(kfid)))
        key_entry = frame_entries.get(kfid, self._empty_entry())
        if split == "train":
            self._train[uid] = key_entry
            return
        image_path = f"media/{vid}/frames/{kfid}.jpg"
        self._image_items[split].append({"uid": uid, "image_path": image_path, "vid": vid,
                                         "exp": exp, "kfid": int(kfid), **key_entry})
        self._video_items[split].append({
            "uid": uid, "vid": vid, "exp": exp, "kfid": int(kfid),
            "frames": [{"frame": f, "image_path": f"media/{vid}/frames/{f}.jpg", **entry}
                       for f, entry in frame_entries.items()]})

    def _frame_entry(self, split, uid, vid, fid, frame, gt, specs, *, with_response, where) -> dict:
        entry = self._empty_entry()
        perfect = [s for s in specs if s.mask_type == "perfect"]
        if gt is not None:
            rel = f"gt_mask/{vid}/fid_{fid}/{frame:05d}.png"
            self._write_gt(rel, gt, where)
            label = perfect[0] if perfect else MaskSpec(frame, "perfect", 1, 1.0, "accept", gt)
            entry["gt_mask_path"] = self._candidate_json(rel, label, with_response)
        counts: dict[str, int] = {}
        for spec in specs:
            if spec.mask_type == "perfect":
                continue
            k = counts.get(spec.mask_type, 0)
            counts[spec.mask_type] = k + 1
            rel = f"masks/{split}/{uid}/{frame}/{spec.mask_type}-{k}.png"
            media.save_mask(self.root / rel, spec.mask)
            item = self._candidate_json(rel, spec, with_response)
            if spec.mask_type in PART_NEG_TYPES:
                entry["part_neg_masks"][spec.mask_type].append(item)
            elif spec.mask_type == "full_neg":
                entry["full_neg_masks"].append(item)
            else:
                entry["null_masks"].append(item)
        return entry

    @staticmethod
    def _check_perfect(where: str, frame: int, gt, perfect: list[MaskSpec]) -> None:
        if len(perfect) > 1:
            raise ValueError(f"{where}: frame {frame} has {len(perfect)} perfect candidates; "
                             "the layout holds one ground truth per frame")
        if perfect and gt is None:
            raise ValueError(f"{where}: frame {frame} has a perfect candidate but no gt_masks[{frame}]")
        if perfect and not np.array_equal(np.asarray(perfect[0].mask, bool), np.asarray(gt, bool)):
            raise ValueError(f"{where}: the perfect candidate of frame {frame} differs from gt_masks")

    @staticmethod
    def _empty_entry() -> dict:
        return {"gt_mask_path": {}, "part_neg_masks": {t: [] for t in PART_NEG_TYPES},
                "full_neg_masks": [], "null_masks": []}

    @staticmethod
    def _candidate_json(rel: str, spec: MaskSpec, with_response: bool) -> dict:
        item = {"mask_path": rel, "iou_to_gt": float(spec.iou_to_gt), "rank": int(spec.rank),
                "action": spec.action}
        if with_response:
            item["response"] = audit_response(spec.mask_type, spec.action)
        return item

    def _write_gt(self, rel: str, gt: np.ndarray, where: str) -> None:
        # Several expressions of one object share its GT files: write once, refuse a different mask.
        bits = np.asarray(gt, dtype=bool)
        digest = hashlib.sha1(np.packbits(bits).tobytes() + str(bits.shape).encode()).hexdigest()
        previous = self._gt_digests.get(rel)
        if previous is None:
            media.save_mask(self.root / rel, bits)
            self._gt_digests[rel] = digest
        elif previous != digest:
            raise ValueError(f"{where}: {rel} was already written with a different mask "
                             "(same vid and fid must mean the same object)")

    @staticmethod
    def _check_mask(where: str, mask, shape, frame: int) -> None:
        if not 0 <= frame < NUM_FRAMES:
            raise ValueError(f"{where}: frame {frame} is outside 0..{NUM_FRAMES - 1}")
        mask = np.asarray(mask)
        if mask.shape != tuple(shape):
            raise ValueError(f"{where}: mask shape {mask.shape} differs from the frames' {tuple(shape)}")

    def _check_spec(self, where: str, spec: MaskSpec, shape) -> None:
        label = f"{where} {spec.mask_type}@frame {spec.frame}"
        if spec.mask_type not in MASK_TYPES:
            raise ValueError(f"{label}: mask_type must be one of {', '.join(MASK_TYPES)}")
        if spec.action not in ACTIONS:
            raise ValueError(f"{label}: action {spec.action!r} is not one of {', '.join(ACTIONS)}")
        iou = float(spec.iou_to_gt)
        if not 0.0 <= iou <= 1.0:  # also rejects NaN
            raise ValueError(f"{label}: iou_to_gt {spec.iou_to_gt} is outside [0, 1]")
        if int(spec.rank) < 1:
            raise ValueError(f"{label}: rank must be >= 1, got {spec.rank}")
        self._check_mask(label, spec.mask, shape, int(spec.frame))

    # ----------------------------------------------------------------------------- close
    def close(self) -> None:
        """Write metadata.csv and the JSON files of every split that has expressions."""
        if self._closed:
            return
        meta_dir = self.root / META_DIR
        meta_dir.mkdir(parents=True, exist_ok=True)
        with open(meta_dir / METADATA_CSV, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("vid", "uid", "split", "fid", "exp", "kfid"))
            writer.writerows(self._meta_rows)
        if self._train:
            _write_json(meta_dir / TRAIN_JSON, self._train)
        for split in ("test_s", "test_u"):
            if self._image_items[split]:
                _write_json(meta_dir / IMAGE_JSON.format(split=split), self._image_items[split])
                _write_json(meta_dir / VIDEO_JSON.format(split=split), self._video_items[split])
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"BenchmarkWriter({self.root}) is closed")


def _write_json(path: Path, payload) -> None:
    # Write then rename, so an interrupted run never leaves a truncated JSON behind.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=None, separators=(",", ":"), ensure_ascii=False)
    os.replace(tmp, path)
