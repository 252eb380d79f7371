"""The benchmark report as text (stdout), Markdown (``bench.md``), JSON (``bench.json``) and PNG.

Every table is built once as ``(title, headers, rows)`` of strings and rendered by both the text
and the Markdown renderer, so the two never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

TOP_OPS = 10
CALL_NAMES = {"context_encodes": "context", "mask_calls": "masks", "context_cache_hits": "cache hit"}


def _num(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _calls(calls: dict) -> str:
    return ", ".join(f"{CALL_NAMES.get(k, k)} {v}" for k, v in sorted(calls.items())) or "-"


def latency_table(report: dict):
    rows = [[r["variant"], str(r["masks"]), _num(r["p50_ms"], ".2f"), _num(r["p90_ms"], ".2f"),
             _num(r["p99_ms"], ".2f"), _num(r["masks_per_s"], ".0f"), _num(r["per_mask_ms"], ".2f"),
             _calls(r.get("graph_calls", {})), _num(r.get("max_iou_diff_vs_fused"), ".1e")]
            for r in sorted(report["latency"], key=lambda r: (r["masks"], r["variant"]))]
    headers = ["variant", "masks", "p50 ms", "p90 ms", "p99 ms", "masks/s", "ms/mask", "graph calls / clip",
               "max |dIoU| vs fused"]
    return ("End-to-end latency per clip call (decoded media -> AuditResults; "
            f"{report['options']['repeats']} interleaved rounds)", headers, rows)


def speedup_table(report: dict):
    rows = [[s["comparison"], str(s["masks"]), _num(s["x"], ".2f") + "x"] for s in report["speedups"]]
    return "Speed-ups (ratio of p50 latencies at the same mask count)", ["comparison", "masks", "speed-up"], rows


def goals_table(report: dict):
    def verdict(met):
        return "n/a" if met is None else ("MET" if met else "NOT MET")

    rows = [[g["goal"], g["target"], _num(g["measured"], ".2f"), verdict(g["met"]), g["from"], g["note"]]
            for g in report["goals"]]
    return "Speed goals (this machine, this run)", ["goal", "target", "measured", "verdict", "from", "note"], rows


def sizes_table(report: dict):
    rows = [[s["precision"], _num(s["context_mb"], ".2f"), _num(s["masks_mb"], ".2f"),
             _num(s["text_encoder_mb"], ".2f")] for s in report["sizes"]]
    return "Model files (MB)", ["precision", "context graph", "masks graph", "text encoder"], rows


def text_table(report: dict):
    rows = [[t["file"], _num(t["cold_p50_ms"], ".2f"), _num(t["cold_p99_ms"], ".2f"), _num(t["cached_us"], ".1f")]
            for t in report["text_encoder"]]
    return ("Expression embedding (cold = a new expression: tokenize + text graph; cached = the runtime's LRU)",
            ["text graph", "cold p50 ms", "cold p99 ms", "cached us"], rows)


def accuracy_table(report: dict):
    acc = report.get("accuracy")
    if not acc:
        return None
    speed = {}
    for r in report["latency"]:
        prefix = r["variant"].rsplit(" ", 1)[0]
        if r["layout"] == "fused" and r["masks"] == max(report["options"]["masks"]):
            speed[prefix] = max(speed.get(prefix, 0.0), r["masks_per_s"])
    rows = [[name, _num(a["rmse"], ".4f"), _num(a["f2_m"], ".2f"), _num(a["f2_a"], ".2f"), str(a["masks"]),
             _num(speed.get(name), ".0f")] for name, a in acc["artifacts"].items()]
    title = (f"Accuracy on the first {acc['expressions']} expressions of {acc['split']}/{acc['mode']} "
             f"({acc['bench']}) beside speed (fused at {max(report['options']['masks'])} masks)")
    return title, ["artifact", "IoU RMSE", "F2-M", "F2-A", "masks", "masks/s"], rows


def stage_tables(report: dict):
    out = []
    for b in report["profile"]["stages"]:
        rows = [[s["stage"], _num(s["ms"], ".3f"), _num(100 * s["share"], ".1f") + "%"] for s in b["stages"]]
        out.append((f"Where the time goes: {b['variant']} @{b['masks']} masks "
                    f"(mean {b['total_ms']:.2f} ms per call over {b['calls']} calls)", ["stage", "ms", "share"], rows))
    for p in report["profile"]["ops"]:
        ops = p["ops"][:TOP_OPS]
        rest = p["ops"][TOP_OPS:]
        rows = [[o["op"], _num(o["ms"], ".3f"), _num(100 * o["share"], ".1f") + "%", str(o["nodes"])] for o in ops]
        if rest:
            rows.append([f"other ({len(rest)} op types)", _num(sum(o["ms"] for o in rest), ".3f"),
                         _num(100 * sum(o["share"] for o in rest), ".1f") + "%", str(sum(o["nodes"] for o in rest))])
        out.append((f"ONNX Runtime profile of {p['graph']} ({p['variant']} @{p['masks']} masks): kernel time "
                    f"{p['kernel_ms']:.2f} ms of {p['run_ms']:.2f} ms per run, {p['runs']} runs",
                    ["op type", "ms/run", "share of kernels", "nodes"], rows))
        rows = [[n["node"], n["op"], _num(n["ms"], ".3f"), _num(100 * n["share"], ".1f") + "%"]
                for n in p.get("heaviest_nodes", [])]
        out.append((f"Heaviest nodes of {p['graph']}", ["node", "op type", "ms/run", "share of kernels"], rows))
    return out


def cold_table(report: dict):
    rows = [[c["precision"], c.get("ort_cache", "-"), _num(c["load_ms"], ".0f"), _num(c["first_result_ms"], ".1f"),
             _num(c["second_result_ms"], ".1f")] for c in report.get("cold_start", [])]
    if not rows:
        return None
    return ("Cold start (Auditor.load: manifest, hashes, ONNX Runtime sessions optimised for this CPU; then "
            "the first and the second single-mask audit; optimised-graph cache: hit, written or off)",
            ["precision", "ort cache", "load ms", "first result ms", "second result ms"], rows)


def achieved_rates(report: dict) -> list[dict]:
    """Each profiled graph's GFLOP (MatMul, Gemm, Conv) over its mean time in the un-profiled stage
    breakdown of the same variant and mask count, against this run's GEMM peak of its arithmetic."""
    gemm = (report.get("limits") or {}).get("gemm")
    if not gemm:
        return []
    stage_ms = {(b["variant"], b["masks"], s["stage"]): s["ms"] for b in report["profile"]["stages"]
                for s in b["stages"]}
    out = []
    for p in report["profile"]["ops"]:
        variant, graph = p["variant"].split(" (")[0], p["graph"].split(".")[0]
        ms = stage_ms.get((variant, p["masks"], f"graph: {graph}"))
        if not ms or not p.get("gflop"):
            continue
        int8 = ".int8" in p["graph"]
        peak = gemm["int8_gops"] if int8 else gemm["fp32_gflops"]
        gflops = p["gflop"] / (ms / 1e3)
        out.append({"graph": p["graph"], "variant": variant, "masks": p["masks"], "gflop": p["gflop"], "ms": ms,
                    "gflops": gflops, "peak": "INT8" if int8 else "FP32", "of_peak": gflops / peak})
    return out


def limits_tables(report: dict) -> list:
    limits = report.get("limits") or {}
    out = []
    gemm = limits.get("gemm")
    if gemm:
        rows = [["FP32 MatMul", f"{gemm['size']}^3", _num(gemm["fp32_gflops"], ".1f") + " GFLOP/s"],
                ["INT8 MatMulInteger (U8 x S8)", f"{gemm['size']}^3", _num(gemm["int8_gops"], ".1f") + " GOP/s"],
                ["peak RSS of this process", "-", _num(limits.get("peak_rss_mb"), ".0f") + " MB"]]
        rows += [[f"{a['graph']} ({a['variant']}), achieved", f"{a['gflop']:.3f} GFLOP in {a['ms']:.2f} ms",
                  f"{a['gflops']:.1f} GFLOP/s = {100 * a['of_peak']:.0f}% of the {a['peak']} peak"]
                 for a in achieved_rates(report)]
        out.append((f"Machine limits in this run (ONNX Runtime, {gemm['threads']} threads, best of {gemm['repeats']})",
                    ["what", "size", "measured"], rows))
    real = limits.get("real_resolution")
    if real:
        rows = [[s["stage"], _num(s["ms"], ".2f"), _num(100 * s["share"], ".1f") + "%"] for s in real["stages"]]
        rows.append(["all but the graphs (preprocessing and glue)", _num(real["preprocess_ms"], ".2f"),
                     _num(100 * real["preprocess_share"], ".1f") + "%"])
        h, w = real["size"]
        out.append((f"A {h}p-class call ({w}x{h}, the bench clip upscaled): {real['variant']} @{real['masks']} masks "
                    f"(mean {real['total_ms']:.2f} ms over {real['calls']} calls)", ["stage", "ms", "share"], rows))
    return out


def stream_table(report: dict):
    rows = [[r["precision"], r["layout"], f"{r['jobs']} x {r['graph_threads']}",
             _num(r["masks_per_s_p50"], ".0f"), _num(r["masks_per_s_best"], ".0f"), _num(r["ms_per_clip_p50"], ".2f"),
             _num(r["x_vs_one_after_the_other"], ".2f") + "x"] for r in report.get("stream") or []]
    if not rows:
        return None
    first = report["stream"][0]
    return (f"A stream of {first['clips']} clips x {first['masks']} masks, one after the other vs several at once "
            f"(audit --bench's path; {first['rounds']} interleaved rounds)",
            ["precision", "layout", "clips at once x graph threads", "masks/s p50", "masks/s best", "ms/clip p50",
             "vs one after the other"], rows)


def all_tables(report: dict) -> list:
    tables = [goals_table(report), latency_table(report), speedup_table(report), stream_table(report),
              *limits_tables(report),
              cold_table(report),
              text_table(report), sizes_table(report), accuracy_table(report), *stage_tables(report)]
    return [t for t in tables if t is not None]


def machine_line(report: dict) -> str:
    m = report["machine"]
    return (f"{m['cpu']}, {m['usable_cores']} usable cores, {m['threads']} threads, onnxruntime "
            f"{m['onnxruntime']}, load average {m.get('load_average_1m', '-')} -> {m.get('load_average_1m_end', '-')}"
            f"; model {report['model']['name']} ({report['model']['dir']}); clip {report['clip']['source']}")


def render_text(tables, header: str = "") -> str:
    blocks = [header] if header else []
    for title, headers, rows in tables:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def render_markdown(tables, header: str = "", notes=()) -> str:
    blocks = ["# auditor-lite benchmark", header] if header else ["# auditor-lite benchmark"]
    for title, headers, rows in tables:
        lines = [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        blocks.append("\n".join(lines))
    if notes:
        blocks.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(blocks) + "\n"


def _plain(value):
    """JSON-ready values: numpy scalars to Python, paths to strings, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_outputs(report: dict, out_dir, plot: bool = True) -> list[Path]:
    """``bench.json``, ``bench.md`` and (``plot``) ``bench.png`` in ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = all_tables(report)
    json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
    json_path.write_text(json.dumps(_plain(report), indent=1) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(tables, machine_line(report), report.get("notes", ())), encoding="utf-8")
    written = [json_path, md_path]
    if plot:
        from auditor_lite.benchmark.plot import plot_report

        written.append(plot_report(report, out_dir / "bench.png"))
    return written
