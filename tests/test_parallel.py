"""The shared numpy thread pool (auditor_lite/parallel.py): shares, side work, failures, a busy pool."""

import os
import threading
import time

import pytest

from auditor_lite.parallel import alongside, in_shares, worker_count

TWO_CPUS = (os.cpu_count() or 1) >= 2


def test_worker_count_never_exceeds_the_cpus():
    cpus = os.cpu_count() or 1
    assert worker_count(None) == 1 and worker_count(0) == 1 and worker_count(1) == 1
    assert worker_count(cpus + 5) == cpus and worker_count(2) == min(2, cpus)


@pytest.mark.parametrize("shares", [1, 2, 3, 8])
def test_in_shares_covers_every_index_once(shares):
    seen, lock = [], threading.Lock()

    def work(start, stop):
        with lock:
            seen.extend(range(start, stop))
    in_shares(work, 10, shares)
    assert sorted(seen) == list(range(10))


def test_alongside_returns_both_results_in_order():
    assert alongside(lambda: "main", lambda: "side", 2) == ("main", "side")
    assert alongside(lambda: "main", lambda: "side", 1) == ("main", "side")


@pytest.mark.skipif(not TWO_CPUS, reason="one CPU: alongside runs the two one after the other")
def test_alongside_runs_the_side_work_on_another_thread():
    threads = {}
    alongside(lambda: (time.sleep(0.1), threads.setdefault("main", threading.get_ident())),
              lambda: threads.setdefault("side", threading.get_ident()), 2)
    assert threads["main"] == threading.get_ident() != threads["side"]


@pytest.mark.parametrize("failing", ["main", "side"])
def test_alongside_raises_either_failure_after_both_ended(failing):
    ended = []

    def part(name):
        def run():
            time.sleep(0.02)
            ended.append(name)
            if name == failing:
                raise ValueError(name)
            return name
        return run
    with pytest.raises(ValueError, match=failing):
        alongside(part("main"), part("side"), 2)
    time.sleep(0.05)
    assert sorted(ended) == ["main", "side"] or ended == ["main"]   # a side never started is dropped


def test_a_busy_pool_does_not_make_the_caller_wait():
    """The side work queued behind a long task is taken back and done on the calling thread."""
    release = threading.Event()
    blocker_started = threading.Event()
    blocker = threading.Thread(target=lambda: alongside(
        lambda: release.wait(5), lambda: (blocker_started.set(), release.wait(5)), 2))
    blocker.start()
    try:
        if TWO_CPUS:
            assert blocker_started.wait(5)                 # the pool's one worker is now busy
        started = time.perf_counter()
        assert alongside(lambda: 1, lambda: threading.get_ident(), 2) == (1, threading.get_ident())
        assert time.perf_counter() - started < 1.0
    finally:
        release.set()
        blocker.join(5)
