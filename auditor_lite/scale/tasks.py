"""The clips a dataset-scale audit works through: one *task* per clip (an expression and its
candidate masks), from a benchmark (``--bench``) or from a clip list (``--clips``).

A task is a flat dict of strings, ints and bools (so it travels as an Arrow row between Ray
tasks and actors): ``split``, ``mode``, ``uid`` (``""`` when not given), ``expression``, ``source``
(``bench``: frames ``0.jpg .. 9.jpg`` read as the benchmark defines them; ``list``: a frames folder
or a video read as ``audit --frames/--video`` reads them), ``frames``, ``video``, ``audio`` (paths or
``""``), ``silence`` and ``candidates`` (JSON ``[[frame, cand_id, mask_path], ...]``). A task's
key is ``(split, mode, uid)``; it names the clip in the outputs, in the errors file and on resume.

The clip list (docs/scale.md) is JSONL (one object a line) or Parquet (one row a clip):

==============  ======================================================================
column          meaning
==============  ======================================================================
``uid``         the clip's id, unique within (split, mode); required
``expression``  the referring expression; required
``frames``      a folder of the 10 frames (``0.jpg .. 9.jpg`` or 10 images in name order)
``video``       or a video file (exactly one of ``frames`` / ``video``)
``audio``       a sound file; required with ``frames``, optional with a video that has sound
``frame``       the frame (0-9) the masks belong to; required unless every mask names its own
``masks``       candidate masks: paths, or objects ``{"path", "frame", "cand_id"}``; ``cand_id``
                defaults to the path as written
``split``       optional ``test_s`` / ``test_u``, carried into the predictions
``mode``        optional ``image`` / ``video``, carried into the predictions
==============  ======================================================================

Other columns are ignored. Paths are relative to the list's folder and may not leave it (no
absolute paths, no ``..`` above it) unless ``allow_absolute``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from auditor_lite.batch_audit import audited_records, benchmark_pairs
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import NUM_FRAMES, DataError
from auditor_lite.eval.predictions import PREDICTION_MODES, PREDICTION_SPLITS

CLIP_LIST_COLUMNS = ("uid", "expression", "frames", "video", "audio", "frame", "masks", "split", "mode")
SCALE_EXTRA = "pip install 'auditor-lite[scale]'"


def task_key(task) -> tuple[str, str, str]:
    return (task["split"], task["mode"], task["uid"])


def _task(split, mode, uid, expression, source, candidates, frames="", video="", audio="", silence=False):
    return {"split": split or "", "mode": mode or "", "uid": uid, "expression": expression, "source": source,
            "frames": str(frames or ""), "video": str(video or ""), "audio": str(audio or ""),
            "silence": bool(silence), "candidates": json.dumps(candidates)}


def _check_unique(tasks: list[dict], where) -> list[dict]:
    seen = set()
    for task in tasks:
        key = task_key(task)
        if key in seen:
            raise DataError(where, f"uid {key[2]!r} appears twice in split {key[0] or '-'} / mode {key[1] or '-'}; "
                            "a dataset-scale audit keys each clip by (split, mode, uid)", "uid")
        seen.add(key)
    return tasks


def benchmark_tasks(bench, splits=None, modes=None, silence_audio=False, shuffle_expressions=None) -> list[dict]:
    """One task per expression of the requested test (split, mode) pairs, in ``audit --bench`` order."""
    benchmark = Benchmark(bench)
    tasks = []
    for split, mode in benchmark_pairs(benchmark, splits, modes):
        for record in audited_records(benchmark, split, mode, shuffle_expressions):
            cands = [[c.frame, c.cand_id, str(c.mask_path)] for c in record.candidates]
            tasks.append(_task(split, mode, record.uid, record.exp, "bench", cands, frames=record.clip.frames_dir,
                               audio=record.clip.audio_path, silence=silence_audio))
    return _check_unique(tasks, benchmark.meta_dir)


# ----------------------------------------------------------------------------- clip lists
def read_clip_list(path, allow_absolute: bool = False, splits=None, modes=None) -> list[dict]:
    """The tasks of a clip list (``.jsonl`` / ``.parquet``), checked; a DataError names the file, the
    row and the column of the first problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "clip list not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        rows = _parquet_rows(path)
        where = "row"
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
        where = "line"
    else:
        raise DataError(path, "a clip list is a .jsonl or a .parquet file")
    base = path.parent
    tasks = []
    for number, row in rows:
        task = _row_task(path, f"{where} {number}", row, base, allow_absolute)
        if (not splits or task["split"] in splits) and (not modes or task["mode"] in modes):
            tasks.append(task)
    if not tasks:
        raise DataError(path, "no clip to audit" + (" in the requested split/mode" if splits or modes else ""))
    return _check_unique(tasks, path)


def _jsonl_rows(path: Path):
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(path, f"not JSON ({exc.msg})", f"line {number}") from None
    return rows


def _parquet_rows(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(path, f"reading a Parquet clip list needs pyarrow: {SCALE_EXTRA}") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    return list(enumerate(table.to_pylist()))


def _text(path, where, row, name, required=True) -> str:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise DataError(path, "missing (a non-empty string is required)", f"{where} {name}")
        return ""
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, f"must be a non-empty string, got {value!r}", f"{where} {name}")
    return value


def _frame_index(path, where, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < NUM_FRAMES:
        raise DataError(path, f"must be an integer 0-{NUM_FRAMES - 1}, got {value!r}", where)
    return value


def _confined(path, where, base: Path, value: str, allow_absolute: bool) -> Path:
    """``value`` relative to ``base``; absolute paths and ``..`` above ``base`` only when allowed."""
    if not allow_absolute:
        if os.path.isabs(value) or value.startswith("~"):
            raise DataError(path, f"{value!r} is absolute; paths are relative to the list's folder "
                            "(--allow-absolute accepts them)", where)
        normal = os.path.normpath(value)
        if normal == ".." or normal.startswith(".." + os.sep):
            raise DataError(path, f"{value!r} leaves the list's folder (--allow-absolute accepts it)", where)
    return base / os.path.expanduser(value) if allow_absolute else base / value


def _row_task(path, where, row, base: Path, allow_absolute: bool) -> dict:
    if not isinstance(row, dict):
        raise DataError(path, f"expected an object of columns, got {type(row).__name__}", where)
    uid = _text(path, where, row, "uid")
    expression = _text(path, where, row, "expression")
    split, mode = _text(path, where, row, "split", False), _text(path, where, row, "mode", False)
    if split and split not in PREDICTION_SPLITS:
        raise DataError(path, f"unknown split {split!r}; expected one of {', '.join(PREDICTION_SPLITS)}", f"{where} split")
    if mode and mode not in PREDICTION_MODES:
        raise DataError(path, f"unknown mode {mode!r}; expected one of {', '.join(PREDICTION_MODES)}", f"{where} mode")
    frames, video = _text(path, where, row, "frames", False), _text(path, where, row, "video", False)
    if bool(frames) == bool(video):
        raise DataError(path, "give the clip's frames folder or its video (exactly one)", f"{where} frames/video")
    audio = _text(path, where, row, "audio", required=bool(frames))

    def place(value, column):
        return _confined(path, f"{where} {column}", base, value, allow_absolute)

    default_frame = row.get("frame")
    masks = row.get("masks")
    if not isinstance(masks, (list, tuple)) or not masks:
        raise DataError(path, f"must be a non-empty list of mask paths, got {masks!r}", f"{where} masks")
    cands, ids = [], set()
    for k, entry in enumerate(masks):
        mwhere = f"{where} masks[{k}]"
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict):
            raise DataError(path, f"expected a path or an object {{path, frame, cand_id}}, got {entry!r}", mwhere)
        mask = _text(path, mwhere, entry, "path")
        frame = entry.get("frame")
        if frame is None:
            if default_frame is None:
                raise DataError(path, "no frame: give the row's frame column (0-9) or the mask's frame",
                                f"{where} frame")
            frame = _frame_index(path, f"{where} frame", default_frame)
        frame = _frame_index(path, f"{mwhere}.frame", frame)
        cand_id = _text(path, mwhere, entry, "cand_id", False) or mask
        if (frame, cand_id) in ids:
            raise DataError(path, f"candidate {cand_id!r} of frame {frame} is listed twice", mwhere)
        ids.add((frame, cand_id))
        cands.append([frame, cand_id, str(place(mask, f"masks[{k}]"))])
    return _task(split, mode, uid, expression, "list", cands,
                 frames=place(frames, "frames") if frames else "", video=place(video, "video") if video else "",
                 audio=place(audio, "audio") if audio else "")
