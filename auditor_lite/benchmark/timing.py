"""Timing primitives: percentiles, per-case latency statistics, the interleaved loop, machine info.

Every case of a benchmark is timed in the same process, round-robin (A, B, C, A, B, C, ...), so
that a slow minute of a shared CPU (another job, thermal throttling) hits every case alike instead
of whichever case happened to run then. Each round starts one case later than the previous one,
so no case always runs right after the most expensive one (cache and allocator state).
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between the closest ranks.

    This is numpy's default (``method="linear"``, Hyndman & Fan type 7): the sorted values sit at
    positions 0..n-1 and percentile ``q`` is read at position ``(n - 1) * q / 100``.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must lie in [0, 100], got {q}")
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("percentile: no values")
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one case (a variant at a mask count) over its timed calls, in milliseconds.

    Throughput is read from the median (``masks_per_s = masks / p50``), which a few slow calls on
    a shared machine do not move; ``masks_per_s_mean`` is the sustained rate (total masks / total
    time) for comparison.
    """

    variant: str
    masks: int
    calls: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def from_seconds(cls, variant: str, masks: int, seconds: Sequence[float]) -> "LatencyStats":
        if masks < 1:
            raise ValueError(f"LatencyStats: masks must be >= 1, got {masks}")
        ms = [1e3 * s for s in seconds]
        if not ms:
            raise ValueError(f"LatencyStats: no timed calls for {variant} at {masks} masks")
        return cls(variant=variant, masks=masks, calls=len(ms), p50_ms=percentile(ms, 50),
                   p90_ms=percentile(ms, 90), p99_ms=percentile(ms, 99), mean_ms=sum(ms) / len(ms),
                   min_ms=min(ms), max_ms=max(ms))

    @property
    def per_mask_ms(self) -> float:
        return self.p50_ms / self.masks

    @property
    def masks_per_s(self) -> float:
        return 1e3 * self.masks / self.p50_ms if self.p50_ms > 0 else math.inf

    @property
    def masks_per_s_mean(self) -> float:
        return 1e3 * self.masks / self.mean_ms if self.mean_ms > 0 else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "per_mask_ms": self.per_mask_ms, "masks_per_s": self.masks_per_s,
                "masks_per_s_mean": self.masks_per_s_mean}


def time_interleaved(cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 0,
                     clock: Callable[[], float] = time.perf_counter,
                     on_round: Callable[[int, int], None] | None = None) -> dict[str, list[float]]:
    """Call every case once per round, ``warmup`` untimed rounds then ``repeats`` timed ones.

    Returns ``{case: [seconds of each timed call]}``. Round ``r`` starts at case ``r mod k`` (the
    rotation described in the module docstring). ``on_round(done, total)`` reports progress.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(cases)
    if not names:
        raise ValueError("time_interleaved: no cases to time")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    total = warmup + repeats
    for round_index in range(total):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            cases[name]()
            elapsed = clock() - start
            if round_index >= warmup:
                seconds[name].append(elapsed)
        if on_round is not None:
            on_round(round_index + 1, total)
    return seconds


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict:
    """What the numbers were measured on: CPU, cores usable by this process, library versions,
    the thread setting and the load average (a busy shared machine explains slow numbers)."""
    import numpy
    import onnxruntime

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info = {
        "cpu": _cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
        "threads": threads, "platform": platform.platform(), "python": platform.python_version(),
        "numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": list(onnxruntime.get_available_providers()),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    return info
