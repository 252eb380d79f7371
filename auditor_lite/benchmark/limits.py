"""What the machine can do, measured in the same run as the model: GEMM peaks, the share of a
real-resolution call spent before the graphs, and the process's peak memory.

* :func:`gemm_peaks`: ONNX Runtime's own MatMul (FP32) and MatMulInteger (U8 x S8) on 1024^3,
  through the runtime's session options and thread count, best of ``repeats``: the ceiling the
  graphs' achieved GFLOP/s is read against. The two one-node graphs ship in
  ``auditor_lite/assets/bench/`` (no ``onnx`` package needed to run them).
* :func:`real_resolution_breakdown`: the production call's stage breakdown on the bench clip
  upscaled to 720p (nearest neighbour, so the content is the clip's own), to show how much of a
  real camera's call is preprocessing (resize, log-mel, cell motion) rather than graphs.
* :func:`peak_rss_mb`: ``ru_maxrss`` of this process so far (everything the bench loaded).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "bench"
GEMM_SIZE = 1024
GRAPH_STAGES = ("graph: context", "graph: masks")


def gemm_peaks(threads: int, size: int = GEMM_SIZE, repeats: int = 5) -> dict:
    """``{"fp32_gflops", "int8_gops", "size", "threads"}``: 2 * size^3 over the best run time."""
    from auditor_lite.runtime.backends import OrtGraph

    rng = np.random.default_rng(0)
    cases = {
        "fp32_gflops": ("matmul_fp32.onnx", rng.standard_normal((size, size), dtype=np.float32),
                        rng.standard_normal((size, size), dtype=np.float32)),
        "int8_gops": ("matmulinteger_u8s8.onnx", rng.integers(0, 256, (size, size), dtype=np.uint8),
                      rng.integers(-128, 128, (size, size), dtype=np.int8)),
    }
    out = {"size": size, "threads": threads, "repeats": repeats}
    for key, (name, a, b) in cases.items():
        session = OrtGraph(ASSETS / name, ["CPUExecutionProvider"], intra_op_threads=threads).session
        feed = {"a": a, "b": b}
        session.run(None, feed)                                        # warm
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, feed)
            best = min(best, time.perf_counter() - start)
        out[key] = 2.0 * size ** 3 / best / 1e9
    return out


def upscaled(clip, height: int, width: int):
    """The clip's frames and masks at ``height`` x ``width`` (nearest neighbour)."""
    h, w = clip.frames.shape[1:3]
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    frames = np.ascontiguousarray(clip.frames[:, rows][:, :, cols])
    masks = [np.ascontiguousarray(m[rows][:, cols]) for m in clip.masks]
    return dataclasses.replace(clip, frames=frames, masks=masks, source=f"{clip.source} at {height}x{width}")


def real_resolution_breakdown(variant, clip, masks: int = 13, height: int = 720, width: int = 1280,
                              repeats: int = 10) -> dict:
    """The stage breakdown of ``variant`` on the clip at ``height`` x ``width``, plus the share of
    the call outside the graphs (``preprocess_share``)."""
    from auditor_lite.benchmark.profile import stage_breakdown

    big = upscaled(clip, height, width)
    breakdown = stage_breakdown(variant, big, big.masks_for(masks), repeats)
    breakdown.pop("feeds", None)
    graphs = sum(s["ms"] for s in breakdown["stages"] if s["stage"] in GRAPH_STAGES)
    breakdown["size"] = [height, width]
    breakdown["preprocess_ms"] = breakdown["total_ms"] - graphs
    breakdown["preprocess_share"] = breakdown["preprocess_ms"] / breakdown["total_ms"] if breakdown["total_ms"] else 0.0
    return breakdown


def peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:          # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0    # KiB on Linux
