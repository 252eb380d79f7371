"""``auditor-lite export int8``: static INT8 context and masks graphs, gated on accuracy.

The export engineer's ``export`` group attaches :data:`int8` (``auditor_lite.calibration.cli:int8``);
the work is :func:`auditor_lite.calibration.grounded_int8.int8_grounded`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from auditor_lite.calibration.gate import DEFAULT_MAX_F2_DROP, DEFAULT_MAX_RMSE_INCREASE, GateFailed
from auditor_lite.calibration.quantize import METHODS, QuantizationError
from auditor_lite.data.schema import DataError


def _echo(text: str) -> None:
    click.echo(text, err=True)


@click.command("int8")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="FP32 model directory from `export onnx`.")
@click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Benchmark root (MQ-RAVSBench layout): train split to calibrate, a test split to gate.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New model directory: the FP32 files plus the INT8 graphs (its new default).")
@click.option("--method", type=click.Choice(METHODS), default="percentile", show_default=True,
              help="Activation range calibration (Optimum AutoCalibrationConfig).")
@click.option("--expressions", type=click.IntRange(1), default=48, show_default=True,
              help="Train-split expressions to calibrate on (their clips' contexts and candidate masks).")
@click.option("--flavour", type=click.Choice(["cpu", "trt"]), default="cpu", show_default=True,
              help="cpu: U8 activations / S8 per-channel weights; trt: symmetric S8/S8, float bias.")
@click.option("--graphs", type=click.Choice(["context", "masks"]), multiple=True, default=("context", "masks"),
              show_default=True, help="Graphs to quantize (repeat the option); the others stay FP32 under the "
              "INT8 precision (the FP32 file serves both).")
@click.option("--gate/--no-gate", "run_gate", default=True, show_default=True,
              help="Install INT8 only if it stays within the RMSE / F2 tolerances of FP32.")
@click.option("--gate-split", type=click.Choice(["test_s", "test_u"]), default="test_s", show_default=True)
@click.option("--gate-expressions", type=click.IntRange(1), default=300, show_default=True,
              help="Audit the first N image expressions of the gate split.")
@click.option("--max-rmse-increase", type=click.FloatRange(0), default=DEFAULT_MAX_RMSE_INCREASE,
              show_default=True, help="Gate: allowed rise of the overall IoU RMSE.")
@click.option("--max-f2-drop", type=click.FloatRange(0), default=DEFAULT_MAX_F2_DROP, show_default=True,
              help="Gate: allowed drop of macro F2-M and F2-A, in points.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory at --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def int8(model, bench, out, method, expressions, flavour, graphs, run_gate, gate_split, gate_expressions,
         max_rmse_increase, max_f2_drop, overwrite, quiet):
    """Quantize a model directory's graphs to INT8 (QDQ) and gate their accuracy against FP32."""
    from auditor_lite.calibration.grounded_int8 import int8_grounded
    from auditor_lite.manifest import ManifestError

    try:
        report = int8_grounded(model, bench, out, expressions=expressions, flavour=flavour, method=method,
                               graphs=graphs, overwrite=overwrite, run_gate=run_gate, gate_split=gate_split,
                               gate_expressions=gate_expressions, max_rmse_increase=max_rmse_increase,
                               max_f2_drop=max_f2_drop, progress=not quiet, log=_echo)
    except GateFailed as exc:
        _echo(exc.hint)  # the score table and the deltas were printed as the gate ran
        sys.exit(1)
    except (QuantizationError, DataError, ManifestError, ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo(f"wrote {out} ({report['seconds']} s); compare precisions with `auditor-lite audit --bench "
          "... --precision fp32|int8-cpu` and `auditor-lite eval`")
