"""Read a benchmark in the MQ-RAVSBench layout (docs/mq-ravsbench.md section 3) as typed records.

Rules, following the released loaders where they define one and ours where they do not:

- ``metadata.csv`` is read positionally (vid, uid, split, fid, exp, kfid); a first row that is not
  data (its split is not a known split and its fid is not an integer) is a header. Rows of other
  splits (val, test_n, ...) are ignored. A uid listed twice in a split keeps its last row, as
  upstream's dict does (counted in ``duplicates``). ``vid`` is the column, or derived from the uid
  when the column is empty.
- For a record, metadata wins over the JSON item (vid, exp, kfid), as upstream does. JSON items
  whose uid is not in metadata.csv under that split are skipped and counted (``not_in_metadata``).
- Type names are normalised with :func:`schema.normalize_mask_type`; the GT entry is candidate
  ``perfect-0``; other ids are ``<type>-<k>``, k counting that type's entries within the frame.
- ``iou_to_gt`` missing: perfect -> 1.0, full_neg and null -> 0.0, any other type -> error. It
  must be a number (a numeric string is accepted) in [0, 1].
- ``action`` missing: :func:`schema.action_from_iou`; present: :func:`schema.normalize_action`.
- ``rank`` is an integer (a numeric string such as ``"2"`` or an integral float such as ``2.0`` is
  accepted); anything else (``"abc"``, ``1.5``, ``true``) is an error. Missing -> -1
  (``ALL_RANKS``). perfect/merge/full_neg/null take any rank: the protocol evaluates them over all
  ranks. cutout/erode/dilate with a rank other than 1 (Hard) / 2 (Medium) -- 0, 3, -1, missing --
  are read too, so that one odd item does not make a whole benchmark unreadable; they fall in no
  H/M setting (``Candidate.setting`` is the bare type) and count only in the overall numbers.
  Each full pass over a file keeps their counts in ``unusual_ranks[(split, mode)]`` and emits one
  :class:`schema.DataWarning` summarising them per type.
- ``response`` is kept as stored (with ``<iou_token>``); :func:`training_response` fills it in.
- Paths are relative to ROOT or absolute. Records hold paths, never pixels.

Errors are :class:`DataError` naming the file and the field, e.g.
``.../test_s_image_filtered.json [item 3 uid=abc part_neg_masks.cutout[0].iou_to_gt]: 1.7 is
outside [0, 1]``. With ``lenient=True`` a bad item (or metadata row) is skipped instead, counted in
``skipped`` by reason, and its message kept in ``messages`` (the first 50).
"""

from __future__ import annotations

import collections
import csv
import math
import os
import warnings
from pathlib import Path
from typing import Iterator, NamedTuple

from auditor_lite.jsonio import read_json
from auditor_lite.data.schema import (
    ALL_RANKS, IMAGE_JSON, IOU_PLACEHOLDER, META_DIR, METADATA_CSV, NULL_UID_PREFIX, NUM_FRAMES,
    PROTOCOL_RANKS, RANKED_TYPES, SPLITS, TRAIN_JSON, VIDEO_JSON, Candidate, Clip, DataError,
    DataWarning, ExpressionRecord, action_from_iou, normalize_action, normalize_mask_type,
    vid_from_uid,
)

MAX_MESSAGES = 50
TEST_SPLITS = ("test_s", "test_u")
RANK_MISSING = "missing"  # the rank label counted for a ranked candidate without a rank


class MetaRow(NamedTuple):
    vid: str
    uid: str
    split: str
    fid: int
    exp: str
    kfid: int


class ItemError(DataError):
    """A DataError confined to one item or row: lenient mode skips it under ``reason``."""

    def __init__(self, path, message: str, field_name: str | None, reason: str):
        super().__init__(path, message, field_name)
        self.reason = reason


def training_response(candidate: Candidate) -> str:
    """The upstream training target: ``<iou_token>`` replaced by ``<iou> 0.7100 </iou>``."""
    text = candidate.response or ""
    return text.replace(IOU_PLACEHOLDER, f"<iou> {candidate.iou_to_gt:.4f} </iou>")


class Benchmark:
    """A benchmark directory; ``records(split, mode)`` yields one ExpressionRecord per expression."""

    def __init__(self, root, *, lenient: bool = False, check_media: bool = False):
        self.root = Path(root)
        self.lenient = lenient
        self.check_media = check_media
        self.skipped: collections.Counter = collections.Counter()
        self.duplicates: collections.Counter = collections.Counter()  # split -> repeated uids
        self.messages: list[str] = []
        # (split, mode) -> Counter of (mask_type, rank or RANK_MISSING) over the ranked candidates
        # outside 1/2, from the latest full pass over that file.
        self.unusual_ranks: dict[tuple[str, str], collections.Counter] = {}
        self.meta_dir = self.root / META_DIR
        self._by_split: dict[str, dict[str, MetaRow]] = {s: {} for s in SPLITS}
        self._clips_checked: set[Path] = set()
        self._read_metadata()

    # ------------------------------------------------------------------------ metadata
    def _read_metadata(self) -> None:
        path = self.meta_dir / METADATA_CSV
        if not path.is_file():
            raise DataError(path, "metadata.csv not found (is this an MQ-RAVSBench root?)")
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(path, f"not a readable CSV file ({exc})") from None
        self._root_abs = os.path.abspath(self.root)
        data_rows = [row for row in rows if row and any(cell.strip() for cell in row)]
        if not data_rows or (len(data_rows) == 1 and _is_header(data_rows[0])):
            raise DataError(path, "has no rows: expected vid,uid,split,fid,exp,kfid lines (the spec's "
                                  "metadata.csv, with or without a header)")
        for line, row in enumerate(rows, start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if line == 1 and _is_header(row):
                continue
            try:
                meta = _parse_meta_row(path, line, row)
            except ItemError as err:
                self._skip_or_raise(err)
                continue
            if meta is None:
                continue
            table = self._by_split[meta.split]
            if meta.uid in table:
                self.duplicates[meta.split] += 1
            table[meta.uid] = meta

    def metadata(self) -> dict[str, MetaRow]:
        """uid -> MetaRow over the train/test_s/test_u rows."""
        merged: dict[str, MetaRow] = {}
        for split in SPLITS:
            merged.update(self._by_split[split])
        return merged

    def split_metadata(self, split: str) -> dict[str, MetaRow]:
        return dict(self._by_split[split])

    # ------------------------------------------------------------------------- records
    def json_path(self, split: str, mode: str) -> Path:
        if mode == "train":
            if split != "train":
                raise ValueError(f"mode 'train' reads split 'train', not {split!r}")
            return self.meta_dir / TRAIN_JSON
        if mode not in ("image", "video") or split not in TEST_SPLITS:
            raise ValueError(f"(split, mode) must be ('train', 'train') or (test_s|test_u, image|video), "
                             f"got ({split!r}, {mode!r})")
        return self.meta_dir / (IMAGE_JSON if mode == "image" else VIDEO_JSON).format(split=split)

    def available(self) -> list[tuple[str, str]]:
        """The (split, mode) pairs whose JSON file exists."""
        pairs = [("train", "train")] + [(s, m) for s in TEST_SPLITS for m in ("image", "video")]
        return [(s, m) for s, m in pairs if self.json_path(s, m).is_file()]

    def records(self, split: str, mode: str) -> Iterator[ExpressionRecord]:
        """Lazily yield the records of one (split, mode), in JSON order."""
        path = self.json_path(split, mode)
        payload = _load_json(path)
        if not isinstance(payload, (dict, list)):
            raise DataError(path, f"top level must be a list or a dict of items, got {type(payload).__name__}")
        items = payload.items() if isinstance(payload, dict) else ((None, it) for it in payload)
        meta_rows = self._by_split[split]
        unusual: collections.Counter = collections.Counter()
        for index, (key, item) in enumerate(items):
            uid = item.get("uid", key) if isinstance(item, dict) else key
            where = f"item {index} uid={uid}"
            try:
                if not isinstance(item, dict):
                    raise ItemError(path, f"expected an object, got {type(item).__name__}", where, "bad_item")
                if not isinstance(uid, str) or not uid:
                    raise ItemError(path, "missing uid", where, "missing_uid")
                if uid not in meta_rows:
                    self.skipped["not_in_metadata"] += 1  # upstream skips these silently
                    continue
                # Counted per item, so that an item skipped later in lenient mode adds nothing.
                item_ranks: collections.Counter = collections.Counter()
                record = self._record(path, where, split, mode, meta_rows[uid], item, item_ranks)
            except ItemError as err:
                self._skip_or_raise(err)
                continue
            unusual.update(item_ranks)
            yield record
        self.unusual_ranks[(split, mode)] = unusual
        if unusual:
            warnings.warn(f"{path}: {format_unusual_ranks(unusual)}", DataWarning, stacklevel=2)

    def _record(self, path, where, split, mode, meta: MetaRow, item: dict,
                unusual: collections.Counter) -> ExpressionRecord:
        clip = self._clip(meta)
        if self.check_media:
            self._check_clip(path, where, clip)
        if mode == "video":
            frames = _field(path, f"{where} frames", item.get("frames"), list)
            if len(frames) > NUM_FRAMES:
                raise ItemError(path, f"{len(frames)} frames listed, a clip has {NUM_FRAMES}",
                                f"{where} frames", "bad_frames")
            entries = []
            for pos, frame_item in enumerate(frames):
                fwhere = f"{where} frames[{pos}]"
                if not isinstance(frame_item, dict):
                    raise ItemError(path, "expected an object", fwhere, "bad_frames")
                entries.append((_frame_index(path, fwhere, frame_item.get("frame")), fwhere, frame_item))
            seen = [f for f, _, _ in entries]
            if len(set(seen)) != len(seen):
                raise ItemError(path, f"frame indices repeat: {seen}", f"{where} frames", "bad_frames")
        else:
            entries = [(meta.kfid, where, item)]
        gt_masks: dict[int, Path] = {}
        candidates: list[Candidate] = []
        for frame, fwhere, entry in entries:
            gt_path, frame_candidates = self._frame_candidates(path, fwhere, frame, entry, unusual)
            if gt_path is not None:
                gt_masks[frame] = gt_path
            candidates.extend(frame_candidates)
        if self.check_media:
            for cand in candidates:
                if not cand.mask_path.is_file():
                    raise ItemError(cand.mask_path, "mask file not found",
                                    f"{path.name} {where} {cand.cand_id}@frame {cand.frame}", "missing_media")
        return ExpressionRecord(uid=meta.uid, vid=meta.vid, split=split, mode=mode, exp=meta.exp,
                                kfid=meta.kfid, fid=meta.fid, clip=clip, gt_masks=gt_masks,
                                candidates=tuple(candidates))

    def _frame_candidates(self, path, where, frame, entry,
                          unusual: collections.Counter) -> tuple[Path | None, list[Candidate]]:
        """The candidates of one frame entry, in order: GT, part_neg_masks, full_neg, null.

        Ranked candidates outside rank 1/2 are counted in ``unusual`` by (type, rank label).
        """
        groups: list[tuple[str, str, object]] = []  # (field, type name, raw item)
        gt = entry.get("gt_mask_path")
        if gt:  # upstream: an empty dict or string means "no ground truth" (null expressions)
            groups.append(("gt_mask_path", "perfect", gt))
        part = entry.get("part_neg_masks") or {}
        if not isinstance(part, dict):
            raise ItemError(path, "expected an object of type -> list", f"{where} part_neg_masks", "bad_item")
        for name, items in part.items():
            groups.extend(self._list_items(path, where, f"part_neg_masks.{name}", name, items))
        for key in ("full_neg_masks", "null_masks"):
            groups.extend(self._list_items(path, where, key, key, entry.get(key) or []))
        counts: dict[str, int] = collections.Counter()
        candidates, gt_path = [], None
        for field_name, type_name, raw in groups:
            fwhere = f"{where} {field_name}"
            try:
                mask_type = normalize_mask_type(type_name)
            except ValueError as exc:
                raise ItemError(path, str(exc), f"{where} {field_name.split('[')[0]}", "unknown_mask_type") from None
            cand = self._candidate(path, fwhere, frame, mask_type, counts[mask_type], raw)
            counts[mask_type] += 1
            if mask_type in RANKED_TYPES and cand.rank not in PROTOCOL_RANKS:
                given = isinstance(raw, dict) and raw.get("rank") is not None  # a bare path has none
                unusual[(mask_type, cand.rank if given else RANK_MISSING)] += 1
            if field_name == "gt_mask_path":
                gt_path = cand.mask_path
            candidates.append(cand)
        return gt_path, candidates

    @staticmethod
    def _list_items(path, where, field_name, type_name, items):
        if not isinstance(items, list):
            raise ItemError(path, f"expected a list, got {type(items).__name__}", f"{where} {field_name}", "bad_item")
        return [(f"{field_name}[{k}]", type_name, raw) for k, raw in enumerate(items)]

    def _candidate(self, path, where, frame, mask_type, k, raw) -> Candidate:
        if isinstance(raw, str):  # gt_mask_path may be a plain path string
            raw = {"mask_path": raw}
        if not isinstance(raw, dict):
            raise ItemError(path, f"expected an object, got {type(raw).__name__}", where, "bad_item")
        label = f"{where}.mask_path"
        mask_path = self._resolve(path, label, _field(path, label, raw.get("mask_path"), str))
        iou = _iou(path, where, raw.get("iou_to_gt"), mask_type)
        rank = _rank(path, where, raw.get("rank"))
        action = raw.get("action")
        if action is None:
            action = action_from_iou(iou, mask_type)
        else:
            try:
                action = normalize_action(action)
            except ValueError as exc:
                raise ItemError(path, str(exc), f"{where}.action", "bad_action") from None
        response = raw.get("response")
        if response is not None and not isinstance(response, str):
            raise ItemError(path, "must be a string", f"{where}.response", "bad_item")
        return Candidate(cand_id=f"{mask_type}-{k}", frame=frame, mask_path=mask_path,
                         mask_type=mask_type, rank=rank, iou_to_gt=iou, action=action, response=response)

    # --------------------------------------------------------------------------- media
    def _resolve(self, path: Path, label: str, rel: str) -> Path:
        """A mask path from the JSON (relative to the root, or absolute), which must stay inside
        the benchmark root: a benchmark is data and must not make the reader open other files."""
        if "\x00" in rel or not rel.strip():
            raise ItemError(path, f"{rel!r} is not a file path", label, "unsafe_path")
        joined = os.path.normpath(os.path.join(self._root_abs, rel))
        if os.path.commonpath([joined, self._root_abs]) != self._root_abs:
            raise ItemError(path, f"{rel!r} leaves the benchmark root {self.root}", label, "unsafe_path")
        return Path(joined)

    def _clip(self, meta: MetaRow) -> Clip:
        base = self.root / "media" / meta.vid
        audio_dir = "media_cross" if meta.uid.startswith(NULL_UID_PREFIX) else "media"
        return Clip(vid=meta.vid, frames_dir=base / "frames",
                    audio_path=self.root / audio_dir / meta.vid / "audio.wav")

    def _check_clip(self, path, where, clip: Clip) -> None:
        """Stat only: 10 frame files and the audio file exist (decoding is validate's job)."""
        for needed in [clip.frame_path(i) for i in range(NUM_FRAMES)] + [clip.audio_path]:
            if needed in self._clips_checked:
                continue
            if not needed.is_file():
                raise ItemError(needed, "file not found", f"{path.name} {where} clip", "missing_media")
            self._clips_checked.add(needed)

    def _skip_or_raise(self, err: ItemError) -> None:
        if not self.lenient:
            raise err
        self.skipped[err.reason] += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(str(err))


# ------------------------------------------------------------------------------ helpers
def _is_header(row: list[str]) -> bool:
    return len(row) > 3 and row[2].strip() not in SPLITS and not _is_int(row[3])


def _is_int(text: str) -> bool:
    try:
        int(str(text).strip())
    except ValueError:
        return False
    return True


def _parse_meta_row(path: Path, line: int, row: list[str]) -> MetaRow | None:
    where = f"line {line}"
    if len(row) < 6:
        raise ItemError(path, f"expected 6 columns vid,uid,split,fid,exp,kfid, got {len(row)}", where, "bad_metadata")
    vid, uid, split, fid, exp, kfid = (cell.strip() for cell in row[:6])
    if split not in SPLITS:
        return None
    if not uid:
        raise ItemError(path, "empty uid", f"{where} uid", "bad_metadata")
    for name, text in (("uid", uid), ("vid", vid)):   # both become file names under the root
        if text in (".", "..") or any(c in text for c in "/\\\x00"):
            raise ItemError(path, f"{text!r} is not a plain name (no '/', '..' or '\\'): it would "
                            "point outside the benchmark's media folders", f"{where} {name}", "bad_metadata")
    if not any(c.isalnum() for c in exp):      # what the runtime would refuse at audit time
        raise ItemError(path, f"the expression {exp!r} has no words", f"{where} uid={uid} exp", "bad_metadata")
    numbers = {}
    for name, text in (("fid", fid), ("kfid", kfid)):
        if not _is_int(text):
            raise ItemError(path, f"{text!r} is not an integer", f"{where} uid={uid} {name}", "bad_metadata")
        numbers[name] = int(text)
    if not 0 <= numbers["kfid"] < NUM_FRAMES:
        raise ItemError(path, f"{numbers['kfid']} is outside 0..{NUM_FRAMES - 1}",
                        f"{where} uid={uid} kfid", "bad_metadata")
    return MetaRow(vid or vid_from_uid(uid), uid, split, numbers["fid"], exp, numbers["kfid"])


def _load_json(path: Path):
    return read_json(path, DataError)


def _field(path, label: str, value, kind: type):
    """``value`` checked to be present and of ``kind``; ``label`` is its full field name."""
    if value is None:
        raise ItemError(path, "missing", label, "bad_item")
    if not isinstance(value, kind):
        raise ItemError(path, f"expected {kind.__name__}, got {type(value).__name__}", label, "bad_item")
    return value


def _frame_index(path, where, value) -> int:
    if isinstance(value, bool) or not _is_int(value) or not 0 <= int(value) < NUM_FRAMES:
        raise ItemError(path, f"{value!r} is not a frame index 0..{NUM_FRAMES - 1}", f"{where}.frame", "bad_frames")
    return int(value)


def _iou(path, where, value, mask_type: str) -> float:
    field_name = f"{where}.iou_to_gt"
    if value is None:
        if mask_type == "perfect":
            return 1.0
        if mask_type in ("full_neg", "null"):
            return 0.0
        raise ItemError(path, f"missing (required for {mask_type})", field_name, "bad_iou")
    try:
        if isinstance(value, bool):
            raise TypeError
        iou = float(value)
    except (TypeError, ValueError):
        raise ItemError(path, f"{value!r} is not a number", field_name, "bad_iou") from None
    if math.isnan(iou) or not 0.0 <= iou <= 1.0:
        raise ItemError(path, f"{value} is outside [0, 1]", field_name, "bad_iou")
    return iou


def _rank(path, where, value) -> int:
    """Any integer is a rank (which ones the protocol scores is the evaluator's business); a
    missing rank is ``ALL_RANKS``. Integral floats are accepted because JSON written through
    numpy or pandas stores 2 as 2.0."""
    if value is None:
        return ALL_RANKS
    if isinstance(value, int) and not isinstance(value, bool):  # True is an int to Python, not a rank
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _is_int(value):
        return int(value)
    raise ItemError(path, f"{value!r} is not a rank (an integer)", f"{where}.rank", "bad_rank")


def format_unusual_ranks(counts: collections.Counter) -> str:
    """One line over ``Benchmark.unusual_ranks`` counts, per type, e.g. ``3 cutout/erode/dilate
    candidate(s) ...: cutout 2 (rank 0: 1, rank 3: 1), erode 1 (rank missing: 1)``."""
    per_type = []
    for mask_type in RANKED_TYPES:
        ranks = {rank: n for (kind, rank), n in counts.items() if kind == mask_type}
        if ranks:
            # Numbers in order, "missing" last.
            order = sorted(ranks, key=lambda r: (r == RANK_MISSING, r if r != RANK_MISSING else 0))
            detail = ", ".join(f"rank {rank}: {ranks[rank]}" for rank in order)
            per_type.append(f"{mask_type} {sum(ranks.values())} ({detail})")
    return (f"{sum(counts.values())} cutout/erode/dilate candidate(s) with a rank other than "
            f"1 (Hard) / 2 (Medium), read and scored only in Overall: " + ", ".join(per_type))
