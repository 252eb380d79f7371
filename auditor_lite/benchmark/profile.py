"""Where the time of one audit call goes.

Two views:

* :func:`stage_breakdown` times the stages of the real call path by wrapping, for the duration of
  the measurement only, the functions :mod:`auditor_lite.runtime.session` calls (input checks,
  each preprocessing step, result building) and the auditor's graph runners. Nothing of the call
  path is re-implemented here, so the numbers describe what the runtime does; whatever is not
  wrapped (session bookkeeping, the Python glue) is reported as ``other``.
* :func:`op_profile` runs ONNX Runtime's own profiler on a graph with the exact input tensors the
  runtime fed it and sums the kernel time per operator type.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Functions ClipSession calls, by the name it imported them under -> the stage they time.
SESSION_STAGES = {
    "check_frames": "input checks", "check_frame": "input checks", "check_audio": "input checks",
    "check_masks": "input checks", "prepare_frames": "prepare frames", "prepare_audio": "prepare audio",
    "prepare_key_frame": "prepare key frame", "prepare_masks": "prepare masks",
    "log_mel": "log-mel", "cell_motion": "cell motion",
    "build_results": "build results",
}
# Methods of the auditor the session calls.
AUDITOR_STAGES = {"run_context": "graph: context", "run_masks": "graph: masks"}
OTHER = "other (session glue)"
TOP_NODES = 5


def _timed(function, label: str, totals: dict, captured: dict):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start
            if label.startswith("graph:") and args:
                captured[label] = args  # the tensors the graph received (for op_profile)
    return wrapper


@contextmanager
def instrumented(auditor):
    """Within the block, time the session's stages into ``totals`` (seconds by stage) and keep the
    last arguments of each graph runner in ``captured``; everything is restored afterwards."""
    from auditor_lite.runtime import session as session_module

    totals: dict[str, float] = defaultdict(float)
    captured: dict[str, tuple] = {}
    functions = {name: getattr(session_module, name) for name in SESSION_STAGES
                 if hasattr(session_module, name)}
    # Methods are shadowed by instance attributes; an adapter may already own such an attribute.
    methods = {name: vars(auditor).get(name) for name in AUDITOR_STAGES if hasattr(auditor, name)}
    try:
        for name, function in functions.items():
            setattr(session_module, name, _timed(function, SESSION_STAGES[name], totals, captured))
        for name in methods:
            setattr(auditor, name, _timed(getattr(auditor, name), AUDITOR_STAGES[name], totals, captured))
        yield totals, captured
    finally:
        for name, function in functions.items():
            setattr(session_module, name, function)
        for name, own in methods.items():
            if own is None:
                vars(auditor).pop(name, None)
            else:
                setattr(auditor, name, own)


def stage_breakdown(variant, clip, masks, repeats: int = 20) -> dict:
    """Mean milliseconds per call of every stage of ``variant.call(clip, masks)`` and its share of
    the whole call; ``{"stages": [{"stage", "ms", "share"}], "total_ms", "calls", "feeds"}``."""
    variant.call(clip, masks)  # warm (the cached layout encodes its context here)
    with instrumented(variant.auditor) as (totals, captured):
        start = time.perf_counter()
        for _ in range(repeats):
            variant.call(clip, masks)
        wall = time.perf_counter() - start
    stages = dict(totals)
    stages[OTHER] = max(0.0, wall - sum(stages.values()))
    rows = [{"stage": stage, "ms": 1e3 * seconds / repeats, "share": seconds / wall if wall else 0.0}
            for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1])]
    return {"variant": variant.name, "masks": len(masks), "calls": repeats,
            "total_ms": 1e3 * wall / repeats, "stages": rows, "feeds": captured}


def _profile_events(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data["traceEvents"] if isinstance(data, dict) else data


def aggregate_ops(events: list[dict], skip_runs: int = 0) -> dict:
    """Kernel time per operator type from an ONNX Runtime profile (its JSON trace events).

    The first ``skip_runs`` ``model_run`` events (warm-up) and the node events inside them are left
    out. Returns ``{"runs", "run_ms", "kernel_ms", "ops": [{"op", "ms", "share", "nodes"}],
    "heaviest_nodes": [{"node", "op", "ms", "share"}]}`` (the :data:`TOP_NODES` slowest nodes), with
    times per run and shares of the total kernel time, largest first.
    """
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) <= skip_runs:
        raise ValueError(f"profile: {len(runs)} model runs recorded, cannot skip {skip_runs} warm-up runs")
    kept = runs[skip_runs:]
    cutoff = kept[0]["ts"]
    per_op: dict[str, float] = defaultdict(float)
    per_node: dict[tuple[str, str], float] = defaultdict(float)
    nodes: dict[str, set] = defaultdict(set)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if event["ts"] < cutoff:
            continue
        op = event.get("args", {}).get("op_name", "?")
        per_op[op] += event["dur"]
        per_node[(event["name"][: -len("_kernel_time")], op)] += event["dur"]
        nodes[op].add(event["name"])
    total = sum(per_op.values())
    ops = [{"op": op, "ms": us / 1e3 / len(kept), "share": us / total if total else 0.0,
            "nodes": len(nodes[op])} for op, us in sorted(per_op.items(), key=lambda kv: -kv[1])]
    top = sorted(per_node.items(), key=lambda kv: -kv[1])[:TOP_NODES]
    heaviest = [{"node": node, "op": op, "ms": us / 1e3 / len(kept), "share": us / total if total else 0.0}
                for (node, op), us in top]
    return {"runs": len(kept), "run_ms": statistics.median(e["dur"] for e in kept) / 1e3,
            "kernel_ms": total / 1e3 / len(kept), "ops": ops, "heaviest_nodes": heaviest}


def _macs(op: str, inputs: list, output: list) -> int:
    """Multiply-adds of one MatMul / Gemm / Conv node from its profiled shapes (0 otherwise)."""
    if op not in ("MatMul", "Gemm", "Conv") or not inputs or not output:
        return 0
    out = int(np.prod(output))
    if op == "Conv":            # weights (Cout, Cin / groups, kh, kw): each output sums Cin/g*kh*kw
        return out * int(np.prod(inputs[1][1:])) if len(inputs) > 1 else 0
    return out * int(inputs[0][-1])           # A (..., M, K) as exported (no transposed A here)


def graph_gflop(graph_path, feed: dict, providers=("CPUExecutionProvider",)) -> float:
    """GFLOP of one run of ``graph_path`` on ``feed``: 2 x the multiply-adds of its MatMul, Gemm and
    Conv nodes (elementwise ops not counted), read from ONNX Runtime's profile of the graph run
    without optimisation, so its nodes are the exported ones with the shapes of this feed. A QDQ
    graph counts its float-shaped products the same way (the arithmetic its integer kernels do)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="auditor-lite-flops-") as scratch:
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = ort.InferenceSession(str(graph_path), options, providers=list(providers))
        session.run(None, feed)
        events = _profile_events(Path(session.end_profiling()))
    macs = 0
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        shapes = [next(iter(t.values())) for t in args.get("input_type_shape", [])]
        output = [next(iter(t.values())) for t in args.get("output_type_shape", [])]
        macs += _macs(args.get("op_name", ""), shapes, output[0] if output else [])
    return 2.0 * macs / 1e9


def op_profile(graph_path, feed: dict, threads: int, runs: int = 20, warmup: int = 3,
               providers=("CPUExecutionProvider",)) -> dict:
    """ONNX Runtime's profiler on ``graph_path`` (session options as the runtime sets them)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    spin = "1" if os.environ.get("AUDITOR_LITE_ORT_SPIN", "0") == "1" else "0"  # as the runtime
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="auditor-lite-profile-") as scratch:
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = ort.InferenceSession(str(graph_path), options, providers=list(providers))
        for _ in range(warmup + runs):
            session.run(None, feed)
        report = aggregate_ops(_profile_events(Path(session.end_profiling())), skip_runs=warmup)
    report["graph"] = Path(graph_path).name
    report["gflop"] = graph_gflop(graph_path, feed, providers)
    return report
