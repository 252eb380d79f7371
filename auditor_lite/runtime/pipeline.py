"""Many clips, one after another, with the next clip read and prepared while this one's graphs run.

A clip's audit has two halves that need different things: reading and preparing it (decoding the
files, the frames' resize, the log-mel, the cell motion: numpy, one core) and running its graphs
(ONNX Runtime). On this model ONNX Runtime's second intra-op thread buys little (context graph
9.9 -> 9.2 ms, masks graph at 13 masks 6.2 -> 5.0 ms on the project's 2-core EPYC), while the
preparing half is about as long as the graphs. So on 2 cores the faster layout is one core per
half: the graphs on one ONNX Runtime thread, and a worker thread preparing the next clip.

Measured side by side (200 test_s image clips of a generated benchmark, 2,477 masks, files read
from disk, default INT8 model, 2 rounds, load 0.6-1.2): one after the other 380-412 masks/s (ONNX
Runtime on 2 threads) and 386-391 (1 thread); prepared ahead 605-606 (2 threads, which then
compete with the worker) and 686-726 masks/s (1 thread). ``auditor-lite audit --bench`` runs this
way (``--prefetch``), and ``auditor-lite bench`` times it on the sample clip.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")


def graph_threads(threads: int | None, prefetch: int) -> int:
    """ONNX Runtime intra-op threads for a pipelined run: ``threads`` when given, else every CPU but
    the one the preparing worker takes (module docstring), and every CPU without prefetching."""
    if threads:
        return int(threads)
    cpus = os.cpu_count() or 1
    return max(1, cpus - 1) if prefetch > 0 else cpus


def prepared_ahead(prepare: Callable[[Item], Prepared], items: Iterable[Item],
                   depth: int = 1) -> Iterator[tuple[Item, Prepared]]:
    """``(item, prepare(item))`` in the items' order, with up to ``depth`` items prepared ahead on
    one worker thread (``depth`` 0: each prepared when its turn comes, on the calling thread).

    An exception of ``prepare(item)`` is raised when that item's turn comes (the earlier items have
    been yielded). Closing the generator early (``break``, an exception in the loop body) cancels
    what the worker has not started and waits for what it has, so no thread outlives the loop.

    Tried and dropped: the worker also encoding the item's first context when the caller is still
    busy (so that the two threads' work evens out): the caller then waited 5 ms a clip for it
    and gained 3 (797 vs 795 masks/s p50 over 5 interleaved rounds of 40 clips).
    """
    if depth <= 0:
        for item in items:
            yield item, prepare(item)
        return
    source = iter(items)
    pending: deque = deque()
    worker = ThreadPoolExecutor(1, thread_name_prefix="auditor-prepare")
    try:
        while True:
            # the item about to be yielded and the ``depth`` after it are submitted
            while len(pending) < depth + 1:
                item = next(source, pending)        # the deque as a sentinel: no item is it
                if item is pending:
                    break
                pending.append((item, worker.submit(prepare, item)))
            if not pending:
                return
            item, future = pending.popleft()
            yield item, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        worker.shutdown(wait=True)
