"""``auditor-lite baseline NAME --bench DIR --out FILE``."""

from __future__ import annotations

from pathlib import Path

import click

from auditor_lite.baselines.predictors import BASELINES


@click.command()
@click.argument("name", type=click.Choice(BASELINES))
@click.option("--bench", "bench_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Benchmark root in the MQ-RAVSBench layout (train split used for fitting).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Predictions JSONL to write.")
@click.option("--split", "splits", multiple=True, type=click.Choice(["test_s", "test_u"]),
              help="Test split(s) to predict (default: both).")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["image", "video"]),
              help="Mode(s) to predict (default: both).")
@click.option("--max-train-masks", type=click.IntRange(min=100), default=None,
              help="Fit geometry/temporal on a seeded sample of this many training candidates "
              "(default: all of them; features cost a few ms per mask).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="BLAS/OpenMP threads [the CPUs this process may use].")
def baseline(name: str, bench_dir: Path, out: Path, splits: tuple[str, ...],
             modes: tuple[str, ...], max_train_masks: int | None, threads: int | None):
    """Fit a baseline on the train split and write its predictions JSONL."""
    from auditor_lite.baselines.predictors import run_baseline

    try:
        counts = run_baseline(name, bench_dir, out, splits=splits or ("test_s", "test_u"),
                              modes=modes or ("image", "video"), max_train_masks=max_train_masks,
                              threads=threads)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    for key, n in counts.items():
        click.echo(f"{name}: {key}: {n} predictions")
    click.echo(f"wrote {out}")
