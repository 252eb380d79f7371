"""Run the whole benchmark in one process and assemble its report (a JSON-ready dict).

Order: decode the clip; build every variant; time all (variant, mask count) cases interleaved;
record what each case ran (graph calls) and that all layouts of a precision agree; time the text
encoder cold; profile; score accuracy on a benchmark slice; check the issue-6 goals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from auditor_lite.benchmark.limits import peak_rss_mb
from auditor_lite.benchmark.timing import LatencyStats, machine_info, percentile, time_interleaved
from auditor_lite.benchmark.variants import (CPU, CPU_PRECISIONS, LAYOUTS, SAMPLE_CLIP, build_variants,
                                             load_clip)
from auditor_lite.data.schema import DataError
from auditor_lite.graph_io import MASKS_INPUTS

GOAL_MASKS = 13  # MQ-RAVSBench's mean number of candidates per expression


@dataclass
class BenchOptions:
    model_dir: Path
    mask_counts: tuple[int, ...] = (1, GOAL_MASKS)
    repeats: int = 50
    warmup: int = 5
    threads: int | None = None            # default: every CPU, as the runtime does
    clip_dir: Path = SAMPLE_CLIP
    bench: Path | None = None              # accuracy needs a benchmark; skipped without one
    accuracy_expressions: int = 100
    profile_repeats: int = 20
    text_repeats: int = 20
    gpu: bool = True
    layouts: tuple[str, ...] = LAYOUTS
    stream_clips: int = 40                 # clips per round of the stream section (0: skip it)
    log: Callable[[str], None] = field(default=lambda message: None)


def case_name(variant: str, masks: int) -> str:
    return f"{variant} @{masks}"


def _graph_calls(variant, clip, masks) -> tuple[dict, list]:
    """What one call of the case runs (session counters) and its results."""
    before = dict(variant.warm_session.stats) if variant.layout == "cached" else {}
    results, stats = variant.call(clip, masks)
    calls = {k: v - before.get(k, 0) for k, v in stats.items() if v - before.get(k, 0)}
    if len(results) != len(masks):
        raise RuntimeError(f"{variant.name}: {len(results)} results for {len(masks)} masks")
    return calls, results


def time_cases(variants, clip, options: BenchOptions) -> tuple[list[dict], list[str]]:
    """Latency rows of every case, timed interleaved; naive and alone at 1 mask are the fused call itself."""
    cases, meta, notes = {}, {}, []
    for count in options.mask_counts:
        masks = clip.masks_for(count)
        for variant in variants:
            if variant.layout in ("naive", "alone") and count == 1:
                continue
            name = case_name(variant.name, count)
            cases[name] = partial(variant.call, clip, masks)
            meta[name] = (variant, count, *_graph_calls(variant, clip, masks))
    if any(v.layout in ("naive", "alone") for v in variants) and 1 in options.mask_counts:
        notes.append("naive and alone at 1 mask are the fused call itself (one context for one mask): not timed twice")

    def progress(done, total):
        if done == total or done % max(1, total // 10) == 0:
            options.log(f"  round {done}/{total}")

    options.log(f"timing {len(cases)} cases interleaved: {options.warmup} warm-up + {options.repeats} rounds")
    seconds = time_interleaved(cases, options.repeats, options.warmup, on_round=progress)
    rows = []
    for name, (variant, count, calls, results) in meta.items():
        row = LatencyStats.from_seconds(variant.name, count, seconds[name]).to_dict()
        row.update(layout=variant.layout, precision=variant.precision, engine=variant.engine,
                   graph_calls=calls, raw_iou=[r.raw_iou for r in results])
        rows.append(row)
    _agreement(rows)
    return rows, notes


def _agreement(rows: list[dict]) -> None:
    """``max_iou_diff_vs_fused``: the largest |raw IoU - the fused variant's| of the same engine and
    precision at the same mask count (the layouts compute one function; this shows they do)."""
    def reference(variant, masks):
        return next((r for r in rows if r["variant"] == variant and r["masks"] == masks), None)

    for row in rows:
        fused = reference(f"{row['variant'].rsplit(' ', 1)[0]} fused", row["masks"])
        if fused is not None:
            row["max_iou_diff_vs_fused"] = max(abs(x - y) for x, y in zip(row["raw_iou"], fused["raw_iou"]))
    for row in rows:
        del row["raw_iou"]


def speedups(rows: list[dict]) -> list[dict]:
    """Fused vs naive, fused vs each mask alone, fused vs cached and INT8 vs FP32."""
    index = {(r["variant"], r["masks"]): r for r in rows}
    out = []

    def add(what, masks, slow, fast):
        a, b = index.get((slow, masks)), index.get((fast, masks))
        if a and b:
            out.append({"comparison": what, "masks": masks, "x": a["p50_ms"] / b["p50_ms"],
                        "slower": slow, "faster": fast})

    masks_seen = sorted({r["masks"] for r in rows})
    prefixes = sorted({r["variant"].rsplit(" ", 1)[0] for r in rows})
    for masks in masks_seen:
        for prefix in prefixes:
            add(f"{prefix}: fused vs naive", masks, f"{prefix} naive", f"{prefix} fused")
            add(f"{prefix}: fused vs each mask alone", masks, f"{prefix} alone", f"{prefix} fused")
            add(f"{prefix}: cached context vs fused", masks, f"{prefix} fused", f"{prefix} cached")
        for layout in LAYOUTS:
            add(f"int8-cpu vs fp32 ({layout})", masks, f"ort fp32 {layout}", f"ort int8-cpu {layout}")
    return out


def text_encoder_cost(variants, expression: str, repeats: int) -> list[dict]:
    """Cold (cache cleared: tokenize + text graph) and cached embedding cost of each text graph."""
    out, seen = [], set()
    for variant in variants:
        text = getattr(variant.auditor, "text", None)
        if text is None or text.graph.path in seen:
            continue
        seen.add(text.graph.path)
        cold = []
        for _ in range(repeats):
            text.cache.clear()
            start = time.perf_counter()
            text.embed(expression)
            cold.append(1e3 * (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(repeats):
            text.embed(expression)
        cached_us = 1e6 * (time.perf_counter() - start) / repeats
        out.append({"file": text.graph.path.name, "cold_p50_ms": percentile(cold, 50),
                    "cold_p99_ms": percentile(cold, 99), "cached_us": cached_us, "calls": repeats})
    return out


def model_sizes(manifest) -> list[dict]:
    """File sizes (MB) per precision: the auditor graphs (context + masks), the text encoder; the
    tokenizer apart."""
    files = manifest.data["files"]

    def mb(name):
        return None if name is None else files[name]["bytes"] / 1e6

    rows = []
    for precision in ("fp32", "int8-cpu", "int8-trt"):
        parts = [manifest.graphs.get(g, {}).get(precision) for g in ("context", "masks")]
        text = manifest.graphs.get("text_encoder", {}).get(precision)
        if None in parts:
            continue
        rows.append({"precision": precision, "context_mb": mb(parts[0]), "masks_mb": mb(parts[1]),
                     "text_encoder_mb": mb(text), "files": [f for f in [*parts, text] if f is not None]})
    if "tokenizer.json" in files:
        rows.append({"precision": "tokenizer.json", "context_mb": None, "masks_mb": None,
                     "text_encoder_mb": mb("tokenizer.json"), "files": ["tokenizer.json"]})
    return rows


def profiles(variants, clip, options: BenchOptions, threads: int) -> dict:
    """Stage breakdowns of the production (fused) layout at every mask count, and ONNX Runtime op
    profiles of each CPU precision's context and masks graphs at the largest count."""
    from auditor_lite.benchmark.profile import op_profile, stage_breakdown

    largest = max(options.mask_counts)
    stages, ops = [], []
    by_name = {v.name: v for v in variants}
    for precision in CPU_PRECISIONS:
        fused = by_name.get(f"ort {precision} fused")
        if fused is None:
            continue
        options.log(f"profiling {fused.name}")
        for count in options.mask_counts:
            breakdown = stage_breakdown(fused, clip, clip.masks_for(count), options.profile_repeats)
            feeds = breakdown.pop("feeds")
            stages.append(breakdown)
            if count != largest:
                continue
            graph_feeds = {"context": feeds.get("graph: context", (None,))[0],
                           "masks": dict(zip(MASKS_INPUTS, feeds.get("graph: masks", ())))}
            for graph, feed in graph_feeds.items():
                if feed:
                    ops.append({"variant": f"{fused.name} ({graph} graph)", "masks": largest,
                                **op_profile(fused.auditor.graphs[graph].path, feed, threads,
                                             runs=options.profile_repeats)})
    return {"stages": stages, "ops": ops}


def cold_start(model_dir, clip, threads: int) -> list[dict]:
    """Per CPU precision: ``Auditor.load`` (manifest and hashes checked, ONNX Runtime sessions made:
    the graph optimisation happens here, for this CPU) and the first audit after it (the first
    run of each graph), in ms. Python modules are already imported, so an import-free
    process start adds only the interpreter's and the imports' time."""
    from auditor_lite.manifest import load_manifest
    from auditor_lite.runtime import Auditor

    shipped = load_manifest(model_dir, verify=False).precisions("masks")
    rows = []
    for precision in (p for p in CPU_PRECISIONS if p in shipped):
        start = time.perf_counter()
        auditor = Auditor.load(model_dir, precision=precision, providers=CPU, intra_op_threads=threads)
        loaded = time.perf_counter()
        auditor.audit(clip.frames, clip.audio, clip.expression, clip.masks_for(1), frame_index=clip.frame_index)
        first = time.perf_counter()
        auditor.audit(clip.frames, clip.audio, clip.expression, clip.masks_for(1), frame_index=clip.frame_index)
        states = {graph.optimised_cache for graph in auditor.graphs.values()} | {auditor.text.graph.optimised_cache}
        rows.append({"precision": precision, "ort_cache": "/".join(sorted(states)), "load_ms": 1e3 * (loaded - start),
                     "first_result_ms": 1e3 * (first - loaded),
                     "second_result_ms": 1e3 * (time.perf_counter() - first)})
    return rows


def _accuracy(variants, options: BenchOptions, threads: int, notes: list[str]) -> dict | None:
    from auditor_lite.benchmark.accuracy import accuracy_table

    if options.bench is None:
        notes.append("accuracy: skipped (pass --bench BENCH)")
        return None
    auditors = {}
    for variant in variants:  # one auditor per engine + precision (the layouts agree)
        auditors.setdefault(variant.name.rsplit(" ", 1)[0], variant.auditor)
    if not any(v.precision == "int8-trt" for v in variants):
        from auditor_lite.manifest import load_manifest
        from auditor_lite.runtime import Auditor

        if "int8-trt" in load_manifest(options.model_dir, verify=False).graphs.get("masks", {}):
            # The TensorRT graph's QDQ arithmetic scored on the CPU (TensorRT itself is not here).
            auditors["ort int8-trt (cpu)"] = Auditor.load(options.model_dir, precision="int8-trt",
                                                          providers=CPU, intra_op_threads=threads)
    options.log(f"accuracy: {len(auditors)} artifacts on up to {options.accuracy_expressions} expressions "
                f"of {options.bench}")
    return accuracy_table(auditors, options.bench, options.accuracy_expressions)


def run_suite(options: BenchOptions) -> dict:
    """Everything ``auditor-lite bench`` reports, as one JSON-ready dict."""
    from auditor_lite.benchmark.goals import evaluate_goals
    from auditor_lite.manifest import load_manifest

    if not options.mask_counts or min(options.mask_counts) < 1:
        raise ValueError(f"masks per clip must be positive integers, got {options.mask_counts}")
    threads = options.threads or os.cpu_count() or 1
    started = time.perf_counter()
    clip = load_clip(options.clip_dir)
    options.log(f"cold start of {options.model_dir}")
    cold = cold_start(options.model_dir, clip, threads)
    options.log(f"loading {options.model_dir}")
    variants, notes = build_variants(options.model_dir, threads, options.gpu, options.layouts)
    if not variants:
        raise DataError(options.model_dir, "no graph this machine can run; nothing to benchmark")
    for variant in variants:
        variant.prepare(clip)
    rows, timing_notes = time_cases(variants, clip, options)
    manifest = load_manifest(options.model_dir, verify=False)
    report = {
        "machine": machine_info(threads),
        "options": {"masks": list(options.mask_counts), "repeats": options.repeats, "warmup": options.warmup,
                    "threads": threads, "interleaved": True, "profile_repeats": options.profile_repeats},
        "model": {"dir": str(options.model_dir), "name": manifest.name,
                  "default_precision": manifest.default_precision},
        "clip": clip.describe(),
        "variants": [v.describe() for v in variants],
        "latency": rows,
        "speedups": speedups(rows),
        "text_encoder": text_encoder_cost(variants, clip.expression, options.text_repeats),
        "sizes": model_sizes(manifest),
        "cold_start": cold,
    }
    if options.stream_clips and GOAL_MASKS in options.mask_counts:
        from auditor_lite.benchmark.stream import stream_throughput

        report["stream"] = stream_throughput(options.model_dir, clip, threads, GOAL_MASKS, options.stream_clips,
                                             rounds=max(1, min(5, options.repeats // 10)), log=options.log)
    report["profile"] = profiles(variants, clip, options, threads)
    report["limits"] = machine_limits(variants, clip, options, threads)
    report["accuracy"] = _accuracy(variants, options, threads, notes)
    report["goals"] = evaluate_goals(rows, GOAL_MASKS, report.get("stream"))
    report["notes"] = notes + timing_notes
    report["machine"]["load_average_1m_end"] = machine_info(threads).get("load_average_1m")
    report["seconds"] = time.perf_counter() - started
    report["limits"]["peak_rss_mb"] = peak_rss_mb()
    return report


def machine_limits(variants, clip, options: BenchOptions, threads: int) -> dict:
    """GEMM peaks in this run, the graphs' achieved rate against them, and the 720p call's
    preprocessing share (auditor_lite.benchmark.limits)."""
    from auditor_lite.benchmark.limits import gemm_peaks, real_resolution_breakdown

    options.log("GEMM peaks and the 720p breakdown")
    limits = {"gemm": gemm_peaks(threads)}
    fused = [v for v in variants if v.layout == "fused" and v.engine.endswith("cpu")]
    fused = next((v for v in fused if v.precision == "int8-cpu"), fused[0] if fused else None)
    if fused is not None:
        limits["real_resolution"] = real_resolution_breakdown(fused, clip, repeats=options.profile_repeats)
    return limits
