"""Which INT8 layout pays on this CPU? Quantize the shipped FP32 graphs several ways and time every
variant against FP32, interleaved, with the same session options and threads.

    python bench/int8_variants.py --bench runs/bench18k [--model DIR] [--threads 2] [--repeats 40]
                                  [--masks 13] [--json FILE]

Needs the ``train`` extra (Optimum's calibration) and a benchmark with a train split to calibrate
on (48 expressions, as ``export int8``). Variants (every one U8 activations / S8 per-channel
weights, the heads' last layers float, as the shipped ``int8-cpu``):

* ``shipped``: Conv, MatMul and Gemm in QDQ with quantized outputs (what ``export int8`` makes);
  ONNX Runtime then fuses DQ -> Softmax -> Q into QLinearSoftmax and similar;
* ``float-outputs``: the same ops, their outputs left float (``OpTypesToExcludeOutputQuantization``),
  so softmax, GELU, LayerNorm and the elementwise ops run in float and keep their fusions;
* ``conv-only`` / ``matmul-only``: one family quantized, outputs float.

Prints per graph the p50 of each variant (and its ratio to FP32), the load average, the thread
count, and each variant's output error against FP32 on the timed feed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

VARIANTS = {
    "shipped": (("Conv", "MatMul", "Gemm"), False),
    "float-outputs": (("Conv", "MatMul", "Gemm"), True),
    "conv-only": (("Conv",), True),
    "matmul-only": (("MatMul", "Gemm"), True),
}


def quantize(pre: Path, target: Path, ranges, ops, float_outputs: bool) -> None:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    from auditor_lite.calibration.quantize import PER_CHANNEL_AXIS, head_nodes

    model = onnx.load(str(pre))
    extra = {"WeightSymmetric": True, "ActivationSymmetric": False,
             "QDQOpTypePerChannelSupportToAxis": dict(PER_CHANNEL_AXIS)}
    if float_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = list(ops)
    quantizer = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QUInt8, ranges, [],
                             head_nodes(model, ops), list(ops), extra_options=extra)
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(target))


def session(path: Path, threads: int):
    """The runtime's own session (same options: spinning off, ALL-level optimisation; no cache)."""
    from auditor_lite.runtime.backends import OrtGraph

    return OrtGraph(path, ["CPUExecutionProvider"], intra_op_threads=threads).session


def node_counts(path: Path, threads: int) -> dict[str, int]:
    """Op types of the graph as ONNX Runtime optimises it (what actually runs)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as work:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(work) / "opt.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts: dict[str, int] = {}
        for node in onnx.load(options.optimized_model_filepath).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, type=Path)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--masks", type=int, default=13)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from auditor_lite.calibration.grounded_int8 import _rows, calibration_feeds
    from auditor_lite.calibration.quantize import calibrate, preprocess_graph
    from auditor_lite.runtime.auditor import Auditor

    auditor = Auditor.load(args.model, precision="fp32", intra_op_threads=args.threads)
    model_dir = auditor.model.path if hasattr(auditor.model, "path") else Path(args.model)
    context_rows, masks_rows = calibration_feeds(auditor, args.bench, 48)
    # the timed feeds: the first calibration clip, and args.masks of its masks in one call
    feeds = {"context": {k: v[None] for k, v in context_rows[0].items()}}
    take = [masks_rows[i % len(masks_rows)] for i in range(args.masks)]
    feeds["masks"] = {"context": take[0]["context"][None], "key_frame": take[0]["key_frame"][None],
                      "masks": np.stack([t["masks"] for t in take])}
    report = {"threads": args.threads, "load_average_start": os.getloadavg(), "graphs": {}}
    with tempfile.TemporaryDirectory(prefix="int8-variants-") as work:
        work = Path(work)
        for graph, rows in (("context", context_rows), ("masks", masks_rows)):
            pre = preprocess_graph(Path(model_dir) / f"{graph}.onnx", work / f"{graph}.pre.onnx")
            _, ranges = calibrate(pre, _rows(graph, rows), "percentile", False, work)
            paths = {"fp32": Path(model_dir) / f"{graph}.onnx"}
            for name, (ops, float_outputs) in VARIANTS.items():
                paths[name] = work / f"{graph}.{name}.onnx"
                quantize(pre, paths[name], ranges, ops, float_outputs)
            sessions = {name: session(p, args.threads) for name, p in paths.items()}
            names = {i.name for i in sessions["fp32"].get_inputs()}
            feed = {k: v for k, v in feeds[graph].items() if k in names}
            reference = sessions["fp32"].run(None, feed)
            times = {name: [] for name in sessions}
            for _ in range(5):
                for s in sessions.values():
                    s.run(None, feed)
            for _ in range(args.repeats):
                for name, s in sessions.items():
                    t0 = time.perf_counter()
                    s.run(None, feed)
                    times[name].append((time.perf_counter() - t0) * 1e3)
            rows_out = {}
            for name, s in sessions.items():
                outs = s.run(None, feed)
                err = max(float(np.max(np.abs(a - b))) for a, b in zip(outs, reference))
                p50 = statistics.median(times[name])
                rows_out[name] = {"p50_ms": p50, "best_ms": min(times[name]),
                                  "speedup_vs_fp32": statistics.median(times["fp32"]) / p50,
                                  "max_abs_diff_vs_fp32": err,
                                  "ops": {k: v for k, v in sorted(node_counts(paths[name], args.threads).items())
                                          if k.startswith(("Q", "Dequant", "MatMulInteger", "ConvInteger",
                                                           "DynamicQuant", "MatMulIntegerToFloat"))}}
            report["graphs"][graph] = rows_out
            print(f"\n{graph} graph ({'1 clip' if graph == 'context' else f'{args.masks} masks'}), "
                  f"{args.threads} threads, {args.repeats} interleaved rounds")
            print(f"{'variant':15s} {'p50 ms':>8s} {'best ms':>8s} {'vs fp32':>8s} {'max |d|':>9s}  quantized ops as run")
            for name, r in rows_out.items():
                ops = ", ".join(f"{k} {v}" for k, v in r["ops"].items())
                print(f"{name:15s} {r['p50_ms']:8.2f} {r['best_ms']:8.2f} {r['speedup_vs_fp32']:7.2f}x "
                      f"{r['max_abs_diff_vs_fp32']:9.4f}  {ops}")
    report["load_average_end"] = os.getloadavg()
    print(f"\nload average {report['load_average_start'][0]:.2f} -> {report['load_average_end'][0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
