"""``auditor-lite audit``, ``auditor-lite select`` and ``auditor-lite demo``. Imports no torch.

A user of the runtime library, not part of it: it stands above ``auditor_lite.runtime`` (with the
benchmark-reading batch audits of ``auditor_lite.batch_audit``), so the runtime imports nothing of
the data, evaluation or calibration packages.

Registered lazily in ``auditor_lite/cli.py``: ``"audit": "auditor_lite.audit_cli:audit"``,
``"select": "auditor_lite.audit_cli:select"``, ``"demo": "auditor_lite.audit_cli:demo"``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from auditor_lite.runtime.auditor import PRECISION_CHOICES

GATE_CHOICES = ("accept", "minor", "major")  # = auditor_lite.batch_audit.GATES (kept import-light)

SAMPLE_CLIP = Path(__file__).resolve().parent / "assets" / "sample_clip"


def _friendly_errors(command):
    """Turn the runtime's input/model errors into one-line click errors (no traceback)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from auditor_lite.data.schema import DataError
        from auditor_lite.manifest import ManifestError
        from auditor_lite.runtime.auditor import ModelNotFoundError

        try:
            return command(*args, **kwargs)
        except (DataError, ManifestError, ModelNotFoundError, ValueError) as err:
            raise click.ClickException(str(err)) from None
    return wrapper


def model_options(command):
    command = click.option("--threads", type=click.IntRange(min=1), default=None,
                           help="ONNX Runtime intra-op threads (default: all CPUs).")(command)
    command = click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto",
                           show_default=True, help="Graph precision (auto: the model's default).")(command)
    return click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
                        help="Model directory (default: the packaged INT8 student).")(command)


def clip_options(command):
    """The file inputs of one clip: frames (or a video), audio, expression, masks, frame index."""
    for decorator in reversed([
        click.option("--video", type=click.Path(path_type=Path), help="A video file (decoded with PyAV, the 'video' extra, or ffmpeg)."),
        click.option("--frames", "frames_dir", type=click.Path(path_type=Path),
                     help="Folder of the 10 frames (0.jpg .. 9.jpg, or 10 images in name order)."),
        click.option("--audio", type=click.Path(path_type=Path), help="Sound file (mono/stereo, any rate)."),
        click.option("--expression", help="The referring expression."),
        click.option("--masks", "mask_files", multiple=True, type=click.Path(path_type=Path),
                     help="Candidate mask images: --masks a.png b.png ..."),
        click.option("--mask-dir", type=click.Path(path_type=Path), help="Folder of candidate mask images."),
        click.option("--frame", "frame_index", type=click.IntRange(0, 9),
                     help="Index (0-9) of the frame the masks belong to."),
        click.option("--allow-silent", is_flag=True, help="Audit a clip whose audio is silent."),
        click.argument("more_masks", nargs=-1, type=click.Path(path_type=Path)),
    ]):
        command = decorator(command)
    return command


def load_auditor(model_dir, precision, threads):
    from auditor_lite.runtime.auditor import Auditor

    return Auditor.load(model_dir, precision=precision, intra_op_threads=threads)


def _checked_as(path, check, *args, **kwargs):
    """``check(*args, **kwargs)``, the runtime's own input check, its refusal named after ``path``."""
    from auditor_lite.data.schema import DataError
    from auditor_lite.runtime.inputs import InputError

    try:
        return check(*args, **kwargs)
    except InputError as exc:
        raise DataError(path, exc.message) from None


def read_clip(video, frames_dir, audio, expression, mask_files, mask_dir, frame_index, more_masks,
              allow_silent=False):
    """The clip of the file options: ``(frames, wave, expression, masks, mask names, frame index)``.
    Everything is checked here, before the model loads: a bad input is refused in well under a
    second, naming the file it came from."""
    from auditor_lite.data.schema import DataError, SAMPLE_RATE
    from auditor_lite.runtime import files
    from auditor_lite.runtime.inputs import InputError, check_audio, check_expression, check_frames, check_masks

    if (video is None) == (frames_dir is None):
        raise click.UsageError("give the clip as --video FILE or as --frames DIR (one of them)")
    if expression is None:
        raise click.UsageError("--expression TEXT is required")
    check_expression(expression)
    if frame_index is None:
        raise click.UsageError("--frame K is required: the index (0-9) of the frame the masks belong to")
    if more_masks and not mask_files:
        raise click.UsageError(f"unexpected argument(s) {' '.join(map(str, more_masks))}")
    mask_paths = list(mask_files) + list(more_masks)
    if bool(mask_paths) == (mask_dir is not None):
        raise click.UsageError("give the candidates as --masks PNG... or as --mask-dir DIR (one of them)")
    if mask_dir is not None:
        mask_paths = files.mask_dir_files(mask_dir)
    note = functools.partial(click.echo, err=True)
    wave = None
    if video is not None:
        frames, wave = files.read_video(video, note)
    else:
        frames = files.load_frames_dir(frames_dir)
    if audio is not None:
        wave = files.load_audio_file(audio, note)
    if wave is None:
        raise click.UsageError("no audio: give --audio WAV (the video has no sound track)" if video is not None
                               else "no audio: give --audio WAV with the frames (10 s of sound)")
    _checked_as(frames_dir if frames_dir is not None else video, check_frames, frames)
    _checked_as(audio if audio is not None else video, check_audio, wave, SAMPLE_RATE, allow_silent=allow_silent)
    masks = files.load_mask_files(mask_paths)
    try:
        check_masks(masks, frames.shape[1:3])
    except InputError as exc:   # "masks[2]: ..." -> the file's name
        raise DataError(mask_paths[min(exc.mask_index, len(mask_paths) - 1)], exc.message) from None
    return frames, wave, expression, masks, [Path(p).name for p in mask_paths], frame_index


def format_table(results, names, truth=None) -> str:
    """A plain-text table, one row per candidate (truth columns when ``truth`` is given)."""
    head = ["#", "mask", "IoU", "interval", "type", "p", "action", "p"]
    if truth is not None:
        head += ["| true IoU", "true type", "true action"]
    rows = []
    for r, name in zip(results, names):
        interval = "-" if r.iou_low is None else f"[{r.iou_low:.2f}, {r.iou_high:.2f}]"
        row = [str(r.index), name + (" (empty)" if r.empty else ""), f"{r.iou:.2f}", interval, r.mask_type,
               f"{r.type_probs[r.mask_type]:.2f}", r.action, f"{r.action_probs[r.action]:.2f}"]
        if truth is not None:
            t = truth[r.index]
            row += [f"| {t['iou']:.2f}", t["mask_type"], t["action"]] if t else ["| -", "-", "-"]
        rows.append(row)
    widths = [max(len(x) for x in column) for column in zip(head, *rows)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in [head, *rows])


# ----------------------------------------------------------------------------- audit
@click.command("audit")
@click.option("--bench", type=click.Path(path_type=Path),
              help="Audit a whole benchmark instead of one clip (writes --out JSONL).")
@click.option("--out", type=click.Path(path_type=Path), help="Predictions JSONL to write (with --bench).")
@click.option("--split", "splits", multiple=True, type=click.Choice(("test_s", "test_u")),
              help="With --bench: only this split (repeatable; default: all present).")
@click.option("--mode", "modes", multiple=True, type=click.Choice(("image", "video")),
              help="With --bench: only this mode (repeatable; default: all present).")
@click.option("--silence-audio", is_flag=True, help="With --bench: audit with silent audio (ablation).")
@click.option("--shuffle-expressions", type=int, default=None, metavar="SEED",
              help="With --bench: audit each expression's masks with another clip's expression (ablation).")
@click.option("--method", help="With --bench: method name in the predictions (default from the model).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option("--executor", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="With --bench/--clips: this process, or Ray Data actors (the 'scale' extra; docs/scale.md).")
@click.option("--address", help="With --executor ray: an existing Ray cluster (default: a local one on 127.0.0.1).")
@click.option("--workers", type=click.IntRange(min=1), help="With --executor ray: auditor actors (default: CPUs / --threads).")
@click.option("--clips", type=click.Path(path_type=Path), help="A clip list (Parquet or JSONL) to audit instead of --bench.")
@click.option("--allow-absolute", is_flag=True, help="With --clips: accept paths outside the list's folder.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="With --bench: clips audited at once on that many threads (default: the CPUs); "
                   "the default --threads is then CPUs / jobs.")
@clip_options
@model_options
@_friendly_errors
def audit(bench, out, splits, modes, silence_audio, shuffle_expressions, method, no_progress, as_json, executor,
          address, workers, clips, allow_absolute, jobs, model_dir, precision, threads, video, frames_dir, audio, expression,
          mask_files, mask_dir, frame_index, allow_silent, more_masks):
    """Audit candidate masks of a clip (files), or of a whole benchmark (--bench DIR --out FILE)."""
    if executor == "ray" or clips is not None or address is not None or workers is not None:   # dataset scale: auditor_lite/scale, docs/scale.md
        from auditor_lite.scale.cli import scale_audit

        scale_audit(bench=bench, clips=clips, out=out, executor=executor, address=address, workers=workers,
                    threads=threads, splits=splits, modes=modes, silence_audio=silence_audio,
                    shuffle_expressions=shuffle_expressions, method=method, allow_absolute=allow_absolute,
                    model_dir=model_dir, precision=precision, progress=not no_progress)
        return
    if bench is None and shuffle_expressions is not None:
        raise click.UsageError("--shuffle-expressions needs --bench (it permutes a benchmark's expressions)")
    if bench is not None:
        if out is None:
            raise click.UsageError("--bench needs --out FILE (the predictions JSONL to write)")
        from auditor_lite.batch_audit import audit_benchmark
        from auditor_lite.runtime.pipeline import default_jobs, graph_threads

        jobs = jobs or default_jobs()
        threads = graph_threads(threads, jobs)
        auditor = load_auditor(model_dir, precision, threads)
        click.echo(f"model {auditor.model_dir} ({auditor.manifest.name}); backend {auditor.backend}; "
                   f"{jobs} clip(s) at once x {threads} graph thread(s)", err=True)
        stats = audit_benchmark(auditor, bench, out, splits or None, modes or None, silence_audio, method,
                                progress=not no_progress, shuffle_expressions=shuffle_expressions, jobs=jobs)
        per_pair = ", ".join(f"{k} {v}" for k, v in stats["counts"].items())
        click.echo(f"wrote {out}: {stats['masks']} predictions ({per_pair}) as {stats['method']!r} in "
                   f"{stats['seconds']:.1f} s, {stats['masks_per_second']:.1f} masks/s")
        return
    frames, wave, expression, masks, names, frame_index = read_clip(
        video, frames_dir, audio, expression, mask_files, mask_dir, frame_index, more_masks, allow_silent)
    auditor = load_auditor(model_dir, precision, threads)
    results = auditor.audit(frames, wave, expression, masks, frame_index=frame_index, allow_silent=allow_silent)
    if as_json:
        click.echo(json.dumps({"backend": auditor.backend, "expression": expression.strip(),
                               "frame": frame_index,
                               "results": [{"mask": n, **r.to_dict()} for n, r in zip(names, results)]},
                              indent=2))
        return
    click.echo(f"backend: {auditor.backend}\nexpression: {expression.strip()!r}, frame {frame_index}")
    click.echo(format_table(results, names))
    for name, r in zip(names, results):
        click.echo(f"{name}: {r.explanation}")


# ----------------------------------------------------------------------------- select
@click.command("select")
@click.option("--bench", type=click.Path(path_type=Path), help="Report the selection over a benchmark.")
@click.option("--pred", type=click.Path(path_type=Path),
              help="With --bench: use this predictions JSONL (from audit --bench) instead of running the model.")
@click.option("--split", "splits", multiple=True, type=click.Choice(("test_s", "test_u")))
@click.option("--mode", "modes", multiple=True, type=click.Choice(("image", "video")))
@click.option("--min-action", type=click.Choice(tuple(GATE_CHOICES)), default="minor", show_default=True,
              help="Worst predicted action the picked mask may have (minor: accept or minor revision).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@clip_options
@model_options
@_friendly_errors
def select(bench, pred, splits, modes, min_action, as_json, model_dir, precision, threads, video, frames_dir,
           audio, expression, mask_files, mask_dir, frame_index, allow_silent, more_masks):
    """Pick the best of several candidate masks by predicted IoU, gated by the predicted action."""
    from auditor_lite.batch_audit import GATES, pick_best

    if bench is not None:
        _select_benchmark(bench, pred, splits, modes, min_action, as_json, model_dir, precision, threads)
        return
    frames, wave, expression, masks, names, frame_index = read_clip(
        video, frames_dir, audio, expression, mask_files, mask_dir, frame_index, more_masks, allow_silent)
    auditor = load_auditor(model_dir, precision, threads)
    results = auditor.audit(frames, wave, expression, masks, frame_index=frame_index, allow_silent=allow_silent)
    best = results[pick_best([r.iou for r in results])]
    passed = best.action in GATES[min_action]
    if as_json:
        click.echo(json.dumps({"selected": names[best.index] if passed else None, "best": names[best.index],
                               "passed_gate": passed, "result": best.to_dict()}, indent=2))
        return
    click.echo(format_table(results, names))
    verdict = "selected" if passed else "no mask good enough; the best is"
    click.echo(f"{verdict} {names[best.index]}: {best.explanation}")


def _select_benchmark(bench, pred, splits, modes, gate, as_json, model_dir, precision, threads):
    import tempfile

    from auditor_lite.data.reader import Benchmark
    from auditor_lite.eval.predictions import read_predictions
    from auditor_lite.batch_audit import audit_benchmark, benchmark_groups, benchmark_pairs, select_groups

    pairs = benchmark_pairs(Benchmark(bench), splits or None, modes or None)
    with tempfile.TemporaryDirectory(prefix="auditor-lite-select-") as tmp:
        if pred is None:
            pred = Path(tmp) / "predictions.jsonl"
            auditor = load_auditor(model_dir, precision, threads)
            click.echo(f"auditing with {auditor.backend} ...", err=True)
            audit_benchmark(auditor, bench, pred, splits or None, modes or None, progress=False)
        reports = {}
        for split, mode in pairs:
            predictions = read_predictions(pred, mode=mode, split=split)
            reports[f"{split}/{mode}"] = select_groups(benchmark_groups(bench, predictions, split, mode), gate)
    if as_json:
        click.echo(json.dumps({k: vars(r) for k, r in reports.items()}, indent=2))
        return
    for name, report in reports.items():
        click.echo(f"== {name}")
        for line in report.lines(gate):
            click.echo("  " + line)


# ----------------------------------------------------------------------------- demo
def _read_truth(path: Path) -> dict:
    """A sample's optional truth.json, checked: {} when absent; DataError naming the field if wrong."""
    from auditor_lite.data.schema import DataError

    if not path.is_file():
        return {}
    from auditor_lite.jsonio import read_json

    truth = read_json(path, DataError)
    if not isinstance(truth, dict):
        raise DataError(path, "expected a JSON object")
    index = truth.get("frame_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 9):
        raise DataError(path, f"frame_index must be an integer 0-9, got {index!r}")
    masks = truth.get("masks", {})
    if not isinstance(masks, dict) or not all(isinstance(v, dict) and isinstance(v.get("iou"), (int, float))
                                              for v in masks.values()):
        raise DataError(path, "masks must map each mask file name to {\"iou\": number, ...}")
    return truth


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("overlay.png"), show_default=True,
              help="Overlay PNG to write.")
@click.option("--sample", type=click.Path(path_type=Path), default=SAMPLE_CLIP,
              help="Sample clip folder (default: the packaged one).")
@click.option("--frame", "frame_index", type=click.IntRange(0, 9), default=None,
              help="Frame the masks belong to [default: the sample's truth.json].")
@model_options
@_friendly_errors
def demo(out, sample, frame_index, model_dir, precision, threads):
    """Audit the packaged sample clip, print the table and write an overlay PNG.

    A sample folder holds frames/ (10 images), audio.wav, expression.txt, masks/ and, optionally,
    truth.json ({"frame_index": K, "masks": {name: {"iou": ..., "type": ..., "action": ...}}})."""
    from auditor_lite.data.schema import DataError
    from auditor_lite.runtime import files
    from auditor_lite.batch_audit import pick_best
    from auditor_lite.runtime.overlay import draw_overlay

    truth = _read_truth(sample / "truth.json")
    expression_file = sample / "expression.txt"
    if not expression_file.is_file():
        raise DataError(expression_file, "missing: the sample's referring expression, one line of text")
    expression = expression_file.read_text(encoding="utf-8").strip()
    if frame_index is None:
        if "frame_index" not in truth:
            raise click.UsageError(f"{sample} has no truth.json with a frame_index: give --frame K "
                                   "(the frame the masks belong to)")
        frame_index = truth["frame_index"]
    frames = files.load_frames_dir(sample / "frames")
    wave = files.load_audio_file(sample / "audio.wav")
    paths = files.mask_dir_files(sample / "masks")
    masks = files.load_mask_files(paths)
    names = [p.name for p in paths]
    auditor = load_auditor(model_dir, precision, threads)
    results = auditor.audit(frames, wave, expression, masks, frame_index=frame_index)
    true = [truth.get("masks", {}).get(n) for n in names]
    click.echo(f"model: {auditor.model_dir.name} ({auditor.manifest.name}), backend: {auditor.backend}")
    click.echo(f"clip: {sample} -- expression {expression!r}, {len(masks)} candidates of frame {frame_index}")
    click.echo(format_table(results, names, true))
    pick = pick_best([r.iou for r in results])
    known = [t["iou"] for t in true if t]
    if true[pick] and known:
        click.echo(f"auditor's pick: {names[pick]} (true IoU {true[pick]['iou']:.2f}); best possible "
                   f"{max(known):.2f}, a random pick {sum(known) / len(known):.2f} on average")
    draw_overlay(out, frames[frame_index], masks, results, names=names, truth=true,
                 title=f"{expression}  (frame {frame_index}, {auditor.backend})")
    click.echo(f"wrote {out}")
