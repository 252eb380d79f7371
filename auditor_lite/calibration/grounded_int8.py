"""``export int8`` for a grounded model directory: static INT8 (QDQ) context and masks graphs.

Calibration inputs are made exactly as the runtime makes them (the FP32 model directory's own
session: frames, numpy log-mel, token states; the masks graph is calibrated on the FP32 context
graph's outputs), from train-split expressions of a benchmark, never from a test split. The
quantization itself is :func:`auditor_lite.calibration.quantize.quantize_graph` (Optimum's
``ORTQuantizer`` ranges, ``quant_pre_process`` first, the output heads kept in float).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from auditor_lite.calibration.dataset import CalibrationRows
from auditor_lite.calibration.quantize import FLAVOURS, preprocess_graph, quantize_graph, write_ranges
from auditor_lite.data.media import load_audio, load_frames, load_mask
from auditor_lite.data.reader import Benchmark
from auditor_lite.manifest import update_manifest
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
                  method: str = "percentile", overwrite: bool = False, log=print) -> dict:
    """Copy ``model_dir`` to ``out`` and add INT8 context and masks graphs (the new default)."""
    model_dir, out = Path(model_dir), Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    shutil.copytree(model_dir, out)
    started = time.perf_counter()
    auditor = Auditor.load(out, precision="fp32", intra_op_threads=2)
    context_rows, masks_rows = calibration_feeds(auditor, bench, expressions)
    log(f"int8: {len(context_rows)} clips and {len(masks_rows)} masks from {bench}'s train split")
    report = {"calibration": {"clips": len(context_rows), "masks": len(masks_rows), "method": method}}
    graphs = {}
    with tempfile.TemporaryDirectory(prefix="auditor-int8-") as work:
        for graph, rows in (("context", context_rows), ("masks", masks_rows)):
            pre = preprocess_graph(out / f"{graph}.onnx", Path(work) / f"{graph}.pre.onnx")
            target = out / GRAPH_FLAVOUR_FILES[flavour].format(graph=graph)
            result = quantize_graph(pre, target, graph, FLAVOURS[flavour], _rows(graph, rows), method)
            write_ranges(result, out / "calibration")
            graphs[graph] = {f"int8-{flavour}": target.name}
            report[graph] = result.summary()
            log(f"  {graph}: {target.stat().st_size / 1e6:.2f} MB in {result.seconds:.0f} s")
    update_manifest(out, graphs=graphs, default_precision=f"int8-{flavour}", int8=report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
