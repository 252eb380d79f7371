"""A dataset-scale audit from start to end: the tasks, what is already done, the executor, the merge.

``run_audit(tasks, out, executor="ray" | "local", ...)`` audits the tasks not yet written to ``out``
and returns the run's statistics: clips and masks, start-up apart from the steady state (first
read to last row), rows per actor. The local executor runs the same two stages in this process
(one auditor); the Ray executor (:mod:`auditor_lite.scale.ray_executor`) streams them through Ray
Data. Both write the same parts, so a run started with one can be finished with the other.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from pathlib import Path

from auditor_lite.scale.output import Output
from auditor_lite.scale.tasks import task_key

MAX_ROWS_PER_BLOCK = 16


def rows_per_block(pending: int, workers: int) -> int:
    """Clips per block and per batch: at least four blocks per actor, so that every actor works and
    the last blocks do not leave one actor finishing alone; at most 16 clips (one part file)."""
    return max(1, min(MAX_ROWS_PER_BLOCK, math.ceil(pending / (4 * max(1, workers)))))


def run_audit(tasks: list[dict], out, *, executor: str = "local", model_dir=None, precision: str = "auto",
              threads: int | None = None, workers: int | None = None, address: str | None = None,
              method: str = "auditor-lite", on_progress=None) -> dict:
    """Audit ``tasks`` into ``out`` (``.jsonl`` or a Parquet folder), skipping clips already written.

    ``on_progress(clips_done, clips_pending, summary_row)`` is called after each batch."""
    started = time.time()
    output = Output(Path(out))
    output.prepare()
    done = output.done()
    tasks = [{**task, "order": i} for i, task in enumerate(tasks)]   # parts are named by their first clip
    pending = [task for task in tasks if task_key(task) not in done]
    summaries = []

    def collect(row):
        row["received"] = time.time()
        summaries.append(row)
        if on_progress is not None:
            on_progress(sum(r["clips"] for r in summaries), len(pending), row)

    info = {}
    if pending:
        if executor == "ray":
            from auditor_lite.scale.ray_executor import run_ray

            info = run_ray(pending, output.out, model_dir=model_dir, precision=precision, threads=threads,
                           workers=workers, address=address, method=method, collect=collect)
        elif executor == "local":
            info = run_local(pending, output.out, model_dir=model_dir, precision=precision, threads=threads,
                             method=method, collect=collect)
        else:
            raise ValueError(f"--executor: unknown executor {executor!r} (local or ray)")
    stats = {"executor": executor, "clips": len(tasks), "skipped": len(tasks) - len(pending),
             "audited": sum(r["clips"] for r in summaries), "masks": sum(r["masks"] for r in summaries),
             **info, **steady_state(summaries, started)}
    counts = output.finish([task_key(t) for t in tasks], {k: v for k, v in stats.items() if k != "actors"})
    stats.update(counts, seconds=time.time() - started, out=str(output.out),
                 errors_file=str(output.errors_path) if counts["errors"] else None)
    return stats


def steady_state(summaries: list[dict], started: float) -> dict:
    """Start-up (run start to the first read) apart from the steady state (first read to the last
    row), and per actor: clips, masks, busy seconds and masks per busy second."""
    if not summaries:
        return {"startup_s": None, "steady_s": None, "masks_per_s": None, "actors": {}}
    first_read = min(r["read_t0"] for r in summaries)
    masks = sum(r["masks"] for r in summaries)
    per_actor = defaultdict(Counter)
    for r in summaries:
        per_actor[r["actor"]].update(clips=r["clips"], masks=r["masks"], errors=r["errors"],
                                     busy_s=r["ended"] - r["started"])
    total = sum(a["clips"] for a in per_actor.values()) or 1
    actors = {name: {"clips": a["clips"], "share": a["clips"] / total, "masks": a["masks"],
                     "busy_s": round(a["busy_s"], 3),
                     "masks_per_busy_s": a["masks"] / a["busy_s"] if a["busy_s"] > 0 else None}
              for name, a in sorted(per_actor.items())}
    last_row = max(r["received"] for r in summaries)
    steady = last_row - first_read
    window = last_row - min(r["started"] for r in summaries)   # from the first audit call, actors up
    return {"startup_s": first_read - started, "steady_s": steady,
            "masks_per_s": masks / steady if steady > 0 else None, "audit_window_s": window,
            "masks_per_s_window": masks / window if window > 0 else None, "actors": actors}


def run_local(pending, out, *, model_dir, precision, threads, method, collect) -> dict:
    """The two stages in this process, one auditor, batch after batch."""
    from auditor_lite.scale.work import BatchAuditor, read_task

    auditor = BatchAuditor(out, model_dir, precision, threads, method)
    size = rows_per_block(len(pending), 1)
    for start in range(0, len(pending), size):
        collect(auditor.audit_rows([read_task(task) for task in pending[start:start + size]]))
    return {"workers": 1, "threads": threads}
