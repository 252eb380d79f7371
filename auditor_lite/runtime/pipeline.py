"""Many clips at once in one process: ``jobs`` threads, each auditing whole clips, results in order.

A clip's audit is numpy work (decoding the files, the frames' resize, the log-mel, the cell
motion) and ONNX Runtime work (the text, context and masks graphs); both release the GIL. On this
model ONNX Runtime's second intra-op thread buys little (context graph 9.9 -> 9.2 ms, masks graph
at 13 masks 6.2 -> 5.0 ms on the project's 2-core EPYC). So on N cores the faster layout is N
clips at once, each on one thread whose graph calls run single-threaded: the same layout as N
Ray actors of one thread (docs/scale.md), without Ray.

Measured side by side here (test_s clips of a generated benchmark, files read from disk, default
INT8 model, 2 interleaved rounds, load 0.4-1.0):

=====================================  ===================  ===================
layout (2 cores)                       image, 400 clips     video, 60 clips
=====================================  ===================  ===================
one after the other, 2 graph threads   348-354 masks/s (*)  -
next clip prepared on a worker thread  540-660              881-886
2 clips at once, 1 graph thread each   554-686              1353-1356
=====================================  ===================  ===================

(*) on the 1,390 clips of the split. Preparing ahead (a worker reads and prepares the next clip
while the caller runs the graphs) was tried first: in video mode the graphs of ten key frames
dominate a clip, the worker idles, and only one core runs graphs. ``auditor-lite audit --bench``
runs with ``--jobs`` (default: the CPUs), and ``auditor-lite bench`` times it (its stream section).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def default_jobs() -> int:
    return os.cpu_count() or 1


def graph_threads(threads: int | None, jobs: int) -> int:
    """ONNX Runtime intra-op threads with ``jobs`` clips at once: ``threads`` when given, else the
    CPUs shared out (at least 1): jobs x threads = cores."""
    if threads:
        return int(threads)
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def in_order(work: Callable[[Item], Result], items: Iterable[Item], jobs: int = 1) -> Iterator[tuple[Item, Result]]:
    """``(item, work(item))`` in the items' order, with up to ``jobs`` items worked on at once on a
    pool of ``jobs`` threads (1: each on the calling thread when its turn comes). At most
    ``2 * jobs`` items are submitted ahead, so a long input is never held whole.

    An exception of ``work(item)`` is raised when that item's turn comes (the earlier items have
    been yielded). Closing the generator early (``break``, an exception in the loop body) cancels
    what the pool has not started and waits for what it has, so no thread outlives the loop.
    """
    if jobs <= 1:
        for item in items:
            yield item, work(item)
        return
    pending: deque = deque()
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="auditor-job")
    try:
        for item in items:
            pending.append((item, pool.submit(work, item)))
            if len(pending) >= 2 * jobs:
                item, future = pending.popleft()
                yield item, future.result()
        while pending:
            item, future = pending.popleft()
            yield item, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)
