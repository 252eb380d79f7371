"""Throughput of a stream of clips: one clip after the other against several at once (runtime/pipeline.py).

The latency rows time one call at a time, each on every thread the graphs have. A dataset audit
(``audit --bench``) has many clips at hand, so it audits ``jobs`` of them at once on ``jobs``
threads, each clip's graph calls on CPUs / jobs threads. This section times both on the same
stream: ``clips`` calls of ``masks`` masks on the decoded sample clip (a new session per call, its
inputs prepared again, the text embedding cached as in the latency rows), interleaved rounds,
median and best of the rounds. Decoding files is not in it (``audit --bench`` decodes on the
jobs' threads too).
"""

from __future__ import annotations

import time

from auditor_lite.benchmark.timing import percentile
from auditor_lite.benchmark.variants import CPU, CPU_PRECISIONS

ONE_AFTER_THE_OTHER = "one after the other"
AT_ONCE = "clips at once"


def _audit_stream(auditor, clip, masks, clips: int, jobs: int) -> None:
    from auditor_lite.runtime.pipeline import in_order

    def audit(_):
        return auditor.session(clip.expression, clip.frames, clip.audio).audit(masks, clip.frame_index)
    for _ in in_order(audit, range(clips), jobs):
        pass


def stream_throughput(model_dir, clip, threads: int, masks: int = 13, clips: int = 40,
                      rounds: int = 5, log=lambda message: None) -> list[dict]:
    """Per shipped CPU precision, masks/s over a stream of ``clips`` clips: one after the other with
    the graphs on ``threads`` threads, and ``threads`` clips at once with the graphs on one thread
    each; ``rounds`` interleaved rounds after one warm-up round."""
    from auditor_lite.manifest import load_manifest
    from auditor_lite.runtime import Auditor

    shipped = load_manifest(model_dir, verify=False).precisions("masks")
    mask_list = clip.masks_for(masks)
    cases = []
    for precision in (p for p in CPU_PRECISIONS if p in shipped):
        for layout, jobs, graph_threads in ((ONE_AFTER_THE_OTHER, 1, threads), (AT_ONCE, threads, 1)):
            auditor = Auditor.load(model_dir, precision=precision, providers=CPU, intra_op_threads=graph_threads)
            cases.append({"precision": precision, "layout": layout, "jobs": jobs, "graph_threads": graph_threads,
                          "auditor": auditor, "seconds": []})
    log(f"stream of {clips} clips x {masks} masks: {len(cases)} cases, {rounds} rounds")
    for round_index in range(rounds + 1):               # round 0 warms up
        for case in cases:
            start = time.perf_counter()
            _audit_stream(case["auditor"], clip, mask_list, clips, case["jobs"])
            if round_index:
                case["seconds"].append(time.perf_counter() - start)
    rows = []
    for case in cases:
        rates = [clips * masks / s for s in case["seconds"]]
        rows.append({"precision": case["precision"], "layout": case["layout"], "masks": masks, "clips": clips,
                     "jobs": case["jobs"], "graph_threads": case["graph_threads"],
                     "masks_per_s_best": max(rates), "masks_per_s_p50": percentile(rates, 50),
                     "ms_per_clip_p50": 1e3 * percentile(case["seconds"], 50) / clips, "rounds": rounds})
    for row in rows:
        base = next(r for r in rows if r["precision"] == row["precision"] and r["layout"] == ONE_AFTER_THE_OTHER)
        row["x_vs_one_after_the_other"] = row["masks_per_s_p50"] / base["masks_per_s_p50"]
    return rows
