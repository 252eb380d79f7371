"""Where a dataset-scale audit writes, so that a killed run loses no finished clip and leaves no
half-written file, and a rerun on the same output skips what is already written.

- ``OUT`` ending in ``.jsonl``: every batch is written as a part under the side folder
  ``OUT.parts/`` (one line per clip: its key and its predictions); at the end the parts are merged
  in task order into ``OUT`` (the predictions JSONL of docs/predictions.md, as ``audit --bench``
  writes it), through a temporary file renamed over ``OUT``, and the side folder is removed. A
  rerun with ``OUT`` present takes its clips as done.
- ``OUT`` a folder: the parts are the output, Parquet files ``OUT/part-*.parquet`` with one row per
  mask; ``OUT/_SUCCESS`` is written when every clip is done.
- Per-clip failures: ``OUT/_errors/`` (or ``OUT.parts/_errors/``) during the run, merged into
  ``OUT.errors.jsonl``; failed clips are tried again by a rerun.

Every file is written under a temporary name (``.tmp-*``, which Parquet readers skip) and renamed
into place; temporaries a killed run left behind are removed at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from auditor_lite.data.schema import ACTIONS, MASK_TYPES, DataError

SUCCESS = "_SUCCESS"
TMP_PREFIX = ".tmp-"


def error_record(task, message: str, kind: str) -> dict:
    return {"uid": task["uid"], "split": task["split"] or None, "mode": task["mode"] or None,
            "error": message, "type": kind, "masks": len(json.loads(task["candidates"]))}


def _key(obj) -> tuple[str, str, str]:
    return (obj.get("split") or "", obj.get("mode") or "", obj["uid"])


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_lines(lines):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
    return write


def parquet_schema():
    import pyarrow as pa

    probs = [("type_probs", MASK_TYPES), ("action_probs", ACTIONS)]
    return pa.schema([("split", pa.string()), ("mode", pa.string()), ("uid", pa.string()), ("frame", pa.int64()),
                      ("cand_id", pa.string()), ("iou", pa.float64()), ("iou_low", pa.float64()),
                      ("iou_high", pa.float64()), ("mask_type", pa.string()), ("action", pa.string()),
                      *[(name, pa.struct([(c, pa.float64()) for c in classes])) for name, classes in probs],
                      ("method", pa.string())])


class Output:
    """The output ``OUT`` of a run: its parts, its errors, its merge."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.jsonl = self.out.suffix.lower() == ".jsonl"
        self.parts = Path(f"{self.out}.parts") if self.jsonl else self.out
        self.errors_dir = self.parts / "_errors"
        self.errors_path = Path(f"{self.out}.errors.jsonl")

    # ------------------------------------------------------------------ start and resume
    def prepare(self) -> None:
        """Create the part folders, clear a killed run's temporaries; a JSONL ``OUT`` already written
        becomes a part (its clips are done)."""
        if self.out.exists() and self.jsonl and not self.out.is_file():
            raise DataError(self.out, "is a folder; a .jsonl output is a file (give a folder without .jsonl "
                            "for Parquet parts)")
        if self.out.exists() and not self.jsonl and not self.out.is_dir():
            raise DataError(self.out, "exists and is not a folder; Parquet parts go to a folder "
                            "(name the output *.jsonl for the predictions JSONL)")
        self.errors_dir.mkdir(parents=True, exist_ok=True)
        for folder in (self.parts, self.errors_dir):
            for stale in folder.glob(TMP_PREFIX + "*"):
                stale.unlink()
        if not self.jsonl:
            (self.out / SUCCESS).unlink(missing_ok=True)
        elif self.out.is_file():
            lines = self._read_output(self.out)
            _atomic_write(self.parts / f"part-0-existing-{uuid.uuid4().hex[:8]}.jsonl",
                          _write_lines(json.dumps(obj, separators=(",", ":")) for obj in lines))

    @staticmethod
    def _read_output(path: Path) -> list[dict]:
        """An existing predictions JSONL as part lines: one per clip, predictions in file order."""
        by_key: dict = {}
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    pred = json.loads(line)
                    key = _key(pred)
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                    raise DataError(path, "not a predictions line; remove the file or choose another --out",
                                    f"line {number}") from None
                by_key.setdefault(key, []).append(pred)
        return [{"split": k[0], "mode": k[1], "uid": k[2], "predictions": preds} for k, preds in by_key.items()]

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.jsonl" if self.jsonl else "part-*.parquet"))

    def done(self) -> set:
        """The keys of the clips whose predictions are written."""
        keys = set()
        for part in self.part_files():
            keys.update(self._part_keys(part))
        return keys

    def _part_keys(self, part: Path) -> list:
        if self.jsonl:
            return [_key(json.loads(line)) for line in part.read_text(encoding="utf-8").splitlines() if line]
        import pyarrow.parquet as pq

        table = pq.read_table(part, columns=["split", "mode", "uid"])
        return [_key(row) for row in table.to_pylist()]

    # ------------------------------------------------------------------ parts
    def write_part(self, results) -> None:
        """``results``: ``[(task, predictions or None, error or None)]`` of one batch, in task order."""
        stamp = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        first = min((task.get("order", 0) for task, _, _ in results), default=0)
        done = [(task, preds) for task, preds, error in results if error is None]
        errors = [error for _, _, error in results if error is not None]
        if errors:
            _atomic_write(self.errors_dir / f"part-{stamp}.jsonl",
                          _write_lines(json.dumps(e, separators=(",", ":")) for e in errors))
        if not done:
            return
        if self.jsonl:
            lines = (json.dumps({"split": t["split"], "mode": t["mode"], "uid": t["uid"], "predictions": p},
                                separators=(",", ":")) for t, p in done)
            _atomic_write(self.parts / f"part-{first:09d}-{stamp}.jsonl", _write_lines(lines))
            return
        rows = [{"split": t["split"] or None, "mode": t["mode"] or None, **p} for t, preds in done for p in preds]
        if rows:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(rows, schema=parquet_schema())
            _atomic_write(self.parts / f"part-{first:09d}-{stamp}.parquet", lambda tmp: pq.write_table(table, tmp))

    # ------------------------------------------------------------------ the end
    def finish(self, order: list, summary: dict) -> dict:
        """Merge (JSONL) or mark (Parquet) the output and write the errors file; ``order``: every key of
        this run, in task order. Returns ``{"predictions": n, "clips": n, "errors": n}``."""
        rank = {key: i for i, key in enumerate(order)}
        counts = self._merge_jsonl(rank) if self.jsonl else self._dedupe_parquet()
        done = counts.pop("keys")
        errors = {}
        for part in sorted(self.errors_dir.glob("part-*.jsonl")):   # names sort by time: the latest wins
            for line in part.read_text(encoding="utf-8").splitlines():
                if line:
                    error = json.loads(line)
                    if _key(error) not in done:
                        errors[_key(error)] = error
        ordered = sorted(errors, key=lambda k: (rank.get(k, len(rank)), k))
        if errors:
            _atomic_write(self.errors_path, _write_lines(json.dumps(errors[k], separators=(",", ":"))
                                                         for k in ordered))
        else:
            self.errors_path.unlink(missing_ok=True)
        counts["errors"] = len(errors)
        if self.jsonl:
            shutil.rmtree(self.parts)
        else:
            shutil.rmtree(self.errors_dir)
            _atomic_write(self.out / SUCCESS, _write_lines([json.dumps({**summary, **counts})]))
        return counts

    def _merge_jsonl(self, rank: dict) -> dict:
        """Index every clip's line (first part wins), then write the clips in task order (clips of
        earlier runs that this run does not list come last, by key) through a temporary file."""
        index, keys = [], set()
        for part in self.part_files():
            with open(part, "rb") as handle:
                offset = 0
                for line in handle:
                    key = _key(json.loads(line))
                    if key not in keys:
                        keys.add(key)
                        index.append((rank.get(key, len(rank)), key, part, offset))
                    offset += len(line)
        index.sort(key=lambda item: (item[0], item[1]))
        count = 0

        def lines():
            nonlocal count
            handle, current = None, None
            try:
                for _, _, part, offset in index:
                    if part != current:
                        if handle:
                            handle.close()
                        handle, current = open(part, "rb"), part
                    handle.seek(offset)
                    for pred in json.loads(handle.readline())["predictions"]:
                        count += 1
                        yield json.dumps(pred, separators=(",", ":"))
            finally:
                if handle:
                    handle.close()

        self.out.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.out, _write_lines(lines()))
        return {"predictions": count, "clips": len(keys), "keys": keys}

    def _dedupe_parquet(self) -> dict:
        """A clip written twice (a retried batch) keeps its first part's rows."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        keys, count = set(), 0
        for part in self.part_files():
            table = pq.read_table(part)
            part_keys = [_key(row) for row in table.select(["split", "mode", "uid"]).to_pylist()]
            seen = [k in keys for k in part_keys]
            if all(seen):
                part.unlink()
                continue
            if any(seen):
                table = table.filter(pc.invert(pa.array(seen)))   # the rows not written before
                _atomic_write(part, lambda tmp, t=table: pq.write_table(t, tmp))
            keys.update(part_keys)
            count += table.num_rows
        return {"predictions": count, "clips": len(keys), "keys": keys}
