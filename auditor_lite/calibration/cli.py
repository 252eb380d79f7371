"""``auditor-lite export int8``: static INT8 graphs, accuracy gate and score calibration.

The export engineer's ``export`` group attaches :data:`int8` (``auditor_lite.calibration.cli:int8``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from auditor_lite.calibration.dataset import DEFAULT_SAMPLES
from auditor_lite.calibration.gate import DEFAULT_MAX_F2_DROP, DEFAULT_MAX_RMSE_INCREASE
from auditor_lite.calibration.quantize import METHODS, QuantizationError
from auditor_lite.calibration.score import DEFAULT_COVERAGE
from auditor_lite.data.schema import DataError

FLAVOUR_CHOICES = {"cpu": ("cpu",), "trt": ("trt",), "both": ("cpu", "trt")}


def _echo(text: str) -> None:
    click.echo(text, err=True)


def _is_grounded(model: Path) -> bool:
    """A grounded model directory (stage A + B graphs) takes its own, simpler INT8 path."""
    import json

    try:
        return json.loads((model / "config.json").read_text()).get("architecture") == "grounded"
    except (OSError, ValueError):
        return False


@click.command("int8")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Model directory from `export onnx` (or a training checkpoint, exported first).")
@click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Benchmark root (MQ-RAVSBench layout): calibration samples, gate and score calibration.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New model directory: the FP32 files plus INT8 graphs and calibration.")
@click.option("--method", type=click.Choice(METHODS), default="minmax", show_default=True,
              help="Activation range calibration (Optimum AutoCalibrationConfig).")
@click.option("--samples", type=click.IntRange(1), default=DEFAULT_SAMPLES, show_default=True,
              help="Calibration masks drawn from the train split, stratified by mask type.")
@click.option("--flavour", type=click.Choice(sorted(FLAVOUR_CHOICES)), default="both", show_default=True,
              help="cpu: U8/S8 per-channel; trt: symmetric S8/S8, float bias (fused graph only).")
@click.option("--keep-fp32", "keep_fp32", multiple=True, metavar="NODE",
              help="Leave this node (exact name, or a name prefix such as /model/iou_head/) in FP32; "
                   "repeatable. Names: calibration/sensitivity.json.")
@click.option("--gate/--no-gate", "run_gate", default=True, show_default=True,
              help="Fail unless INT8 stays within the RMSE / F2 tolerances of FP32.")
@click.option("--gate-split", type=click.Choice(["test_s", "test_u"]), default="test_s", show_default=True)
@click.option("--max-expressions", type=click.IntRange(1), default=None,
              help="Audit only the first N expressions of each test split (speed; grounded models "
                   "gate on the first 300 by default).")
@click.option("--max-rmse-increase", type=click.FloatRange(0), default=DEFAULT_MAX_RMSE_INCREASE,
              show_default=True, help="Gate: allowed rise of the overall IoU RMSE.")
@click.option("--max-f2-drop", type=click.FloatRange(0), default=DEFAULT_MAX_F2_DROP, show_default=True,
              help="Gate: allowed drop of macro F2-M and F2-A, in points.")
@click.option("--coverage", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=DEFAULT_COVERAGE, show_default=True, help="Target coverage of the IoU interval.")
@click.option("--heldout", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="heldout_uids.txt of the training run (default: MODEL/heldout_uids.txt).")
@click.option("--calib-split", type=click.Choice(["test_s", "test_u"]), default=None,
              help="Without held-out uids: fit the score calibration on half of this split's uids.")
@click.option("--keep-samples/--no-keep-samples", default=True, show_default=True,
              help="Save calibration/calibration_samples.npz (tens of MB) in the directory.")
@click.option("--latency-rounds", type=click.IntRange(0), default=20, show_default=True,
              help="Time the fused FP32 and INT8 graphs side by side at 13 masks (0: skip).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory at --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def int8(model, bench, out, method, samples, flavour, keep_fp32, run_gate, gate_split, max_expressions,
         max_rmse_increase, max_f2_drop, coverage, heldout, calib_split, keep_samples, latency_rounds,
         seed, threads, overwrite, quiet):
    """Quantize a model directory to INT8 (QDQ), gate its accuracy, calibrate its IoU scores."""
    from auditor_lite.calibration.pipeline import GateFailed, Int8Error, Int8Options, run_int8
    from auditor_lite.manifest import MANIFEST_FILE, ManifestError

    if _is_grounded(model):
        from auditor_lite.calibration.grounded_int8 import int8_grounded

        if flavour == "both":
            flavour = "cpu"
        try:
            report = int8_grounded(model, bench, out, flavour=flavour,
                                   method="percentile" if method == "minmax" else method,
                                   overwrite=overwrite, run_gate=run_gate, gate_split=gate_split,
                                   gate_expressions=max_expressions or 300,
                                   max_rmse_increase=max_rmse_increase, max_f2_drop=max_f2_drop,
                                   progress=not quiet, log=_echo)
        except GateFailed as exc:
            _echo(exc.hint)  # the score table and the deltas were printed as the gate ran
            sys.exit(1)
        except (QuantizationError, DataError, ManifestError, ValueError, FileExistsError) as exc:
            raise click.ClickException(str(exc)) from None
        _echo(f"wrote {out} ({report['seconds']} s); compare precisions with `auditor-lite audit --bench "
              "... --precision fp32|int8-cpu` and `auditor-lite eval`")
        return

    opts = Int8Options(method=method, samples=samples, flavours=FLAVOUR_CHOICES[flavour],
                       keep_fp32=tuple(keep_fp32), run_gate=run_gate, gate_split=gate_split,
                       max_expressions=max_expressions, max_rmse_increase=max_rmse_increase,
                       max_f2_drop=max_f2_drop, coverage=coverage, heldout=heldout,
                       calib_split=calib_split, keep_samples=keep_samples, latency_rounds=latency_rounds,
                       seed=seed, threads=threads, progress=not quiet, overwrite=overwrite, echo=_echo)
    try:
        with tempfile.TemporaryDirectory(prefix="auditor-fp32-") as scratch:
            source = model
            if not (model / MANIFEST_FILE).is_file() and (model / "config.json").is_file():
                from auditor_lite.export.exporter import ExportError
                from auditor_lite.export.model_dir import export_model_dir

                _echo(f"{model} is a checkpoint: exporting the FP32 model directory first")
                source = Path(scratch) / "fp32"
                try:
                    export_model_dir(model, source)
                except ExportError as exc:
                    raise Int8Error(f"export onnx of {model} failed: {exc}") from None
                held = model / "heldout_uids.txt"
                if opts.heldout is None and opts.calib_split is None and held.is_file():
                    opts.heldout = held
            result = run_int8(source, bench, out, opts)
    except GateFailed as exc:
        _echo(exc.hint)  # the score table and the deltas were printed as the gate ran
        sys.exit(1)
    except (Int8Error, QuantizationError, DataError, ManifestError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo(f"wrote {result.out}")
