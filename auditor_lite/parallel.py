"""A small shared thread pool for the runtime's numpy work (resizing, a clip's audio and frames).

numpy's loops and the BLAS release the GIL, so independent numpy work shares the cores through
threads. The pool is per process (a pool inherited through fork has no threads) and per size. Both
helpers never wait behind the pool: a share no worker has started when the calling thread is done
with its own is taken back and done by the caller. So concurrent callers never queue behind each
other's work, at most ``threads - 1`` pool threads run besides the callers, and a busy pool costs
no more than doing everything on the calling thread.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def worker_count(threads: int | None) -> int:
    """``threads`` clipped to ``1 .. os.cpu_count()``."""
    return max(1, min(int(threads or 1), os.cpu_count() or 1))


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        key = (os.getpid(), workers)
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="auditor-numpy")
    return pool


def _settle(futures) -> None:
    """After a failure on the calling thread: no share outlives the call."""
    for future in futures:
        if not future.cancel():
            future.exception()


def in_shares(work, count: int, shares: int) -> None:
    """``work(start, stop)`` over ``range(count)`` in ``shares`` contiguous shares: the calling
    thread takes the first, a pool of ``shares - 1`` workers the others (module docstring)."""
    shares = min(worker_count(shares), count)
    if shares <= 1:
        work(0, count)
        return
    bounds = [count * i // shares for i in range(shares + 1)]
    pool = _pool(shares - 1)
    futures = [(pool.submit(work, bounds[i], bounds[i + 1]), i) for i in range(1, shares)]
    try:
        work(bounds[0], bounds[1])
    except BaseException:
        _settle(future for future, _ in futures)
        raise
    for future, i in futures:
        if future.cancel():                         # not started: the calling thread does it
            work(bounds[i], bounds[i + 1])
        else:
            future.result()


def alongside(main, side, threads: int | None):
    """``(main(), side())``, ``side`` on a pool thread while the calling thread runs ``main`` when
    ``threads`` >= 2 and there are 2 CPUs (else one after the other, ``main`` first). An exception
    of either is raised (``main``'s first), after both have ended."""
    if worker_count(threads) < 2:
        return main(), side()
    future = _pool(1).submit(side)
    try:
        first = main()
    except BaseException:
        _settle([future])
        raise
    if future.cancel():                             # the pool was busy: do it here
        return first, side()
    return first, future.result()
