"""``export int8``: an FP32 model directory -> the same directory plus INT8 graphs, calibration
tables, a sensitivity report, the accuracy gate's verdict and the score calibration.

The new directory is built next to its destination (``.NAME.partial``) and renamed into place only
when every step succeeded, so a failed gate never leaves a model directory whose manifest vouches
for graphs that lost accuracy: the partial directory stays for inspection and its path is given.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from auditor_lite.calibration import dataset as ds
from auditor_lite.calibration import latency, quantize, score, sensitivity
from auditor_lite.calibration.gate import (DEFAULT_MAX_F2_DROP, DEFAULT_MAX_RMSE_INCREASE, format_gate,
                                           gate, run_auditors, write_run_predictions)
from auditor_lite.calibration.heldout import score_calibration_records
from auditor_lite.data.reader import TEST_SPLITS, Benchmark
from auditor_lite.eval.protocol import ground_truth_table
from auditor_lite.manifest import (MANIFEST_FILE, ManifestError, install_staged, load_manifest, stage_copy,
                                   update_manifest, write_manifest)
from auditor_lite.runtime.auditor import Auditor

CALIBRATION_DIR = "calibration"
SPLIT_GRAPHS = ("auditor", "context", "masks")
FLAVOUR_GRAPHS = {"cpu": SPLIT_GRAPHS, "trt": ("auditor",)}  # TensorRT: the fused graph


class Int8Error(RuntimeError):
    """The INT8 export failed; the message says where and why."""


class GateFailed(Int8Error):
    """The accuracy gate refused at least one INT8 graph: ``table`` holds the scores and deltas,
    ``hint`` what to do next; the message is both."""

    def __init__(self, table: str, hint: str):
        self.table, self.hint = table, hint
        super().__init__(f"{table}\n{hint}")


@dataclass
class Int8Options:
    method: str = "minmax"
    samples: int = ds.DEFAULT_SAMPLES
    flavours: tuple[str, ...] = ("cpu", "trt")
    keep_fp32: tuple[str, ...] = ()
    run_gate: bool = True
    gate_split: str = "test_s"
    max_expressions: int | None = None
    max_rmse_increase: float = DEFAULT_MAX_RMSE_INCREASE
    max_f2_drop: float = DEFAULT_MAX_F2_DROP
    coverage: float = score.DEFAULT_COVERAGE
    heldout: Path | None = None          # heldout_uids.txt; default: the model directory's
    calib_split: str | None = None       # fit the score calibration on half of this split instead
    keep_samples: bool = True
    latency_rounds: int = latency.DEFAULT_ROUNDS  # 0: no latency measurement
    seed: int = 0
    threads: int = 2
    progress: bool = True
    overwrite: bool = False
    echo: Callable[[str], None] | None = None  # called with each log entry as it is made


@dataclass
class Int8Result:
    out: Path
    report: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    echo: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        self.log.append(text)
        if self.echo is not None:
            self.echo(text)


def _check_source(model: Path, out: Path, overwrite: bool):
    """The verified manifest of the FP32 model directory; errors for a bad --model / --out."""
    if not (model / MANIFEST_FILE).is_file():
        raise Int8Error(f"{model}: no {MANIFEST_FILE}; pass a model directory from `auditor-lite export "
                        "onnx` (or a checkpoint, which is exported first)")
    if model.resolve() == out.resolve():
        raise Int8Error(f"--out {out} is the --model directory; write the INT8 directory elsewhere")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise Int8Error(f"{out}: exists and is not empty; pass --overwrite to replace a model directory")
        if not (out / MANIFEST_FILE).is_file():
            raise Int8Error(f"{out}: --overwrite replaces only a model directory (one with {MANIFEST_FILE})")
    manifest = load_manifest(model)  # verifies the FP32 files before anything is built on them
    missing = [g for g in SPLIT_GRAPHS if "fp32" not in manifest.graphs.get(g, {})]
    if missing:
        raise Int8Error(f"{model}: the manifest has no FP32 {', '.join(missing)} graph(s)")
    return manifest


def _stage(model: Path, out: Path, manifest) -> Path:
    """Copy the model directory into a fresh staging directory next to ``out``.

    A source that already has INT8 auditor graphs (re-quantizing an INT8 directory) loses them,
    with their manifest entries, score calibration and quantization summary: they are rebuilt here,
    never mixed with the new ones. The text encoder keeps whatever precision it was exported at.
    """
    staging = stage_copy(model, out)
    data = manifest.data
    stale = {g: [p for p in flavours if p != "fp32"] for g, flavours in data["graphs"].items()
             if g in SPLIT_GRAPHS}
    if not any(stale.values()):
        return staging
    for graph, precisions in stale.items():
        for precision in precisions:
            (staging / data["graphs"][graph][precision]).unlink(missing_ok=True)
    shutil.rmtree(staging / CALIBRATION_DIR, ignore_errors=True)
    if data.get("score_calibration"):
        (staging / data["score_calibration"]).unlink(missing_ok=True)
    rebuilt = ("format", "format_version", "name", "created", "files", "graphs", "contract",
               "default_precision", "versions", "score_calibration", "quantization")
    graphs = {g: ({"fp32": f["fp32"]} if g in SPLIT_GRAPHS else f) for g, f in data["graphs"].items()}
    write_manifest(staging, name=data["name"], graphs=graphs, contract=data["contract"],
                   default_precision="fp32", extra={k: v for k, v in data.items() if k not in rebuilt})
    return staging


def _quantize_all(staging: Path, work: Path, samples: ds.CalibrationSamples, opts: Int8Options,
                  result: Int8Result, fp32_auditor: Auditor) -> dict:
    """Every requested (graph, flavour); returns ``{graph: {precision: file}}``."""
    fp32 = _fp32_files(staging)
    pre = {g: quantize.preprocess_graph(fp32[g], work / f"{g}.pre.onnx") for g in SPLIT_GRAPHS}
    rows = {"auditor": ds.fused_rows(samples), "context": ds.context_rows(samples)}
    contexts = [fp32_auditor.run_context({k: v[None] for k, v in row.items()})[0] for row in ds.context_rows(samples)]
    rows["masks"] = ds.masks_rows(samples, contexts)
    graphs: dict[str, dict[str, str]] = {}
    summaries = []
    calibration_dir = staging / CALIBRATION_DIR
    for flavour_key in opts.flavours:
        flavour = quantize.FLAVOURS[flavour_key]
        for graph in FLAVOUR_GRAPHS[flavour_key]:
            target = staging / f"{graph}.{flavour.name}.onnx"
            done = quantize.quantize_graph(pre[graph], target, graph, flavour, rows[graph], opts.method,
                                           opts.keep_fp32)
            quantize.write_ranges(done, calibration_dir)
            if flavour_key == "trt":
                from auditor_lite.export.trt_checks import check_tensorrt_graph

                problems = check_tensorrt_graph(target)
                if problems:
                    raise Int8Error(f"{target}: not a TensorRT-ready graph: " + "; ".join(problems[:5]))
            graphs.setdefault(graph, {})[flavour.name] = target.name
            summaries.append(done.summary())
            result.say(f"quantized {graph} {flavour.name} ({opts.method}) in {done.seconds:.1f} s")
        if "auditor" in FLAVOUR_GRAPHS[flavour_key]:
            quantized = staging / graphs["auditor"][flavour.name]
            report = sensitivity.sensitivity_report(pre["auditor"], quantized, rows["auditor"],
                                                    threads=opts.threads)
            result.report.setdefault("sensitivity", {})[flavour.name] = report
            result.say(f"sensitivity, auditor {flavour.name} (worst 10 of {len(report)} nodes):\n"
                       + sensitivity.format_top(report))
    sensitivity.write_reports(result.report.get("sensitivity", {}), calibration_dir / "sensitivity.json")
    result.report["graphs"] = summaries
    return graphs


def _fp32_files(staging: Path) -> dict[str, Path]:
    # Plain JSON: load_manifest would refuse the staging directory once it holds the new INT8
    # graphs, which the manifest lists only at the end.
    graphs = json.loads((staging / MANIFEST_FILE).read_text(encoding="utf-8"))["graphs"]
    return {g: staging / graphs[g]["fp32"] for g in SPLIT_GRAPHS}


def _open_auditors(staging: Path, graphs: dict, opts: Int8Options) -> dict[str, Auditor]:
    """Every graph to gate, opened by the runtime exactly as a user's ``Auditor.load`` would (which
    also checks each against the contract: pre-processing must not bake in N): ``fp32`` and each
    INT8 precision with the fused graph, ``<precision>-split`` with the split pair."""
    auditors = {}
    layouts = [("fp32", "fp32", "fused")] + [(p, p, "fused") for p in graphs.get("auditor", {})]
    layouts += [(f"{p}-split", p, "split") for p in graphs.get("context", {})]
    for name, precision, layout in layouts:
        try:
            auditors[name] = Auditor.load(staging, precision=precision, layout=layout,
                                          intra_op_threads=opts.threads, verify=False)
        except ManifestError as exc:
            raise Int8Error(f"quantized graph breaks the {precision} contract: {exc}") from None
    return auditors


def run_int8(model, bench, out, opts: Int8Options | None = None) -> Int8Result:
    """The whole ``export int8`` (see the module docstring); raises GateFailed / Int8Error."""
    opts = opts or Int8Options()
    model, out = Path(model), Path(out)
    unknown = [f for f in opts.flavours if f not in quantize.FLAVOURS]
    if unknown or not opts.flavours:
        raise Int8Error(f"--flavour: unknown {unknown}; choose from {', '.join(quantize.FLAVOURS)}")
    if opts.method not in quantize.METHODS:
        raise Int8Error(f"--method {opts.method!r}: choose from {', '.join(quantize.METHODS)}")
    if opts.heldout is not None and opts.calib_split is not None:
        raise Int8Error("--heldout and --calib-split both choose the score calibration's data; pass one")
    started = time.perf_counter()
    manifest = _check_source(model, out, opts.overwrite)
    benchmark = Benchmark(bench)
    if opts.run_gate and (opts.gate_split, "image") not in benchmark.available():
        raise Int8Error(f"{benchmark.json_path(opts.gate_split, 'image')}: the gate split is missing; "
                        "choose another --gate-split or pass --no-gate")
    # The score calibration's data is checked first: a missing held-out file fails in a second,
    # not after the quantization.
    held = score_calibration_records(benchmark, model, opts.heldout, opts.calib_split, opts.seed)
    staging = _stage(model, out, manifest)
    try:
        result = _build(staging, benchmark, held, opts)
    except GateFailed:
        raise  # the staging directory stays for inspection (the message names it)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    install_staged(staging, out)
    result.out = out
    result.report["seconds"]["total"] = time.perf_counter() - started
    return result


def _build(staging: Path, benchmark: Benchmark, held, opts: Int8Options) -> Int8Result:
    started = time.perf_counter()
    result = Int8Result(out=staging, echo=opts.echo)
    # opened before anything is added: the runtime refuses files its manifest does not list
    fp32 = Auditor.load(staging, precision="fp32", intra_op_threads=opts.threads, verify=False)
    result.say(f"inputs through the runtime: {fp32.backend}; text: the directory's text encoder")
    samples = ds.build_samples(benchmark.root, fp32, opts.samples, "train", opts.seed, opts.progress)
    seconds = {"samples": time.perf_counter() - started}
    if opts.keep_samples:
        samples.save(staging / CALIBRATION_DIR / ds.SAMPLES_FILE)
    result.say(f"calibration samples: {len(samples)} masks of {samples.num_clips} clips, "
               f"by type {samples.type_counts()}")
    if len(samples) < opts.samples:
        result.say(f"note: the train split has only {len(samples)} key-frame candidates "
                   f"(--samples {opts.samples} asked for more)")
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="auditor-int8-") as work:
        graphs = _quantize_all(staging, Path(work), samples, opts, result, fp32)
    seconds["quantization"] = time.perf_counter() - tick
    # list the new graphs (still not the default) so that the runtime opens them as it will ship
    update_manifest(staging, graphs=graphs)
    auditors = _open_auditors(staging, graphs, opts)
    default = "int8-cpu" if "cpu" in opts.flavours else "int8-trt"
    runtime = f"{default}-split" if f"{default}-split" in auditors else default
    tick = time.perf_counter()
    test_runs = _test_and_gate(staging, benchmark, auditors, runtime, held, opts, result)
    seconds["gate"] = time.perf_counter() - tick
    tick = time.perf_counter()
    result.say(f"score calibration data: {held.description}")
    calib = _score_calibration(staging, auditors, runtime, held, test_runs, opts)
    seconds["score_calibration"] = time.perf_counter() - tick
    result.report["score_calibration"] = calib.to_json()
    result.say(score.format_calibration(calib))
    if opts.latency_rounds > 0:
        fused = {name: a for name, a in auditors.items() if not a.split}
        result.report["latency"] = latency.compare_fused(fused, samples, rounds=opts.latency_rounds)
        result.say(latency.format_latency(result.report["latency"]))
    seconds["build"] = time.perf_counter() - started
    result.report.update({"method": opts.method, "samples": len(samples), "clips": samples.num_clips,
                          "seconds": seconds, "keep_fp32": list(opts.keep_fp32)})
    (staging / CALIBRATION_DIR / "quantization.json").write_text(
        json.dumps({k: v for k, v in result.report.items() if k not in ("sensitivity", "score_calibration")},
                   indent=2) + "\n", encoding="utf-8")
    update_manifest(staging, graphs=graphs, default_precision=default,
                    score_calibration=score.SCORE_CALIBRATION_FILE,
                    quantization={"method": opts.method, "samples": len(samples),
                                  "flavours": list(opts.flavours), "keep_fp32": list(opts.keep_fp32),
                                  "gate": result.report.get("gate", {}).get("passed")})
    return result


def _labels(staging: Path) -> tuple[str, list[str], list[str]]:
    """(model name, mask types, actions) of the directory."""
    config = json.loads((staging / "config.json").read_text(encoding="utf-8"))
    name = json.loads((staging / MANIFEST_FILE).read_text(encoding="utf-8"))["name"]
    return name, config["mask_types"], config["actions"]


def _test_and_gate(staging, benchmark, auditors: dict, runtime: str, held, opts, result) -> dict:
    """Run the graphs on each test split (image mode); gate on ``opts.gate_split``.

    Every graph (FP32, each fused INT8, the split INT8 pair) runs on the gate split; the other
    splits run only the runtime's graphs, for the score calibration's coverage report. Uids the
    score calibration is fitted on are left out. Returns ``{split: GraphRun of runtime}``.
    """
    name, mask_types, actions = _labels(staging)
    predictions_dir = staging / CALIBRATION_DIR / "predictions"
    test_runs = {}
    for split in [s for s in TEST_SPLITS if (s, "image") in benchmark.available()]:
        records = [r for r in benchmark.records(split, "image") if r.uid not in held.fit_uids]
        records = records[: opts.max_expressions] if opts.max_expressions else records
        gating = opts.run_gate and split == opts.gate_split
        chosen = auditors if gating else {runtime: auditors[runtime]}
        runs = run_auditors(chosen, records, opts.progress, f"{split} image")
        test_runs[split] = runs[runtime]
        if not gating:
            continue
        for precision, run in runs.items():
            write_run_predictions(run, predictions_dir / f"{precision}.jsonl", f"{name} {precision}",
                                  split, "image", mask_types, actions)
        verdict = gate(runs, "fp32", ground_truth_table(records, split, "image"), mask_types, actions,
                       opts.max_rmse_increase, opts.max_f2_drop)
        (staging / CALIBRATION_DIR / "gate.json").write_text(json.dumps(
            {"split": split, "mode": "image", "expressions": len(records), **verdict.to_json()}, indent=2)
            + "\n", encoding="utf-8")
        result.report["gate"] = verdict.to_json()
        result.say(f"accuracy gate on {split}/image ({len(records)} expressions):\n"
                   + format_gate(verdict))
        if not verdict.passed:
            raise GateFailed(result.log[-1], f"the INT8 directory was not installed; inspect {staging} "
                             "(calibration/: predictions, gate.json, sensitivity.json) and retry with "
                             "--keep-fp32 NODE for the worst nodes, or another --method")
    return test_runs


def _score_calibration(staging, auditors: dict, runtime: str, held, test_runs,
                       opts) -> score.ScoreCalibration:
    """Fit on the held-out records, report coverage on the test runs, save; the calibrated
    predictions of the gate split are written next to the raw ones."""
    run = run_auditors({runtime: auditors[runtime]}, held.records, opts.progress,
                       "score calibration")[runtime]
    if len(set(run.uids)) < 2:
        raise Int8Error(f"score calibration: {held.description} gives {len(set(run.uids))} expression(s) "
                        "with candidates; at least 2 are needed (one per half)")
    calib = score.fit_score_calibration(run.iou, run.true_iou, run.uids, opts.coverage, opts.seed,
                                        fit_on=held.description)
    calib.extra["graph"] = " + ".join(g.path.name for g in auditors[runtime].graphs.values())
    name, mask_types, actions = _labels(staging)
    for split, test_run in test_runs.items():
        calib.extra.setdefault("test", {})[f"{split}/image"] = score.coverage_report(
            calib, test_run.iou, test_run.true_iou)
        if split == opts.gate_split:
            iou, low, high = calib.apply(test_run.iou)
            path = staging / CALIBRATION_DIR / "predictions" / f"{runtime}-calibrated.jsonl"
            write_run_predictions(test_run, path, f"{name} {runtime} calibrated", split, "image",
                                  mask_types, actions, iou=iou, low=low, high=high)
    calib.save(staging / score.SCORE_CALIBRATION_FILE)
    return calib
