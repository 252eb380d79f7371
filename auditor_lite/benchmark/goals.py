"""The fast-core speed goals (issue 13), checked against the latency rows of one interleaved run.

All five are read from the same run (the same machine minute for every variant). A goal whose
variants were not measured (no INT8 graphs, 13 masks not asked for) is reported as not evaluated
(``met: None``), never as met.
"""

from __future__ import annotations

INT8_FUSED_MASKS_PER_S = 1000.0  # INT8 fused, 13 masks per clip
SINGLE_MASK_P50_MS = 10.0        # one mask, end to end, a new clip (nothing cached but the text)
CACHED_MASK_P50_MS = 2.0         # one mask against a clip whose context is cached
FUSED_VS_NAIVE = 10.0            # per mask, 13 masks per clip (the ceiling is 13x)
INT8_VS_FP32 = 1.3               # ONNX Runtime, fused graph, 13 masks per clip

# The production path (Auditor.audit: context once, all masks in one call), best precision first.
PRODUCTION_ORDER = ("ort int8-cpu fused", "ort fp32 fused")


def _goal(goal: str, target: str, measured, met, source: str, note: str = "") -> dict:
    return {"goal": goal, "target": target, "measured": measured, "met": met, "from": source, "note": note}


def evaluate_goals(rows: list[dict], goal_masks: int = 13, stream: list[dict] | None = None) -> list[dict]:
    index = {(r["variant"], r["masks"]): r for r in rows}

    def row(variant, masks):
        return index.get((variant, masks))

    goals = []
    int8 = row("ort int8-cpu fused", goal_masks)
    goals.append(_goal(f"INT8 fused throughput at {goal_masks} masks per clip",
                       f">= {INT8_FUSED_MASKS_PER_S:g} masks/s",
                       None if int8 is None else int8["masks_per_s"],
                       None if int8 is None else int8["masks_per_s"] >= INT8_FUSED_MASKS_PER_S,
                       f"ort int8-cpu fused @{goal_masks}",
                       "" if int8 else "not measured (no int8-cpu fused graph, or masks list lacks it)"))

    at_once = next((r for r in stream or [] if r["precision"] == "int8-cpu" and r["layout"] == "clips at once"
                    and r["masks"] == goal_masks), None)
    if at_once is not None:   # the same target for a stream of clips (audit --bench's layout), reported apart
        goals.append(_goal(f"stream of clips, INT8, {goal_masks} masks each, several clips at once",
                           f">= {INT8_FUSED_MASKS_PER_S:g} masks/s", at_once["masks_per_s_p50"],
                           at_once["masks_per_s_p50"] >= INT8_FUSED_MASKS_PER_S,
                           f"stream, int8-cpu, {at_once['jobs']} clips at once x {at_once['graph_threads']} thread",
                           "p50 of the interleaved rounds"))

    single = next((row(v, 1) for v in PRODUCTION_ORDER if row(v, 1)), None)
    cached = next((row(v.replace("fused", "cached"), 1) for v in PRODUCTION_ORDER
                   if row(v.replace("fused", "cached"), 1)), None)
    note = "" if single else "not measured (1 mask not in the masks list)"
    if single:
        note = "full call: preprocessing + context + masks, a new session per call"
    goals.append(_goal("single-mask end-to-end p50, new clip", f"<= {SINGLE_MASK_P50_MS:g} ms",
                       None if single is None else single["p50_ms"],
                       None if single is None else single["p50_ms"] <= SINGLE_MASK_P50_MS,
                       "-" if single is None else f"{single['variant']} @1", note))
    goals.append(_goal("single-mask p50, clip context cached", f"<= {CACHED_MASK_P50_MS:g} ms",
                       None if cached is None else cached["p50_ms"],
                       None if cached is None else cached["p50_ms"] <= CACHED_MASK_P50_MS,
                       "-" if cached is None else f"{cached['variant']} @1",
                       "" if cached else "not measured (cached layout or 1 mask not asked for)"))

    precision = "int8-cpu" if row("ort int8-cpu fused", goal_masks) else "fp32"
    fused, naive = row(f"ort {precision} fused", goal_masks), row(f"ort {precision} naive", goal_masks)
    ratio = None if not (fused and naive) else naive["per_mask_ms"] / fused["per_mask_ms"]
    goals.append(_goal(f"fused vs naive per mask at {goal_masks} masks", f">= {FUSED_VS_NAIVE:g}x", ratio,
                       None if ratio is None else ratio >= FUSED_VS_NAIVE,
                       f"ort {precision} naive / fused @{goal_masks}",
                       "context graph per mask; the clip's numpy inputs shared" if ratio is not None
                       else "not measured"))
    alone = row(f"ort {precision} alone", goal_masks)
    ratio = None if not (fused and alone) else alone["per_mask_ms"] / fused["per_mask_ms"]
    goals.append(_goal(f"naive with the whole clip per mask (each mask alone) vs fused, {goal_masks} masks",
                       f">= {FUSED_VS_NAIVE:g}x", ratio, None if ratio is None else ratio >= FUSED_VS_NAIVE,
                       f"ort {precision} alone / fused @{goal_masks}",
                       f"log-mel, cell motion and context per mask: the ceiling is {goal_masks}x" if ratio is not None
                       else "not measured (alone layout not asked for)"))

    fp32 = row("ort fp32 fused", goal_masks)
    ratio = None if not (fp32 and int8) else fp32["p50_ms"] / int8["p50_ms"]
    goals.append(_goal(f"INT8 vs ONNX Runtime FP32 (fused, {goal_masks} masks)", f">= {INT8_VS_FP32:g}x",
                       ratio, None if ratio is None else ratio >= INT8_VS_FP32,
                       f"ort fp32 fused / ort int8-cpu fused @{goal_masks}",
                       "" if ratio is not None else "not measured (needs both precisions' fused graphs)"))
    return goals
