"""Throughput of a stream of clips: one after the other against prepared ahead (runtime/pipeline.py).

The latency rows time one call at a time: each call prepares its clip (frames, log-mel, cell
motion) and then runs the graphs, on every thread the graphs have. A dataset audit
(``audit --bench``) has the next clip at hand, so it prepares that clip on a worker thread while
this one's graphs run, with the graphs on one thread fewer. This section times both on the same
stream: ``clips`` calls of ``masks`` masks on the decoded sample clip (a new session per call, its
inputs prepared again, the text embedding cached as in the latency rows), interleaved rounds,
best and median of the rounds. Decoding files is not in it (``audit --bench`` reads them on the
worker too).
"""

from __future__ import annotations

import time

from auditor_lite.benchmark.timing import percentile
from auditor_lite.benchmark.variants import CPU, CPU_PRECISIONS


def _one_after_the_other(auditor, clip, masks, clips: int) -> None:
    for _ in range(clips):
        auditor.session(clip.expression, clip.frames, clip.audio).audit(masks, clip.frame_index)


def _prepared_ahead(auditor, clip, masks, clips: int) -> None:
    from auditor_lite.runtime.pipeline import prepared_ahead

    def prepare(_):
        return auditor.session(clip.expression, clip.frames, clip.audio).prepare()
    for _, session in prepared_ahead(prepare, range(clips), depth=1):
        session.audit(masks, clip.frame_index)


def stream_throughput(model_dir, clip, threads: int, masks: int = 13, clips: int = 40,
                      rounds: int = 5, log=lambda message: None) -> list[dict]:
    """Per shipped CPU precision, masks/s over a stream of ``clips`` clips: one after the other with
    the graphs on ``threads`` threads, and prepared ahead with the graphs on ``threads - 1`` (at
    least 1) beside one preparing worker; ``rounds`` interleaved rounds after one warm-up round."""
    from auditor_lite.manifest import load_manifest
    from auditor_lite.runtime import Auditor

    shipped = load_manifest(model_dir, verify=False).precisions("masks")
    mask_list = clip.masks_for(masks)
    cases = []
    for precision in (p for p in CPU_PRECISIONS if p in shipped):
        for layout, run, graph_threads in (("one after the other", _one_after_the_other, threads),
                                           ("prepared ahead", _prepared_ahead, max(1, threads - 1))):
            auditor = Auditor.load(model_dir, precision=precision, providers=CPU, intra_op_threads=graph_threads)
            cases.append({"precision": precision, "layout": layout, "graph_threads": graph_threads,
                          "worker_threads": 1 if run is _prepared_ahead else 0,
                          "run": run, "auditor": auditor, "seconds": []})
    log(f"stream of {clips} clips x {masks} masks: {len(cases)} cases, {rounds} rounds")
    for round_index in range(rounds + 1):               # round 0 warms up
        for case in cases:
            start = time.perf_counter()
            case["run"](case["auditor"], clip, mask_list, clips)
            if round_index:
                case["seconds"].append(time.perf_counter() - start)
    rows = []
    for case in cases:
        rates = [clips * masks / s for s in case["seconds"]]
        rows.append({"precision": case["precision"], "layout": case["layout"], "masks": masks, "clips": clips,
                     "graph_threads": case["graph_threads"], "worker_threads": case["worker_threads"],
                     "masks_per_s_best": max(rates), "masks_per_s_p50": percentile(rates, 50),
                     "ms_per_clip_p50": 1e3 * percentile(case["seconds"], 50) / clips, "rounds": rounds})
    for row in rows:
        base = next(r for r in rows if r["precision"] == row["precision"] and r["layout"] == "one after the other")
        row["x_vs_one_after_the_other"] = row["masks_per_s_p50"] / base["masks_per_s_p50"]
    return rows
