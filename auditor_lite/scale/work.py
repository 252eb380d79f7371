"""The per-clip work of a dataset-scale audit, in two stages that the executors run:

- :func:`read_batch` decodes each task's media (frames, the 10 s audio window, the candidate
  masks) with the readers ``audit --bench`` uses (``auditor_lite.batch_audit``), and packs them as
  bytes in an Arrow row; a clip whose media cannot be read becomes an error row.
- :class:`BatchAuditor` holds one :class:`~auditor_lite.runtime.Auditor` and audits each row with
  ``batch_audit.audit_clip`` (one session per clip, one call per frame), turns the results into
  the predictions of ``batch_audit.prediction`` and writes them as one part of the output
  (:mod:`auditor_lite.scale.output`); it returns one summary row per batch (who audited what,
  and when), which the driver counts for progress and rows per actor.

Per-clip failures never lose the rest of a batch: they go to the errors file, with the clip's key.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from auditor_lite.batch_audit import audio_window, audit_clip, frame_groups, load_group_masks, prediction
from auditor_lite.data.schema import Clip, DataError
from auditor_lite.eval.predictions import prediction_line
from auditor_lite.media import load_frames
from auditor_lite.runtime.inputs import InputError
from auditor_lite.scale.output import Output, error_record

TASK_FIELDS = ("order", "split", "mode", "uid", "expression", "source", "frames", "video", "audio", "silence", "candidates")


class ClipCandidate(NamedTuple):
    """A candidate mask of a task: what ``batch_audit.audit_clip`` and ``prediction`` read of it."""

    frame: int
    cand_id: str
    mask_path: Path


class _Record(NamedTuple):      # what batch_audit.prediction reads of a record
    uid: str


def task_candidates(task) -> list[ClipCandidate]:
    return [ClipCandidate(int(f), str(c), Path(p)) for f, c, p in json.loads(task["candidates"])]


def _clip_media(task):
    """``(frames, audio window)`` of a task, read as its source defines."""
    from auditor_lite.runtime import files

    wave = None
    if task["source"] == "bench":
        frames = load_frames(Clip(task["uid"], Path(task["frames"]), Path(task["audio"])))
    elif task["video"]:
        frames, wave = files.read_video(Path(task["video"]))
    else:
        frames = files.load_frames_dir(Path(task["frames"]))
    if task["silence"]:
        return frames, audio_window(None)
    if task["audio"]:
        wave = files.load_audio_file(Path(task["audio"]))
    elif wave is None:
        raise DataError(task["video"], "the video has no sound track; give the clip an audio column")
    return frames, audio_window(wave)


def read_task(task) -> dict:
    """The task's row with its media packed (``frames``, ``audio``, ``masks`` as bytes + shapes)."""
    row = {name: task[name] for name in TASK_FIELDS}
    row.update(read_t0=time.time(), error="", error_type="", frames_bytes=b"", frames_shape=[],
               audio_bytes=b"", mask_bytes=[], mask_shapes=[])
    try:
        cands = task_candidates(task)
        if cands:
            frames, audio = _clip_media(task)
            masks = [m for group in load_group_masks(frame_groups(cands)) for m in group]
            row.update(frames_bytes=np.ascontiguousarray(frames, np.uint8).tobytes(), frames_shape=list(frames.shape),
                       audio_bytes=np.ascontiguousarray(audio, np.float32).tobytes(),
                       mask_bytes=[np.packbits(m).tobytes() for m in masks], mask_shapes=[list(m.shape) for m in masks])
    except Exception as err:  # noqa: BLE001 - one clip's failure is recorded, the batch goes on
        row.update(error=str(err), error_type=type(err).__name__)
    return row


def _unpack(row):
    frames = np.frombuffer(row["frames_bytes"], np.uint8).reshape(row["frames_shape"])
    audio = np.frombuffer(row["audio_bytes"], np.float32)
    masks = [np.unpackbits(np.frombuffer(b, np.uint8), count=int(np.prod(s))).reshape(s).astype(bool)
             for b, s in zip(row["mask_bytes"], row["mask_shapes"])]
    return frames, audio, masks


def read_batch(table):
    """Ray Data stage (a task): decode the media of a batch of task rows (a ``pyarrow.Table``)."""
    import pyarrow as pa

    return pa.Table.from_pylist([read_task(task) for task in table.to_pylist()], schema=media_schema())


def media_schema():
    import pyarrow as pa

    types = {"order": pa.int64(), "silence": pa.bool_()}
    fields = [(name, types.get(name, pa.string())) for name in TASK_FIELDS]
    fields += [("read_t0", pa.float64()), ("error", pa.string()), ("error_type", pa.string()),
               ("frames_bytes", pa.binary()), ("frames_shape", pa.list_(pa.int64())), ("audio_bytes", pa.binary()),
               ("mask_bytes", pa.list_(pa.binary())), ("mask_shapes", pa.list_(pa.list_(pa.int64())))]
    return pa.schema(fields)


def audit_row(auditor, row, method: str) -> list[dict]:
    """The prediction objects (``prediction_line`` JSON) of one read row; raises on a bad clip."""
    cands = task_candidates(row)
    if not cands:
        return []
    frames, audio, flat = _unpack(row)
    groups = frame_groups(cands)
    masks, start = [], 0
    for _, group in groups:
        masks.append(flat[start:start + len(group)])
        start += len(group)
    try:
        pairs = audit_clip(auditor, row["expression"], frames, audio, groups, masks)
    except InputError as err:  # the clip's frames/audio/expression, refused by the runtime
        raise DataError(row["video"] or row["frames"], str(err)) from None
    record = _Record(row["uid"])
    return [json.loads(prediction_line(prediction(record, cand, result, method, row["mode"] or None,
                                                  row["split"] or None))) for cand, result in pairs]


class BatchAuditor:
    """One auditor (an ONNX Runtime session with ``threads`` intra-op threads) that audits batches of
    read rows and writes each batch as a part of ``out``. Ray Data's actor class; also run in-process
    by the local executor."""

    def __init__(self, out, model_dir, precision, threads, method):
        from auditor_lite.runtime.auditor import Auditor

        self.output = Output(Path(out))
        self.auditor = Auditor.load(model_dir, precision=precision, intra_op_threads=threads)
        self.method = method
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def audit_rows(self, rows: list[dict]) -> dict:
        """Audit read rows (:func:`read_task`), write them as one part; the batch's summary row."""
        started = time.time()
        results = []
        for row in rows:
            if row["error"]:
                results.append((row, None, error_record(row, row["error"], row["error_type"])))
                continue
            try:
                results.append((row, audit_row(self.auditor, row, self.method), None))
            except Exception as err:  # noqa: BLE001 - recorded per clip
                results.append((row, None, error_record(row, str(err), type(err).__name__)))
        self.output.write_part(results)
        return {"actor": self.name, "clips": len(results),
                "masks": sum(len(p) for _, p, _ in results if p is not None),
                "errors": sum(e is not None for _, _, e in results),
                "read_t0": min((row["read_t0"] for row in rows), default=started),
                "started": started, "ended": time.time()}

    def __call__(self, table):
        """Ray Data's call: a ``pyarrow.Table`` of read rows in, a one-row summary table out."""
        import pyarrow as pa

        return pa.Table.from_pylist([self.audit_rows(table.to_pylist())])
