"""``export int8`` for a grounded model directory: static INT8 (QDQ) context and masks graphs.

Calibration inputs are made exactly as the runtime makes them (the FP32 model directory's own
session: frames, numpy log-mel, token states; the masks graph is calibrated on the FP32 context
graph's outputs), from train-split expressions of a benchmark, never from a test split. The
quantization itself is :func:`auditor_lite.calibration.quantize.quantize_graph` (Optimum's
``ORTQuantizer`` ranges, ``quant_pre_process`` first, the output heads kept in float).

The accuracy gate then audits ``gate_split`` image expressions with the FP32 and the INT8 model
directory as the runtime opens them (:func:`auditor_lite.calibration.gate.run_auditors`) and
refuses INT8 that loses more than the tolerances. The directory is built next to ``out``
(``.NAME.partial``) and renamed into place only when the gate passed; a refused one stays there for
inspection.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from auditor_lite.calibration.gate import (DEFAULT_MAX_F2_DROP, DEFAULT_MAX_RMSE_INCREASE, GateFailed,
                                           format_gate, gate, run_auditors)
from auditor_lite.calibration.quantize import (FLAVOURS, CalibrationRows, preprocess_graph, quantize_graph,
                                               write_ranges)
from auditor_lite.media import load_audio, load_frames, load_mask
from auditor_lite.data.reader import Benchmark
from auditor_lite.eval.protocol import ground_truth_table
from auditor_lite.manifest import install_staged, stage_copy, update_manifest
from auditor_lite.preprocess import prepare_masks
from auditor_lite.runtime.auditor import Auditor

GRAPH_FLAVOUR_FILES = {"cpu": "{graph}.int8-cpu.onnx", "trt": "{graph}.int8-trt.onnx"}


def calibration_feeds(auditor: Auditor, bench, expressions: int, seed: int = 0):
    """``(context_rows, masks_rows)``: lists of per-graph input dicts (batch axis removed)."""
    records = [r for r in Benchmark(bench).records("train", "train") if r.candidates]
    if not records:
        raise ValueError(f"{bench}: no train-split expressions with candidates to calibrate on")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(records), min(expressions, len(records)), replace=False)
    context_rows, masks_rows = [], []
    size = auditor.config.key_size
    for i in np.sort(picks):
        record = records[int(i)]
        audio, rate = load_audio(record.clip.audio_path)
        session = auditor.session(record.exp, load_frames(record.clip), audio, sample_rate=rate,
                                  allow_silent=True)
        frame = record.candidates[0].frame
        feed = session.context_feed(frame)
        context = auditor.run_context(feed)
        context_rows.append({k: v[0] for k, v in feed.items()})
        key = session.key_frame(frame)
        for cand in record.candidates:
            if cand.frame == frame:
                masks_rows.append({"context": context[0], "masks": prepare_masks(load_mask(cand.mask_path), size)[0],
                                   "key_frame": key[0]})
    return context_rows, masks_rows


def _rows(graph: str, rows: list[dict]) -> CalibrationRows:
    return CalibrationRows(graph, lambda i: rows[i], range(len(rows)), "train")


def int8_grounded(model_dir, bench, out, *, expressions: int = 48, flavour: str = "cpu",
                  method: str = "percentile", graphs=("context", "masks"), overwrite: bool = False,
                  run_gate: bool = True,
                  gate_split: str = "test_s", gate_expressions: int | None = 300,
                  max_rmse_increase: float = DEFAULT_MAX_RMSE_INCREASE, max_f2_drop: float = DEFAULT_MAX_F2_DROP,
                  progress: bool = False, log=print) -> dict:
    """Copy ``model_dir`` to ``out`` and add INT8 context and masks graphs (the new default), gated.

    ``graphs`` names the graphs to quantize; any other stays FP32 under the INT8 precision (the
    manifest points that precision at the FP32 file). The shipped model quantizes the context graph
    only: its masks graph in INT8 cost 1.2-1.4 F2-M points on the gate and ran no faster (0.96x,
    docs/calibration.md). A refused INT8 directory stays at ``.OUT.partial`` for inspection; any
    other failure removes it."""
    model_dir, out = Path(model_dir), Path(out)
    unknown = sorted(set(graphs) - {"context", "masks"})
    if unknown or not graphs:
        raise ValueError(f"graphs: expected 'context' and/or 'masks', got {list(graphs)}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    benchmark = Benchmark(bench)
    if run_gate and (gate_split, "image") not in benchmark.available():
        raise ValueError(f"{benchmark.json_path(gate_split, 'image')}: the gate split is missing; choose "
                         "another --gate-split or pass --no-gate")
    started = time.perf_counter()
    # The source is opened (and verified) first, so a bad --model is named as itself; its FP32
    # graphs are the staged copy's, so this auditor is also the gate's reference.
    auditor = Auditor.load(model_dir, precision="fp32", intra_op_threads=2)
    staging = stage_copy(model_dir, out)
    try:
        report = _quantize_and_gate(staging, auditor, benchmark, expressions, flavour, method, tuple(graphs),
                                    run_gate, gate_split, gate_expressions, max_rmse_increase, max_f2_drop,
                                    progress, log)
    except GateFailed:
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    install_staged(staging, out)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _quantize_and_gate(staging: Path, auditor: Auditor, benchmark: Benchmark, expressions: int, flavour: str,
                       method: str, quantized: tuple[str, ...], run_gate: bool, gate_split: str,
                       gate_expressions: int | None, max_rmse_increase: float, max_f2_drop: float,
                       progress: bool, log) -> dict:
    context_rows, masks_rows = calibration_feeds(auditor, benchmark.root, expressions)
    log(f"int8: {len(context_rows)} clips and {len(masks_rows)} masks from {benchmark.root}'s train split")
    report = {"calibration": {"clips": len(context_rows), "masks": len(masks_rows), "method": method}}
    graphs = {}
    precision = f"int8-{flavour}"
    with tempfile.TemporaryDirectory(prefix="auditor-int8-") as work:
        for graph, rows in (("context", context_rows), ("masks", masks_rows)):
            if graph not in quantized:
                graphs[graph] = {precision: f"{graph}.onnx"}
                report[graph] = {"graph": graph, "flavour": precision, "path": f"{graph}.onnx", "float": True}
                log(f"  {graph}: kept FP32 ({graph}.onnx serves {precision})")
                continue
            pre = preprocess_graph(staging / f"{graph}.onnx", Path(work) / f"{graph}.pre.onnx")
            target = staging / GRAPH_FLAVOUR_FILES[flavour].format(graph=graph)
            result = quantize_graph(pre, target, graph, FLAVOURS[flavour], _rows(graph, rows), method)
            write_ranges(result, staging / "calibration")
            graphs[graph] = {precision: target.name}
            report[graph] = result.summary()
            log(f"  {graph}: {target.stat().st_size / 1e6:.2f} MB in {result.seconds:.0f} s")
    # the CPU flavour becomes the default; a TensorRT flavour added next to it does not displace it
    keep = "int8-cpu" in auditor.manifest.precisions("masks") and flavour != "cpu"
    report_key = "int8" if flavour == "cpu" else f"int8_{flavour}"      # each flavour's own record
    update_manifest(staging, graphs=graphs, default_precision=auditor.manifest.default_precision if keep else precision,
                    **{report_key: report})
    if run_gate:
        records = [r for r in benchmark.records(gate_split, "image") if r.candidates][:gate_expressions]
        auditors = {"fp32": auditor, precision: Auditor.load(staging, precision=precision, intra_op_threads=2,
                                                             verify=False)}
        runs = run_auditors(auditors, records, progress, f"gate {gate_split} image")
        config = auditor.config
        verdict = gate(runs, "fp32", ground_truth_table(records, gate_split, "image"), config.mask_types,
                       config.actions, max_rmse_increase, max_f2_drop)
        table = format_gate(verdict)
        log(f"accuracy gate on {gate_split}/image ({len(records)} expressions):\n{table}")
        report["gate"] = {"split": gate_split, "expressions": len(records), **verdict.to_json()}
        update_manifest(staging, **{report_key: report})
        if not verdict.passed:
            raise GateFailed(table, f"the INT8 directory was not installed; inspect {staging}")
    return report
