"""The ``audit`` command's dataset-scale path (``--executor ray``, ``--clips``): called by
``auditor_lite.audit_cli.audit``; prints one summary, or one error line."""

from __future__ import annotations

import sys

import click


def scale_audit(*, bench, clips, out, executor, address, workers, threads, splits, modes, silence_audio,
                shuffle_expressions, method, allow_absolute, model_dir, precision, progress) -> dict:
    from tqdm import tqdm

    from auditor_lite.batch_audit import method_name
    from auditor_lite.runtime.auditor import Auditor
    from auditor_lite.scale.run import run_audit
    from auditor_lite.scale.tasks import benchmark_tasks, read_clip_list

    if (bench is None) == (clips is None):
        raise click.UsageError("give the clips to audit as --bench DIR or as --clips FILE (one of them)")
    if out is None:
        raise click.UsageError("--out is required: OUT.jsonl (the predictions JSONL) or a folder (Parquet parts)")
    if clips is not None and (shuffle_expressions is not None or silence_audio):
        raise click.UsageError("--shuffle-expressions and --silence-audio are benchmark ablations (--bench)")
    if executor != "ray" and (address is not None or workers is not None):
        raise click.UsageError("--address and --workers need --executor ray")
    if executor == "ray":   # a missing extra is said before anything else is read
        from auditor_lite.scale.ray_executor import import_ray

        import_ray(local=address is None)
    if bench is not None:
        tasks = benchmark_tasks(bench, splits or None, modes or None, silence_audio, shuffle_expressions)
    else:
        tasks = read_clip_list(clips, allow_absolute, splits or None, modes or None)
    auditor = Auditor.load(model_dir, precision=precision, intra_op_threads=1)  # checked here, named here
    name = method_name(auditor, method, silence_audio, shuffle_expressions)
    click.echo(f"model {auditor.model_dir} ({auditor.manifest.name}); backend {auditor.backend}; "
               f"{len(tasks)} clips; executor {executor}", err=True)
    del auditor
    bar = tqdm(total=None, desc="audit", unit="clip", file=sys.stderr, disable=not progress)

    def on_progress(done, pending, row):
        bar.total = pending
        bar.update(row["clips"])

    try:
        stats = run_audit(tasks, out, executor=executor, model_dir=model_dir, precision=precision, threads=threads,
                          workers=workers, address=address, method=name, on_progress=on_progress)
    finally:
        bar.close()
    click.echo(summary(stats))
    return stats


def summary(stats: dict) -> str:
    lines = [f"wrote {stats['out']}: {stats['predictions']} predictions of {stats['clips']} clips "
             f"({stats['audited']} audited now, {stats['skipped']} already written) as executor {stats['executor']}"
             + (f", {stats['workers']} workers x {stats['threads']} threads" if stats.get("workers") else "")]
    if stats.get("steady_s"):
        lines.append(f"start-up {stats['startup_s']:.1f} s (ray.init {stats.get('ray_init_s', 0):.1f} s), steady "
                     f"state {stats['steady_s']:.1f} s: {stats['masks_per_s']:.1f} masks/s, "
                     f"{stats['audited'] / stats['steady_s']:.2f} clips/s")
        lines.append("rows per actor: " + ", ".join(
            f"{name} {a['clips']} clips ({100 * a['share']:.0f}%), {a['masks_per_busy_s'] or 0:.1f} masks/busy s"
            for name, a in stats["actors"].items()))
    if stats["errors"]:
        lines.append(f"{stats['errors']} clips failed (their masks count as missing): {stats['errors_file']}")
    return "\n".join(lines)
