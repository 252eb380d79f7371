"""``auditor-lite calibrate``: refit a model directory's score calibration on a labelled benchmark.

The conformal interval's guarantee ("the true IoU lies in [low, high] with probability >= 90 %")
holds on the distribution it was calibrated on. A shipped model was calibrated on held-out clips of
its own training data; users with their own footage recalibrate on a labelled benchmark of it (any
MQ-RAVSBench-layout split with candidate masks and their ``iou_to_gt``), in the edge install: the
audits run through the public runtime (``ClipSession.raw_outputs``, what ``Auditor.audit`` formats),
and the fit is numpy only (:mod:`auditor_lite.calibration.score`).

The new directory is the old one with a new ``score_calibration.json`` (Mondrian: one interval
width per predicted mask type with enough samples) and a re-hashed manifest; it is built as
``.OUT.partial`` and renamed into place at the end, so a failure leaves ``OUT`` untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from auditor_lite.calibration import score
from auditor_lite.calibration.gate import run_auditors
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import DataError
from auditor_lite.manifest import MANIFEST_FILE, install_staged, stage_copy, update_manifest
from auditor_lite.runtime.auditor import Auditor
from auditor_lite.runtime.model_dir import resolve_model_dir
from auditor_lite.runtime.results import softmax

MIN_EXPRESSIONS = 4     # two per half, at the very least


def recalibrate(model_dir, bench, out, *, split: str = "test_s", mode: str = "image",
                coverage: float = score.DEFAULT_COVERAGE, max_expressions: int | None = None,
                precision: str = "auto", threads: int = 2, seed: int = 0, overwrite: bool = False,
                progress: bool = False) -> dict:
    """Fit on ``split``/``mode`` of ``bench`` (uid halves: isotonic map, conformal widths) and write
    ``out``. Returns the summary: n, q, per-type q, the data described, the precision audited."""
    model_dir, out = resolve_model_dir(model_dir), Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
        if not (out / MANIFEST_FILE).is_file():
            raise FileExistsError(f"{out}: --overwrite replaces only a model directory (one with {MANIFEST_FILE})")
    if out.resolve() == model_dir.resolve():
        raise ValueError(f"--out {out} is the --model directory; write the recalibrated one elsewhere")
    benchmark = Benchmark(bench)     # the benchmark first: a bad one is refused before the model loads
    if (split, mode) not in benchmark.available():
        found = ", ".join(f"{s}/{m}" for s, m in benchmark.available()) or "none"
        raise DataError(benchmark.root, f"no {split}/{mode} expressions to calibrate on (found: {found})")
    records = [r for r in benchmark.records(split, mode) if any(c.frame == r.kfid for c in r.candidates)]
    records = records[:max_expressions] if max_expressions else records
    if len({r.uid for r in records}) < MIN_EXPRESSIONS:
        raise DataError(benchmark.json_path(split, mode), f"{len(records)} expression(s) with key-frame "
                        f"candidates; the calibration needs at least {MIN_EXPRESSIONS} (two per half)")
    auditor = Auditor.load(model_dir, precision=precision, intra_op_threads=threads)
    run = run_auditors({"model": auditor}, records, progress, f"calibrate {split}/{mode}")["model"]
    raw = np.clip(run.iou, 0.0, 1.0)
    types = [auditor.config.mask_types[int(k)] for k in softmax(run.type_logits).argmax(1)]
    described = f"{benchmark.root.name} {split}/{mode}" + (f" (first {len(records)})" if max_expressions else "")
    calib = score.fit_score_calibration(raw, run.true_iou, run.uids, coverage, seed, fit_on=described,
                                        predicted_types=types)
    calib.extra["graph"] = " + ".join(g.path.name for g in auditor.graphs.values())
    calib.extra["precision"] = auditor.precision
    staging = stage_copy(model_dir, out)
    try:
        calib.save(staging / score.SCORE_CALIBRATION_FILE)
        update_manifest(staging, score_calibration=score.SCORE_CALIBRATION_FILE)
        Auditor.load(staging, precision=precision, intra_op_threads=1)    # it must load as it will ship
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    install_staged(staging, out)
    return {"out": str(out), "masks": int(raw.size), "expressions": len(records), "q": calib.q,
            "q_by_type": dict(calib.q_by_group), "coverage": coverage, "fit_on": calib.fit_on,
            "precision": auditor.precision, "summary": score.format_calibration(calib)}


# ----------------------------------------------------------------------------------- command
def _command():
    import click

    @click.command("calibrate")
    @click.option("--model", "model_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                  help="Model directory to recalibrate [default: the packaged model].")
    @click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="Labelled benchmark (MQ-RAVSBench layout) from the distribution you will audit.")
    @click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="New model directory: MODEL with the refitted score_calibration.json.")
    @click.option("--split", default="test_s", show_default=True,
                  type=click.Choice(["train", "test_s", "test_u"]),
                  help="Split to fit on (do not evaluate on it afterwards).")
    @click.option("--coverage", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                  default=score.DEFAULT_COVERAGE, show_default=True, help="Target coverage of the interval.")
    @click.option("--max-expressions", type=click.IntRange(MIN_EXPRESSIONS), default=None,
                  help="Use only the first N expressions (speed).")
    @click.option("--precision", type=click.Choice(["auto", "fp32", "int8-cpu", "int8-trt"]), default="auto",
                  show_default=True, help="The graphs to calibrate (those you will run).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Split of the uids into halves.")
    @click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
    @click.option("--overwrite", is_flag=True, help="Replace an existing model directory at --out.")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    def calibrate(model_dir, bench, out, split, coverage, max_expressions, precision, seed, threads,
                  overwrite, quiet):
        """Refit the IoU recalibration and conformal intervals on your own labelled benchmark."""
        from auditor_lite.manifest import ManifestError
        from auditor_lite.runtime.model_dir import ModelNotFoundError

        try:
            summary = recalibrate(model_dir, bench, out, split=split, mode="train" if split == "train" else "image",
                                  coverage=coverage, max_expressions=max_expressions, precision=precision,
                                  threads=threads, seed=seed, overwrite=overwrite, progress=not quiet)
        except (DataError, ManifestError, ModelNotFoundError, FileExistsError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(summary["summary"])
        click.echo(f"wrote {summary['out']} ({summary['masks']} masks of {summary['expressions']} expressions, "
                   f"{summary['precision']})")

    return calibrate


calibrate = _command()
