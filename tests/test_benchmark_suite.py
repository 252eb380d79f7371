"""``auditor-lite bench`` on the tiny model directory: variants, counts, reports. No timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from auditor_lite.benchmark.profile import aggregate_ops, instrumented, stage_breakdown
from auditor_lite.benchmark.timing import LatencyStats, percentile, time_interleaved

torch = pytest.importorskip("torch")

from runtime_helpers import copy_artifact  # noqa: E402

BENCH = Path(__file__).resolve().parent / "fixtures" / "upstream_small"


# ----------------------------------------------------------------------------- timing
def test_percentile_by_hand():
    values = [40, 15, 50, 35, 20]  # sorted: 15 20 35 40 50 at positions 0..4
    assert percentile(values, 50) == 35                       # position 2
    assert percentile(values, 90) == pytest.approx(46.0)      # position 3.6: 40 + 0.6 * 10
    assert percentile(values, 99) == pytest.approx(49.6)      # position 3.96: 40 + 0.96 * 10
    assert percentile(values, 0) == 15 and percentile(values, 100) == 50
    assert percentile(range(1, 11), 90) == pytest.approx(9.1)  # position 8.1 of 1..10
    assert percentile([7.0], 99) == 7.0
    for q in (50, 90, 99):  # numpy's default method is the same definition
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile(values, 101)


def test_latency_stats_by_hand():
    stats = LatencyStats.from_seconds("v", 4, [0.040, 0.010, 0.030, 0.020])
    assert stats.p50_ms == pytest.approx(25.0)   # between 20 and 30 ms
    assert stats.per_mask_ms == pytest.approx(6.25)
    assert stats.masks_per_s == pytest.approx(160.0)  # 4 masks / 25 ms
    assert stats.mean_ms == pytest.approx(25.0) and stats.min_ms == pytest.approx(10.0)
    assert stats.to_dict()["masks_per_s"] == pytest.approx(160.0)
    with pytest.raises(ValueError, match="no timed calls"):
        LatencyStats.from_seconds("v", 1, [])


def test_time_interleaved_round_robin_and_rotation():
    now, order = [0.0], []

    def case(name, seconds):
        def run():
            order.append(name)
            now[0] += seconds
        return run

    cases = {"a": case("a", 1.0), "b": case("b", 2.0), "c": case("c", 3.0)}
    timed = time_interleaved(cases, repeats=2, warmup=1, clock=lambda: now[0])
    assert order == list("abc" "bca" "cab")  # every round has every case; each starts one later
    assert timed == {"a": [1.0, 1.0], "b": [2.0, 2.0], "c": [3.0, 3.0]}  # warm-up round dropped
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved(cases, repeats=0)


def test_aggregate_ops_skips_warmup_by_hand():
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 900},      # warm-up run
        {"cat": "Node", "name": "conv_kernel_time", "ts": 10, "dur": 800, "args": {"op_name": "Conv"}},
        {"cat": "Session", "name": "model_run", "ts": 1000, "dur": 500},
        {"cat": "Node", "name": "conv_kernel_time", "ts": 1010, "dur": 300, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "conv_fence_before", "ts": 1009, "dur": 50, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "mm_kernel_time", "ts": 1310, "dur": 100, "args": {"op_name": "MatMul"}},
        {"cat": "Session", "name": "model_run", "ts": 2000, "dur": 700},
        {"cat": "Node", "name": "conv_kernel_time", "ts": 2010, "dur": 500, "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "mm_kernel_time", "ts": 2510, "dur": 100, "args": {"op_name": "MatMul"}},
    ]
    report = aggregate_ops(events, skip_runs=1)
    assert report["runs"] == 2 and report["run_ms"] == pytest.approx(0.6)   # median of 500, 700 us
    assert report["kernel_ms"] == pytest.approx(0.5)                        # (800 + 200) us / 2 runs
    conv, matmul = report["ops"]
    assert (conv["op"], conv["ms"], conv["share"], conv["nodes"]) == ("Conv", pytest.approx(0.4), pytest.approx(0.8), 1)
    assert (matmul["op"], matmul["share"]) == ("MatMul", pytest.approx(0.2))
    assert report["heaviest_nodes"][0] == {"node": "conv", "op": "Conv", "ms": pytest.approx(0.4),
                                           "share": pytest.approx(0.8)}
    with pytest.raises(ValueError, match="cannot skip"):
        aggregate_ops(events, skip_runs=3)


# ----------------------------------------------------------------------------- the tiny model
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny FP32 directory plus dynamically quantized INT8 graphs, so every variant exists."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from auditor_lite.manifest import update_manifest

    directory = copy_artifact(tmp_path_factory.mktemp("bench") / "model")
    for graph in ("context", "masks"):
        quantize_dynamic(directory / f"{graph}.onnx", directory / f"{graph}.int8-cpu.onnx",
                         weight_type=QuantType.QInt8)
    update_manifest(directory, graphs={g: {"int8-cpu": f"{g}.int8-cpu.onnx"} for g in ("context", "masks")})
    return directory


@pytest.fixture(scope="module")
def clip():
    from auditor_lite.benchmark.variants import load_clip

    return load_clip()


@pytest.fixture(scope="module")
def variants(model_dir):
    from auditor_lite.benchmark.variants import build_variants

    built, notes = build_variants(model_dir, 1, gpu=False)
    return {v.name: v for v in built}, notes


def _count_graph_calls(variant, clip, masks):
    """Results of one call and how often each graph runner of the auditor ran."""
    auditor, counts = variant.auditor, {"context": 0, "masks": 0}

    def counting(method, key):
        original = getattr(auditor, method)

        def run(*args):
            counts[key] += 1
            return original(*args)
        return run

    runners = {"run_context": "context", "run_masks": "masks"}
    for method, key in runners.items():
        setattr(auditor, method, counting(method, key))
    try:
        results, _ = variant.call(clip, masks)
    finally:
        for method in runners:
            vars(auditor).pop(method, None)
    return results, counts


def test_variants_and_what_each_runs(variants, clip):
    by_name, notes = variants
    assert set(by_name) == {f"ort {p} {layout}" for p in ("fp32", "int8-cpu")
                            for layout in ("fused", "naive", "alone", "cached")}
    assert any("--no-gpu" in n for n in notes)
    masks = clip.masks_for(5)
    calls = {}
    for name in ("ort fp32 fused", "ort fp32 naive", "ort fp32 alone", "ort int8-cpu cached"):
        by_name[name].prepare(clip)  # the cached layout encodes its context here, once
        results, calls[name] = _count_graph_calls(by_name[name], clip, masks)
        assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert calls["ort fp32 naive"] == {"context": 5, "masks": 5}   # one context per mask
    assert calls["ort fp32 alone"] == {"context": 5, "masks": 5}   # ... and one whole session per mask
    assert calls["ort fp32 fused"] == {"context": 1, "masks": 1}
    assert calls["ort int8-cpu cached"] == {"context": 0, "masks": 1}
    assert clip.masks_for(15)[13] is clip.masks[0]  # the sample clip's 13 masks, cycled


def test_stage_breakdown_restores_the_runtime(variants, clip):
    from auditor_lite.runtime import session as session_module

    fused = variants[0]["ort fp32 fused"]
    before = session_module.prepare_frames, session_module.cell_motion
    breakdown = stage_breakdown(fused, clip, clip.masks_for(3), repeats=2)
    assert (session_module.prepare_frames, session_module.cell_motion) == before
    assert "run_context" not in vars(fused.auditor) and "run_masks" not in vars(fused.auditor)
    stages = {s["stage"]: s for s in breakdown["stages"]}
    assert {"graph: context", "graph: masks", "prepare frames", "prepare masks", "log-mel", "cell motion",
            "input checks", "build results"} <= set(stages)
    assert sum(s["share"] for s in breakdown["stages"]) == pytest.approx(1.0, abs=1e-6)
    assert breakdown["feeds"]["graph: masks"][1].shape[0] == 3      # (context, masks, key_frame)
    own = object()
    vars(fused.auditor)["run_masks"] = own       # an attribute the caller set stays as it was
    try:
        with instrumented(fused.auditor):
            assert vars(fused.auditor)["run_masks"] is not own
        assert vars(fused.auditor)["run_masks"] is own
    finally:
        vars(fused.auditor).pop("run_masks")


def test_suite_report_and_outputs(model_dir, tmp_path):
    from auditor_lite.benchmark.report import write_outputs
    from auditor_lite.benchmark.suite import BenchOptions, run_suite

    options = BenchOptions(model_dir=model_dir, mask_counts=(1, 13), repeats=2, warmup=1, threads=1, bench=BENCH,
                           accuracy_expressions=2, profile_repeats=2, text_repeats=2, gpu=False, stream_clips=3)
    report = run_suite(options)
    rows = {(r["variant"], r["masks"]): r for r in report["latency"]}
    assert ("ort fp32 naive", 1) not in rows and ("ort fp32 naive", 13) in rows
    assert ("ort fp32 alone", 1) not in rows and ("ort fp32 alone", 13) in rows
    assert len(rows) == 8 * 2 - 4 and all(r["calls"] == 2 for r in rows.values())
    assert rows[("ort int8-cpu naive", 13)]["graph_calls"] == {"context_encodes": 13, "mask_calls": 13}
    assert rows[("ort int8-cpu alone", 13)]["graph_calls"] == {"context_encodes": 13, "mask_calls": 13}
    assert rows[("ort fp32 alone", 13)]["max_iou_diff_vs_fused"] < 1e-5   # one function, a session per mask
    assert rows[("ort fp32 fused", 13)]["graph_calls"] == {"context_encodes": 1, "mask_calls": 1}
    assert rows[("ort fp32 cached", 1)]["graph_calls"] == {"context_cache_hits": 1, "mask_calls": 1}
    assert rows[("ort fp32 naive", 13)]["max_iou_diff_vs_fused"] < 1e-5  # the layouts compute one function
    assert rows[("ort fp32 cached", 13)]["max_iou_diff_vs_fused"] < 1e-5
    fused, naive = rows[("ort int8-cpu fused", 13)], rows[("ort int8-cpu naive", 13)]
    goals = {g["goal"].split(" ")[0] + g["target"]: g for g in report["goals"]}
    assert len(report["goals"]) == 7 and all(isinstance(g["met"], bool) for g in report["goals"])
    alone = rows[("ort int8-cpu alone", 13)]
    assert goals["naive>= 10x"]["measured"] == pytest.approx(alone["p50_ms"] / fused["p50_ms"])
    stream = {(r["precision"], r["layout"]): r for r in report["stream"]}
    assert set(stream) == {(p, layout) for p in ("fp32", "int8-cpu") for layout in ("one after the other", "clips at once")}
    assert all(r["clips"] == 3 and r["masks"] == 13 and r["masks_per_s_p50"] > 0 for r in stream.values())
    at_once = stream[("int8-cpu", "clips at once")]
    assert (at_once["jobs"], at_once["graph_threads"]) == (1, 1)              # threads=1: one clip, one thread
    assert goals["stream>= 1000 masks/s"]["measured"] == at_once["masks_per_s_p50"]
    assert goals["fused>= 10x"]["measured"] == pytest.approx(naive["p50_ms"] / fused["p50_ms"])
    assert goals["INT8>= 1000 masks/s"]["measured"] == pytest.approx(13e3 / fused["p50_ms"])
    assert goals["single-mask<= 2 ms"]["measured"] == rows[("ort int8-cpu cached", 1)]["p50_ms"]
    speedup = next(s for s in report["speedups"]
                   if s["comparison"] == "ort fp32: fused vs naive" and s["masks"] == 13)
    fp32_ratio = rows[("ort fp32 naive", 13)]["p50_ms"] / rows[("ort fp32 fused", 13)]["p50_ms"]
    assert speedup["x"] == pytest.approx(fp32_ratio)
    assert {s["precision"] for s in report["sizes"]} == {"fp32", "int8-cpu", "tokenizer.json"}
    assert report["text_encoder"][0]["file"] == "text_encoder.onnx"
    assert set(report["accuracy"]["artifacts"]) == {"ort fp32", "ort int8-cpu"}
    assert {p["graph"] for p in report["profile"]["ops"]} == {"context.onnx", "masks.onnx", "context.int8-cpu.onnx",
                                                             "masks.int8-cpu.onnx"}
    assert report["machine"]["threads"] == 1 and report["options"]["interleaved"]
    assert [c["precision"] for c in report["cold_start"]] == ["fp32", "int8-cpu"]
    assert all(c["load_ms"] > 0 and c["first_result_ms"] > 0 for c in report["cold_start"])
    limits = report["limits"]
    assert limits["gemm"]["fp32_gflops"] > 0 and limits["gemm"]["int8_gops"] > 0 and limits["peak_rss_mb"] > 10
    real = limits["real_resolution"]
    assert real["size"] == [720, 1280] and real["masks"] == 13 and real["variant"] == "ort int8-cpu fused"
    stages = {s["stage"]: s["ms"] for s in real["stages"]}
    assert real["preprocess_ms"] == pytest.approx(real["total_ms"] - stages["graph: context"] - stages["graph: masks"])
    assert 0 < real["preprocess_share"] < 1
    from auditor_lite.benchmark.report import achieved_rates

    rates = achieved_rates(report)
    assert {r["graph"] for r in rates} == {"context.onnx", "masks.onnx", "context.int8-cpu.onnx", "masks.int8-cpu.onnx"}
    assert all(r["gflop"] > 0 and r["gflops"] > 0 and 0 < r["of_peak"] for r in rates)
    assert {r["peak"] for r in rates if ".int8" in r["graph"]} == {"INT8"}

    paths = write_outputs(report, tmp_path / "out")
    assert [p.name for p in paths] == ["bench.json", "bench.md", "bench.png"]
    saved = json.loads(paths[0].read_text())
    assert saved["latency"][0]["p50_ms"] == report["latency"][0]["p50_ms"]
    markdown = paths[1].read_text()
    assert "| ort int8-cpu naive | 13 |" in markdown and "Where the time goes" in markdown and "Cold start" in markdown
    assert "Machine limits in this run" in markdown and "A 720p-class call" in markdown
    assert "A stream of 3 clips x 13 masks" in markdown
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_goals_not_measured_are_not_met(model_dir, tmp_path):
    from auditor_lite.benchmark.suite import BenchOptions, run_suite

    report = run_suite(BenchOptions(model_dir=model_dir, mask_counts=(2,), repeats=1, warmup=0, threads=1,
                                    profile_repeats=1, text_repeats=1, gpu=False, layouts=("fused",)))
    assert [g["met"] for g in report["goals"]] == [None, None, None, None, None, None]
    assert report["accuracy"] is None and any("--bench" in n for n in report["notes"])


def test_cli(model_dir, tmp_path):
    from auditor_lite.benchmark.cli import bench

    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(bench, ["--model", str(model_dir), "--mask-counts", "1,2", "--repeats", "1", "--warmup", "0",
                                   "--threads", "1", "--layouts", "fused,naive", "--profile-repeats", "1",
                                   "--no-gpu", "--no-plot", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "End-to-end latency" in result.output and "ort int8-cpu naive" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md"]
    bad = runner.invoke(bench, ["--model", str(model_dir), "--mask-counts", "1,0"])
    assert bad.exit_code == 2 and "positive integers" in bad.output
    bad = runner.invoke(bench, ["--model", str(model_dir), "--layouts", "fused,split"])
    assert bad.exit_code == 2 and "fused, naive, alone, cached" in bad.output
    missing = runner.invoke(bench, ["--model", str(tmp_path / "nowhere"), "--no-plot"])
    assert missing.exit_code == 1 and "nowhere" in missing.output and "Traceback" not in missing.output
    no_clip = runner.invoke(bench, ["--model", str(model_dir), "--clip", str(tmp_path), "--no-plot"])
    assert no_clip.exit_code == 1 and "truth.json" in no_clip.output


def test_upscaled_clip_keeps_the_content(clip):
    from auditor_lite.benchmark.limits import upscaled

    big = upscaled(clip, 720, 1280)
    assert big.frames.shape[1:3] == (720, 1280) and big.masks[0].shape == (720, 1280)
    assert big.frames.dtype == np.uint8 and big.masks[0].dtype == bool
    h, w = clip.frames.shape[1:3]
    # nearest neighbour: output pixel (y, x) is input pixel (y * h // 720, x * w // 1280)
    for y, x in ((0, 0), (719, 1279), (360, 17), (5, 640)):
        assert big.frames[3, y, x].tolist() == clip.frames[3, y * h // 720, x * w // 1280].tolist()
        assert big.masks[0][y, x] == clip.masks[0][y * h // 720, x * w // 1280]
    # and the area resize back to the clip's size gives the clip's own masks
    from auditor_lite.preprocess import prepare_masks
    assert np.array_equal(prepare_masks(big.masks, h)[:, 0] > 0.5, np.stack(clip.masks))


def test_multiply_adds_by_hand():
    from auditor_lite.benchmark.profile import _macs

    assert _macs("MatMul", [[2, 10, 256, 32], [2, 10, 32, 256]], [2, 10, 256, 256]) == 2 * 10 * 256 * 256 * 32
    assert _macs("Gemm", [[24, 384], [96]], [24, 96]) == 24 * 96 * 384                  # B prepacked: not listed
    assert _macs("Conv", [[1, 8, 128, 128], [24, 8, 3, 3], [24]], [1, 24, 64, 64]) == 24 * 64 * 64 * 8 * 9
    assert _macs("Conv", [[1, 8, 128, 128]], [1, 24, 64, 64]) == 0                     # no weights: unknown
    assert _macs("Relu", [[4, 4]], [4, 4]) == 0


GPU_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_bench.sh"


@pytest.mark.skipif(__import__("shutil").which("nvidia-smi") is not None,
                    reason="a GPU machine: the script would build its environment and benchmark for minutes")
def test_gpu_bench_script_skips_cleanly_without_a_gpu(tmp_path):
    import os
    import subprocess

    venv = tmp_path / "venv"
    env = {**os.environ, "AUDITOR_GPU_VENV": str(venv)}
    done = subprocess.run(["bash", str(GPU_SCRIPT), str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skipped: no NVIDIA GPU") and not venv.exists()
    assert not (tmp_path / "out").exists()
    assert subprocess.run(["bash", "-n", str(GPU_SCRIPT)]).returncode == 0
