"""Side-by-side ONNX Runtime latency of the fused graphs (FP32 against INT8) at a fixed mask count.

Each graph runs through its fused-layout ``Auditor`` (the runtime's backend and session options),
timed in the same process, interleaved round by round (every graph once per
round), so that drifts of a shared CPU hit every graph alike; the median over rounds is reported.
Inputs are a real calibration clip with ``num_masks`` of its masks (cycled when it has fewer).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from auditor_lite.calibration.dataset import CLIP_INPUTS, CalibrationSamples

DEFAULT_MASKS = 13  # MQ-RAVSBench's mean candidates per expression
DEFAULT_ROUNDS = 20
WARMUP_ROUNDS = 3


def fused_feeds(samples: CalibrationSamples, num_masks: int = DEFAULT_MASKS) -> dict[str, np.ndarray]:
    """Clip 0's inputs with ``num_masks`` masks (its own first, then the others' to fill up)."""
    if len(samples) == 0:
        raise ValueError("fused_feeds: no calibration samples")
    clip = int(samples.clip_index[0])
    own = np.flatnonzero(samples.clip_index == clip)
    order = np.concatenate([own, np.flatnonzero(samples.clip_index != clip)])
    picks = np.resize(order, num_masks)
    feeds = {name: getattr(samples, name)[clip:clip + 1] for name in CLIP_INPUTS}
    feeds["masks"] = samples.masks[picks]
    return feeds


def compare_fused(auditors: dict, samples: CalibrationSamples, num_masks: int = DEFAULT_MASKS,
                  rounds: int = DEFAULT_ROUNDS) -> dict:
    """``auditors``: ``{name: Auditor}`` with the fused layout. Returns ``{"graphs": {name:
    {"median_ms", "min_ms", "bytes"}}, "num_masks", "threads", "rounds"}``."""
    feeds = fused_feeds(samples, num_masks)
    times: dict[str, list[float]] = {name: [] for name in auditors}
    for round_index in range(WARMUP_ROUNDS + rounds):
        for name, auditor in auditors.items():
            start = time.perf_counter()
            auditor.run_fused(feeds)
            if round_index >= WARMUP_ROUNDS:
                times[name].append(1e3 * (time.perf_counter() - start))
    report = {name: {"median_ms": statistics.median(t), "min_ms": min(t),
                     "bytes": Path(auditors[name].graphs["auditor"].path).stat().st_size}
              for name, t in times.items()}
    threads = next(iter(auditors.values())).backend_impl.intra_op_threads if auditors else None
    return {"graphs": report, "num_masks": num_masks, "threads": threads, "rounds": rounds}


def format_latency(report: dict) -> str:
    graphs = report["graphs"]
    base = graphs.get("fp32", {}).get("median_ms")
    lines = [f"fused graph latency, ONNX Runtime CPU, {report['num_masks']} masks, "
             f"{report['threads']} threads (median of {report['rounds']} interleaved rounds):"]
    for name, entry in graphs.items():
        speedup = f"  x{base / entry['median_ms']:.2f} vs fp32" if base and name != "fp32" else ""
        lines.append(f"  {name:<10} {entry['median_ms']:7.1f} ms (min {entry['min_ms']:.1f})  "
                     f"{entry['bytes'] / 1e6:6.2f} MB{speedup}")
    return "\n".join(lines)
