"""``auditor-lite train-grounding`` and ``auditor-lite diagnose grounding``: stage A of the auditor.

``diagnose grounding`` answers "does the model know which object the expression means?": for each
expression of a benchmark's test splits, the scene object holding the largest share of the
key-frame referent map's mass must be the target (for a null expression: the null logit > 0).
Accuracy is printed per cue bucket beside the chance level of the same expressions (the mean of
1 / objects visible on the key frame), with ``--silence-audio`` and ``--shuffle-expressions SEED``
as ablations. The scene's objects come from the generator's sidecar; without one (the official
layout) only the target's own mask is known and the command says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

BUCKET_ORDER = ("overall", "category", "appearance", "position", "motion", "sound", "time",
                "relational", "needs_audio", "null")


def _threads(n: int) -> None:
    import torch
    torch.set_num_threads(max(1, n))


@click.command("train-grounding")
@click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False),
              help="Benchmark whose train split is used (its sidecars add the auxiliary losses).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--max-minutes", type=float, default=55.0, show_default=True,
              help="Wall-clock budget of the training loop (the data cache is built before it).")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Clips encoded per step.")
@click.option("--per-clip", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Expressions read per encoded clip and step (they share its encoding).")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--val-every-minutes", type=float, default=10.0, show_default=True)
@click.option("--cache", "cache_root", type=click.Path(file_okay=False), default=None,
              help="Where decoded arrays are cached [default: <bench>/../.grounding_cache].")
@click.option("--extra-per-clip", type=int, default=4, show_default=True,
              help="More expressions per training clip, phrased from its sidecar about other targets.")
@click.option("--audio-dropout", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of the expressions heard as silence in training (those that need the "
                   "audio then count every object they could still mean).")
@click.option("--val-fraction", type=click.FloatRange(0.01, 0.5), default=0.1, show_default=True,
              help="Share of the clips held out (validation, then the stage-B scorer and conformal "
                   "calibration are fitted on their maps).")
@click.option("--init", "init_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Fine-tune this trained grounder (its weights and held-out clips; the block-matched "
                   "cell motion is added, starting at zero).")
@click.option("--cell-motion", is_flag=True,
              help="Also read the block-matched cell vibration (auditor_lite/motion.py; on with --init).")
@click.option("--threads", type=int, default=os.cpu_count() or 1, show_default=True)
def train_grounding(bench, out_dir, max_minutes, batch_size, per_clip, lr, seed, val_every_minutes, cache_root,
                    extra_per_clip, audio_dropout, val_fraction, init_dir, cell_motion, threads):
    """Train the grounding model (stage A) on BENCH's train split."""
    from auditor_lite.training.grounding_data import grounding_set
    from auditor_lite.training.grounding_train import train_grounder

    if max_minutes <= 1:
        raise click.BadParameter("must be more than 1 minute", param_hint="--max-minutes")
    if batch_size < 2:
        raise click.BadParameter("must be at least 2", param_hint="--batch-size")
    _threads(threads)
    if extra_per_clip < 0:
        raise click.BadParameter("must be >= 0", param_hint="--extra-per-clip")
    data = grounding_set(bench, "train", "train", cache_root, extra_per_clip=extra_per_clip)
    extra = sum(data.meta["extra"])
    click.echo(f"data: {len(data) - extra} expressions + {extra} extra, {len(data.meta['vids'])} clips "
               f"(sidecar for {sum(data.meta['has_sidecar']) - extra})")
    config = None
    if cell_motion and init_dir is None:
        from auditor_lite.model.grounder import GrounderConfig
        config = GrounderConfig(key_size=data.meta["size"], max_tokens=data.meta["max_tokens"], cell_motion=True)
    summary = train_grounder(data, out_dir, minutes=max_minutes, batch_size=batch_size, per_clip=per_clip, lr=lr, seed=seed, config=config,
                             val_every_minutes=val_every_minutes, audio_dropout=audio_dropout,
                             val_fraction=val_fraction, init_dir=init_dir, log=click.echo)
    click.echo(json.dumps(summary, indent=2))


@click.group("diagnose")
def diagnose():
    """Diagnostics of a trained model."""


@diagnose.command("grounding")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", "splits", multiple=True, type=click.Choice(["test_s", "test_u"]),
              default=("test_s", "test_u"), show_default=True)
@click.option("--silence-audio", is_flag=True, help="Ablation: the clip is heard as silence.")
@click.option("--shuffle-expressions", type=int, default=None, metavar="SEED",
              help="Ablation: expressions permuted between clips (seeded); accuracy vs. the original targets.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the numbers as JSON.")
@click.option("--cache", "cache_root", type=click.Path(file_okay=False), default=None)
@click.option("--threads", type=int, default=os.cpu_count() or 1, show_default=True)
def diagnose_grounding(model_dir, bench, splits, silence_audio, shuffle_expressions, json_out, cache_root,
                       threads):
    """Referent accuracy by cue of the grounding model in MODEL on BENCH's test splits (image mode)."""
    import numpy as np

    from auditor_lite.training.grounding_data import grounding_set
    from auditor_lite.training.grounding_train import (load_grounder, referent_predictions,
                                                       referent_report)

    _threads(threads)
    try:
        model = load_grounder(model_dir)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    results = {}
    for split in splits:
        data = grounding_set(bench, split, "image", cache_root, size=model.config.key_size,
                             max_tokens=model.config.max_tokens)
        rows = np.arange(len(data))
        text_rows = None
        if shuffle_expressions is not None:
            text_rows = np.random.default_rng(shuffle_expressions).permutation(rows)
        pred = referent_predictions(model, data, rows, silence_audio=silence_audio, text_rows=text_rows)
        report = referent_report(data, rows, pred)
        if not all(data.meta["has_sidecar"]):
            missing = len(rows) - sum(data.meta["has_sidecar"])
            click.echo(f"note: {missing} of {len(rows)} {split} expressions have no scene sidecar; for "
                       "them only the target's mask is known, so 'correct' means the map touches it")
        results[split] = report
        click.echo(f"\n{split} (image, key frames): referent accuracy"
                   + (" [audio silenced]" if silence_audio else "")
                   + (f" [expressions shuffled, seed {shuffle_expressions}]" if shuffle_expressions is not None else ""))
        click.echo(f"{'bucket':<13}{'n':>6}{'correct':>10}{'chance':>9}")
        for name in BUCKET_ORDER:
            if name in report:
                r = report[name]
                click.echo(f"{name:<13}{r['n']:>6}{100 * r['accuracy']:>9.1f}%{100 * r['chance']:>8.1f}%")
    if json_out:
        with open(json_out, "w") as fh:
            json.dump({"model": str(model_dir), "bench": str(bench), "silence_audio": silence_audio,
                       "shuffle_expressions": shuffle_expressions, "splits": results}, fh, indent=2)


@click.command("train-scorer")
@click.option("--grounder", "grounder_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="A train-grounding output directory (its heldout_vids.txt names the clips to fit on).")
@click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False),
              help="The benchmark the grounding model was trained on.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Checkpoint directory to write: the grounder's files, the scorer, score_calibration.json.")
@click.option("--cache", "cache_root", type=click.Path(file_okay=False), default=None)
@click.option("--extra-per-clip", type=int, default=4, show_default=True,
              help="As given to train-grounding (selects the same cached set).")
@click.option("--crop-minutes", type=click.FloatRange(0.1), default=6.0, show_default=True,
              help="Training budget of the crop CNN (phase 1).")
@click.option("--crop-expressions", type=click.IntRange(10), default=5000, show_default=True,
              help="Training expressions whose candidate masks the crop CNN learns from.")
@click.option("--threads", type=int, default=os.cpu_count() or 1, show_default=True)
def train_scorer_cmd(grounder_dir, bench, out_dir, cache_root, extra_per_clip, crop_minutes, crop_expressions,
                     threads):
    """Fit stage B (the per-mask scorer) and its conformal calibration on held-out clips' maps."""
    import shutil

    from auditor_lite.model.grounded import GROUNDER_FILES, GroundedAuditor
    from auditor_lite.model.scorer import MaskScorer
    from auditor_lite.training.grounding_data import grounding_set
    from auditor_lite.training.grounding_train import load_grounder
    from auditor_lite.training.scorer_train import train_scorer

    _threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in GROUNDER_FILES + ("heldout_vids.txt", "training_summary.json"):
        if (Path(grounder_dir) / name).is_file() and Path(grounder_dir).resolve() != out.resolve():
            shutil.copy2(Path(grounder_dir) / name, out / name)
    model = GroundedAuditor(load_grounder(grounder_dir), MaskScorer()).eval()
    data = grounding_set(bench, "train", "train", cache_root, extra_per_clip=extra_per_clip)
    summary = train_scorer(model, data, bench, grounder_dir, out, crop_minutes=crop_minutes,
                           crop_expressions=crop_expressions, log=click.echo)
    click.echo(json.dumps(summary, indent=2))
