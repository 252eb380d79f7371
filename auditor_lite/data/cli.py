"""``auditor-lite data``: build the asset cache, synthesize, validate and preview benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from auditor_lite.data.schema import DataError


class _DataGroup(click.Group):
    """Turns a DataError anywhere below into a one-line error naming the file, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DataError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=_DataGroup)
def data():
    """Benchmark data in the MQ-RAVSBench layout."""


@data.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--lenient", is_flag=True, help="Skip and count malformed items instead of failing.")
@click.option("--no-media", is_flag=True, help="Check the JSON/CSV only, not frames, audio and masks.")
def validate(root: Path, lenient: bool, no_media: bool):
    """Check a benchmark directory and print a summary (exits 1 on errors)."""
    from auditor_lite.data.validate import validate_benchmark

    report = validate_benchmark(root, lenient=lenient, check_media=not no_media)
    click.echo(report.format())
    if report.errors:
        sys.exit(1)


@data.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the benchmark to (created).")
@click.option("--clips", default=2000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=32, max=1024),
              help="Frame side in pixels (frames are square).")
@click.option("--assets", "asset_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Asset cache from 'auditor-lite data assets' "
              "(default: $AUDITOR_LITE_ASSETS or ~/.cache/auditor-lite/assets if present, "
              "else procedural objects).")
@click.option("--procedural", is_flag=True, help="Ignore any asset cache; use procedural objects.")
@click.option("--overwrite", is_flag=True, help="Replace an existing benchmark in --out.")
def synth(out: Path, clips: int, seed: int, size: int, asset_dir: Path | None, procedural: bool,
          overwrite: bool):
    """Generate a benchmark (train, test_s, test_u) in the MQ-RAVSBench layout."""
    from auditor_lite.data.synth import synthesize

    summary = synthesize(out, clips=clips, seed=seed, size=size, asset_dir=asset_dir,
                         procedural=procedural, overwrite=overwrite, progress=True)
    click.echo(summary)


@data.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache directory (default: ~/.cache/auditor-lite/assets).")
@click.option("--deb", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A downloaded gcompris-qt-data .deb (default: fetch it with apt-get download).")
def assets(out: Path | None, deb: Path | None):
    """Build the local asset cache (real instruments, animals, sounds, backgrounds)."""
    from auditor_lite.data.assets import build_asset_cache, default_asset_dir

    summary = build_asset_cache(out or default_asset_dir(), deb=deb, progress=True)
    click.echo(summary)


@data.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--uid", required=True, help="Expression uid to show.")
@click.option("--mode", type=click.Choice(["auto", "train", "image", "video"]), default="auto",
              show_default=True, help="Which JSON to read the uid from.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: preview_<uid>.png).")
def preview(root: Path, uid: str, mode: str, out: Path | None):
    """Write a PNG contact sheet: frames, ground truth and every candidate with type, IoU, action."""
    from auditor_lite.data.preview import render_preview

    path = render_preview(root, uid, out or Path(f"preview_{uid}.png"), mode=mode)
    click.echo(f"wrote {path}")
