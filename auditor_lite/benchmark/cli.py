"""``auditor-lite bench``: latency, throughput, size and accuracy of a model directory, every variant
side by side in one run. Registered lazily in ``auditor_lite/cli.py`` as
``"bench": "auditor_lite.benchmark.cli:bench"``. See bench/README.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from auditor_lite.benchmark.variants import LAYOUTS, SAMPLE_CLIP


def _mask_counts(ctx, param, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas (e.g. 1,13), got {value!r}")
    return tuple(dict.fromkeys(counts))  # keep the order, drop repeats


def _layouts(ctx, param, value: str) -> tuple[str, ...]:
    layouts = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in layouts if v not in LAYOUTS]
    if not layouts or unknown:
        raise click.BadParameter(f"choose among {', '.join(LAYOUTS)}; got {value!r}")
    return layouts


@click.command("bench")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory (from `export onnx` / `export int8`) [the packaged default model].")
@click.option("--mask-counts", "mask_counts", default="1,13", show_default=True, callback=_mask_counts,
              help="Masks per clip call, comma separated.")
@click.option("--repeats", type=click.IntRange(1), default=50, show_default=True,
              help="Timed rounds (every case once per round, interleaved).")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True, help="Untimed rounds first.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="ONNX Runtime intra-op threads [all CPUs, as the runtime].")
@click.option("--layouts", default=",".join(LAYOUTS), show_default=True, callback=_layouts,
              help="Layouts to time (fused, naive, alone, cached).")
@click.option("--clip", "clip_dir", type=click.Path(file_okay=False, path_type=Path), default=SAMPLE_CLIP,
              help="Clip folder in the sample-clip layout [the packaged sample clip].")
@click.option("--bench", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Benchmark root: scores each artifact's accuracy beside its speed.")
@click.option("--accuracy-expressions", type=click.IntRange(1), default=100, show_default=True,
              help="First N expressions of the benchmark's test_s/image split.")
@click.option("--profile-repeats", type=click.IntRange(1), default=20, show_default=True,
              help="Calls per stage breakdown and runs per ONNX Runtime profile.")
@click.option("--gpu/--no-gpu", default=True, show_default=True,
              help="Add CUDA / TensorRT variants when this onnxruntime build has them.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench_out"),
              show_default=True, help="Folder for bench.json, bench.md and bench.png.")
@click.option("--no-plot", is_flag=True, help="Skip bench.png (no matplotlib needed).")
@click.option("--stream-clips", type=click.IntRange(0), default=40, show_default=True,
              help="Clips per round of the stream section (13 masks each; one after the other vs several "
                   "at once); 0 skips it.")
def bench(model_dir, mask_counts, repeats, warmup, threads, layouts, clip_dir, bench,
          accuracy_expressions, profile_repeats, gpu, out, no_plot, stream_clips):
    """Benchmark every way to run MODEL side by side: latency p50/p90/p99, masks/s, fused vs naive vs
    each mask alone vs cached context, INT8 vs FP32 (and CUDA, TensorRT), sizes, accuracy and a profile."""
    from auditor_lite.benchmark.report import all_tables, machine_line, render_text, write_outputs
    from auditor_lite.benchmark.suite import BenchOptions, run_suite
    from auditor_lite.data.schema import DataError
    from auditor_lite.manifest import ManifestError
    from auditor_lite.runtime import ModelNotFoundError

    if model_dir is None:
        from auditor_lite.runtime.model_dir import DEFAULT_MODEL_DIR
        model_dir = DEFAULT_MODEL_DIR
    options = BenchOptions(model_dir=model_dir, mask_counts=mask_counts,
                           repeats=repeats, warmup=warmup, threads=threads, clip_dir=clip_dir, bench=bench,
                           accuracy_expressions=accuracy_expressions, profile_repeats=profile_repeats,
                           text_repeats=profile_repeats, gpu=gpu, layouts=layouts, stream_clips=stream_clips,
                           log=lambda message: click.echo(message, err=True))
    try:
        report = run_suite(options)
    except (DataError, ManifestError, ModelNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except ModuleNotFoundError as exc:  # an option whose extra is not installed
        raise click.ClickException(f"{exc.name} is not installed: --bench (accuracy) and the plot need "
                                   "the data extra (pip install 'auditor-lite[data]')") from None
    click.echo(render_text(all_tables(report), machine_line(report)))
    for note in report["notes"]:
        click.echo(f"note: {note}")
    try:
        written = write_outputs(report, out, plot=not no_plot)
    except ModuleNotFoundError as exc:  # bench.json and bench.md are written before the plot
        raise click.ClickException(f"{exc.name} is not installed, so {out / 'bench.png'} was not drawn "
                                   "(bench.json and bench.md were written); pass --no-plot or install "
                                   "'auditor-lite[data]'") from None
    for path in written:
        click.echo(f"wrote {path}")
