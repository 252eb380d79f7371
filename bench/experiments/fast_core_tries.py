"""Per-clip speed-ups tried for the fast core that did not pay, measured side by side.

1. The cell motion's coarse level as an ONNX Runtime graph (per-displacement |dst - src|, then a
   4 x 4 AveragePool x 16 as the window sum) against numpy's ``motion._sad``.
2. The same level in numpy from per-displacement difference images (bit-identical).
3. Every level's SAD as one broadcast subtract and one leading-axes sum (bit-identical).
4. The shipped INT8 context graph cut in two at the cell motion: part A (everything that does not
   read it) could run on one core while the other computes the motion; part B after. The cut is
   found from the graph, with no re-export.

    OMP_NUM_THREADS=2 python bench/experiments/fast_core_tries.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.utils import Extractor

from auditor_lite import motion

MODEL = Path(__file__).resolve().parents[2] / "auditor_lite/assets/default_model/context.int8-cpu.onnx"
T, SIDE, WIN, RADIUS = 10, 16, 4, 3          # frames, cells per side, coarse window and radius
PAIRS, SPAN, CANDIDATES = 2 * (T - 1), WIN + 2 * RADIUS, 2 * RADIUS + 1
FIRST = 15                                   # padded row of the first cell's window at the coarse level


def median_ms(fn, n: int = 100) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def session(model, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = threads, 3
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def coarse_level(rng):
    rgb = rng.integers(0, 256, (3, T, 128, 128)).astype(np.float32)
    grey = (rgb[0] + rgb[1] + rgb[2]) / np.float32(3)        # as cell_flows makes it: not integer-valued
    level = motion._padded_level(grey, 4)
    src_t = np.r_[np.arange(T - 1), np.arange(1, T)]
    return level, src_t, np.r_[np.arange(1, T), np.arange(T - 1)]


def numpy_sad(level, src_t, dst_t):
    k = PAIRS * SIDE * SIDE
    block = np.empty((WIN, WIN, PAIRS, SIDE, SIDE), np.float32)
    motion._copy_frames(block, level, src_t, FIRST, 2, SIDE, WIN)
    region = np.empty((SPAN, SPAN, PAIRS, SIDE, SIDE), np.float32)
    motion._copy_frames(region, level, dst_t, FIRST - RADIUS, 2, SIDE, SPAN)
    tmp = np.empty((CANDIDATES, CANDIDATES, k), np.float32)
    return motion._sad(region.reshape(SPAN, SPAN, k), block.reshape(WIN, WIN, k), WIN, CANDIDATES, tmp)


def displacement_sad(level, src_t, dst_t):
    """Try 2: |dst shifted - src| once per displacement, then the windows' sums of it."""
    rows = 2 * SIDE + 2
    src = level[src_t][:, FIRST:FIRST + rows, FIRST:FIRST + rows]
    dst = level[dst_t]
    st, sy, sx = dst.strides
    shifted = np.lib.stride_tricks.as_strided(dst[:, FIRST - RADIUS:, FIRST - RADIUS:],
                                              (CANDIDATES, CANDIDATES, PAIRS, rows, rows), (sy, sx, st, sy, sx))
    diff = np.abs(shifted - src)
    cost = diff[..., 0:2 * SIDE:2, 0:2 * SIDE:2].copy()
    for i in range(WIN):
        for j in range(WIN):
            if i or j:
                cost += diff[..., i:i + 2 * SIDE:2, j:j + 2 * SIDE:2]
    return cost.reshape(CANDIDATES * CANDIDATES, -1)


def onnx_sad_graph():
    """Try 1: the same numbers' graph (Slice per displacement, Sub, Abs, AveragePool 4x4/2, x16)."""
    consts, nodes, shifted = [], [], []

    def const(name, value):
        consts.append(numpy_helper.from_array(np.asarray(value), name))
        return name
    rows = 2 * SIDE + 2
    axes = const("axes", [1, 2])
    nodes.append(helper.make_node("Slice", ["src", const("s0", [FIRST, FIRST]),
                                            const("s1", [FIRST + rows, FIRST + rows]), axes], ["S"]))
    zero = const("zero", [0])
    for cy in range(CANDIDATES):
        for cx in range(CANDIDATES):
            start = [FIRST - RADIUS + cy, FIRST - RADIUS + cx]
            nodes.append(helper.make_node("Slice", ["dst", const(f"b{cy}{cx}", start),
                                                    const(f"e{cy}{cx}", [s + rows for s in start]), axes],
                                          [f"d{cy}{cx}"]))
            nodes.append(helper.make_node("Unsqueeze", [f"d{cy}{cx}", zero], [f"u{cy}{cx}"]))
            shifted.append(f"u{cy}{cx}")
    nodes += [helper.make_node("Concat", shifted, ["R"], axis=0), helper.make_node("Sub", ["R", "S"], ["Dm"]),
              helper.make_node("Abs", ["Dm"], ["D"]),
              helper.make_node("Reshape", ["D", const("shape", [CANDIDATES ** 2 * PAIRS, 1, rows, rows])], ["D4"]),
              helper.make_node("AveragePool", ["D4"], ["A"], kernel_shape=[WIN, WIN], strides=[2, 2]),
              helper.make_node("Mul", ["A", const("area", np.float32(WIN * WIN))], ["sum"]),
              helper.make_node("Reshape", ["sum", const("out", [CANDIDATES ** 2, -1])], ["cost"])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [PAIRS, 64, 64]) for n in ("src", "dst")]
    graph = helper.make_graph(nodes, "coarse_sad", inputs,
                              [helper.make_tensor_value_info("cost", TensorProto.FLOAT, None)], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def one_shot_sad(region, block, win, side):
    """Try 3: every window pixel of every candidate in one array, then one leading-axes sum."""
    k = block.shape[-1]
    r0, r1, rk = region.strides
    view = np.lib.stride_tricks.as_strided(region, (win, win, side, side, k), (r0, r1, r0, r1, rk))
    diff = np.abs(view - block[:, :, None, None, :])
    return diff.reshape(win * win, side * side, k).sum(0)


def split_context(path: Path):
    """Try 4: part A (no path from ``cell_motion``) and part B of the context graph."""
    model = onnx.load(path)
    graph = model.graph
    const = {i.name for i in graph.initializer} | {""}
    for node in graph.node:
        if all(i in const for i in node.input):
            const.update(node.output)
    reads_motion, cut = {"cell_motion"}, []
    for node in graph.node:                   # topological order
        if any(i in reads_motion for i in node.input):
            reads_motion.update(node.output)
            cut += [i for i in node.input if i not in reads_motion and i not in const and i not in cut]
    inputs = [i.name for i in graph.input]
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    part_a = extractor.extract_model([i for i in inputs if i != "cell_motion"], cut)
    part_b = extractor.extract_model(cut + ["cell_motion"], [o.name for o in graph.output])
    return model, part_a, part_b, cut


def main() -> None:
    rng = np.random.default_rng(0)
    level, src_t, dst_t = coarse_level(rng)
    reference = numpy_sad(level, src_t, dst_t)
    feed = {"src": np.ascontiguousarray(level[src_t]), "dst": np.ascontiguousarray(level[dst_t])}
    graph = session(onnx_sad_graph(), 2)
    from_graph = graph.run(None, feed)[0]
    print(f"1. coarse SAD as an ONNX Runtime graph (2 threads): {median_ms(lambda: graph.run(None, feed)):.2f} ms "
          f"against numpy {median_ms(lambda: numpy_sad(level, src_t, dst_t)):.2f} ms; bit-identical "
          f"{np.array_equal(from_graph, reference)} (largest difference {np.abs(from_graph - reference).max():.1e})")
    print(f"2. coarse SAD from per-displacement differences: {median_ms(lambda: displacement_sad(level, src_t, dst_t)):.2f}"
          f" ms against {median_ms(lambda: numpy_sad(level, src_t, dst_t)):.2f} ms; bit-identical "
          f"{np.array_equal(displacement_sad(level, src_t, dst_t), reference)}")
    for _, win, radius in motion.LEVELS:
        side, k = 2 * radius + 1, PAIRS * SIDE * SIDE
        region = rng.standard_normal((win + 2 * radius,) * 2 + (k,)).astype(np.float32)
        block = rng.standard_normal((win, win, k)).astype(np.float32)
        tmp = np.empty((side, side, k), np.float32)
        same = np.array_equal(one_shot_sad(region, block, win, side), motion._sad(region, block, win, side, tmp))
        print(f"3. window {win}, radius {radius}: one-shot SAD {median_ms(lambda: one_shot_sad(region, block, win, side)):.2f}"
              f" ms against {median_ms(lambda: motion._sad(region, block, win, side, tmp)):.2f} ms; bit-identical {same}")
    full, part_a, part_b, cut = split_context(MODEL)
    kinds = {TensorProto.INT64: np.int64, TensorProto.BOOL: np.bool_}
    shapes = {i.name: ([d.dim_value for d in i.type.tensor_type.shape.dim], i.type.tensor_type.elem_type)
              for i in full.graph.input}
    inputs = {n: rng.random(s, np.float32).astype(kinds.get(e, np.float32)) for n, (s, e) in shapes.items()}
    inputs["key_index"] = np.array([3], np.int64)
    whole = {t: session(full, t) for t in (1, 2)}
    a_one, b_two = session(part_a, 1), session(part_b, 2)
    feed_a = {i.name: inputs[i.name] for i in part_a.graph.input}
    middle = dict(zip(cut, a_one.run(cut, feed_a)))
    feed_b = {**middle, "cell_motion": inputs["cell_motion"]}
    expected = whole[2].run(None, inputs)[0]
    difference = np.abs(b_two.run(None, feed_b)[0] - expected).max() / np.abs(expected).max()
    print(f"4. context graph cut at the cell motion ({len(part_a.graph.node)} + {len(part_b.graph.node)} nodes, "
          f"{len(cut)} tensors across): whole 2 threads {median_ms(lambda: whole[2].run(None, inputs), 40):.2f} ms, "
          f"1 thread {median_ms(lambda: whole[1].run(None, inputs), 40):.2f}; part A 1 thread "
          f"{median_ms(lambda: a_one.run(cut, feed_a), 40):.2f}, part B 2 threads "
          f"{median_ms(lambda: b_two.run(None, feed_b), 40):.2f}; cell motion "
          f"{median_ms(lambda: motion.cell_motion(inputs['frames'][0] * 255.0), 40):.2f} ms; "
          f"largest output difference {difference:.1e} of the largest output (ONNX Runtime fuses differently across the cut)")


if __name__ == "__main__":
    main()
