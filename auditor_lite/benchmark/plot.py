"""``bench.png``: throughput and latency of every variant at every mask count, side by side.

Left: masks per second (higher is better). Right: p50 latency per clip call with a whisker to p99
(log scale: the naive layout is an order of magnitude slower). One bar colour per mask count;
dashed lines mark the speed goals (1000 masks/s, 10 ms).
matplotlib is imported here only (the Agg backend: files, never a display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auditor_lite.benchmark.goals import INT8_FUSED_MASKS_PER_S, SINGLE_MASK_P50_MS


def plot_report(report: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["latency"]
    variants = sorted({r["variant"] for r in rows})
    counts = sorted({r["masks"] for r in rows})
    index = {(r["variant"], r["masks"]): r for r in rows}
    height = 0.8 / len(counts)
    y = np.arange(len(variants))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 1.2 + 0.45 * len(variants) * len(counts)), sharey=True)
    for k, count in enumerate(counts):
        offset = y - 0.4 + height * (k + 0.5)
        present = [v for v in variants if (v, count) in index]
        at = [offset[variants.index(v)] for v in present]
        rate = [index[(v, count)]["masks_per_s"] for v in present]
        p50 = np.array([index[(v, count)]["p50_ms"] for v in present])
        p99 = np.array([index[(v, count)]["p99_ms"] for v in present])
        left.barh(at, rate, height=height, label=f"{count} mask{'s' if count > 1 else ''}/clip")
        right.barh(at, p50, height=height, xerr=[np.zeros_like(p50), p99 - p50], capsize=2,
                   label=f"{count} mask{'s' if count > 1 else ''}/clip")
        for a, value in zip(at, rate):
            left.text(value, a, f" {value:.0f}", va="center", fontsize=7)
    # The speed goals: INT8 fused >= 1000 masks/s at 13 masks, single mask <= 10 ms p50.
    left.axvline(INT8_FUSED_MASKS_PER_S, color="grey", linestyle="--", linewidth=0.8)
    right.axvline(SINGLE_MASK_P50_MS, color="grey", linestyle="--", linewidth=0.8)
    left.set_yticks(y, variants, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("masks / s (p50-based, higher is better)")
    right.set_xlabel("latency per clip call, ms (bar p50, whisker p99; log)")
    right.set_xscale("log")
    left.legend(fontsize=8, loc="lower right")
    machine = report["machine"]
    fig.suptitle(f"auditor-lite bench: {report['model']['name']} on {machine['cpu']} "
                 f"({machine['threads']} threads, onnxruntime {machine['onnxruntime']})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
