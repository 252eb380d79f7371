"""``auditor-lite train`` / ``distill`` / ``predict`` (register in auditor_lite/cli.py COMMANDS).

Torch is imported inside the command functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import json

import click


def _overrides(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg}): {text!r}", param_hint="--overrides") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object of config fields, e.g. '{\"d_model\": 256}'",
                                 param_hint="--overrides")
    return value


def _training_options(func):
    """Options shared by train and distill."""
    options = [
        click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Benchmark root (MQ-RAVSBench layout); its train split is used."),
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Output directory: best model, checkpoint/, train_log.jsonl, summary."),
        click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
                     help="Feature cache directory [default: <out>/../.feature_cache]."),
        click.option("--overrides", default=None,
                     help="JSON object of AuditorConfig fields overriding the preset."),
        click.option("--epochs", type=float, default=None,
                     help="Epochs (default 10 when --max-minutes is not given; with it, a cap)."),
        click.option("--max-minutes", type=float, default=None,
                     help="Time budget: the LR schedule is sized to it and training stops in time."),
        click.option("--max-steps", type=int, default=None,
                     help="Stop (and checkpoint) after this many steps; does not change the schedule."),
        click.option("--batch-clips", type=int, default=8, show_default=True,
                     help="Expressions per step (each with all of its candidate masks)."),
        click.option("--lr", type=float, default=None, help="Peak learning rate [default: per preset]."),
        click.option("--weight-decay", type=float, default=0.05, show_default=True),
        click.option("--warmup-steps", type=int, default=40, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--heldout-fraction", type=float, default=0.1, show_default=True,
                     help="Share of clips held out for model selection and calibration."),
        click.option("--val-every-minutes", type=float, default=10.0, show_default=True),
        click.option("--checkpoint-every-minutes", type=float, default=10.0, show_default=True),
        click.option("--log-every", type=int, default=10, show_default=True, help="Steps per log line."),
        click.option("--no-augment", is_flag=True, help="Disable brightness/contrast/gain jitter."),
        click.option("--threads", type=int, default=2, show_default=True, help="torch CPU threads."),
        click.option("--resume", is_flag=True, help="Continue from <out>/checkpoint/."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


DEFAULT_LR = {"teacher": 4e-4, "student": 8e-4}


def _options(preset, kwargs):
    from auditor_lite.training.train import TrainOptions

    lr = kwargs.pop("lr") or DEFAULT_LR.get(preset, 5e-4)
    return TrainOptions(
        preset=preset, overrides=_overrides(kwargs.pop("overrides")), lr=lr,
        augment=not kwargs.pop("no_augment"), progress=not kwargs.pop("quiet"), **kwargs)


def _report(summary: dict) -> None:
    val = summary.get("val") or {}
    click.echo(f"{summary['preset']}: {summary['parameters']:,} parameters (MiniLM excluded), "
               f"{summary['steps']} steps in {summary['minutes']} min ({summary['stop_reason']})")
    if val:
        click.echo(f"held-out: IoU RMSE {val['iou_rmse']:.4f}, type acc {val['type_acc']:.3f}, "
                   f"action acc {val['action_acc']:.3f} (best step {summary['best_step']})")


@click.command("train")
@click.option("--preset", type=click.Choice(["teacher", "student"]), default="teacher", show_default=True)
@_training_options
def train(preset, **kwargs):
    """Train an auditor preset on the benchmark's train split (ground-truth losses)."""
    from auditor_lite.data.schema import DataError
    from auditor_lite.training.train import Trainer

    try:
        _report(Trainer(_options(preset, kwargs)).run())
    except (DataError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("distill")
@click.option("--teacher", "teacher_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Trained teacher model directory.")
@click.option("--teacher-pred", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Predictions JSONL of the train split as teacher (output-level terms only).")
@click.option("--preset", type=click.Choice(["teacher", "student"]), default="student", show_default=True)
@click.option("--temperature", type=float, default=2.0, show_default=True)
@click.option("--kd-iou", type=float, default=5.0, show_default=True, help="Weight of the teacher-IoU MSE.")
@click.option("--kd-soft", type=float, default=1.0, show_default=True, help="Weight of each KL term.")
@click.option("--kd-query", type=float, default=1.0, show_default=True, help="Weight of the query hint.")
@click.option("--kd-context", type=float, default=0.5, show_default=True, help="Weight of the context hint.")
@click.option("--gt-weight", type=float, default=1.0, show_default=True, help="Weight of the GT losses.")
@click.option("--pred-smoothing", type=float, default=0.1, show_default=True,
              help="Label smoothing of a --teacher-pred class given without probabilities.")
@_training_options
def distill(teacher_dir, teacher_pred, preset, temperature, kd_iou, kd_soft, kd_query, kd_context,
            gt_weight, pred_smoothing, **kwargs):
    """Distil the student from a teacher model (--teacher) or predictions (--teacher-pred)."""
    from auditor_lite.data.schema import DataError
    from auditor_lite.training.distill import Distiller
    from auditor_lite.training.losses import DistillWeights

    weights = DistillWeights(ground_truth=gt_weight, iou=kd_iou, soft_labels=kd_soft, query=kd_query,
                             context=kd_context, temperature=temperature)
    try:
        distiller = Distiller(_options(preset, kwargs), teacher_dir, teacher_pred, weights, pred_smoothing)
        _report(distiller.run())
    except (DataError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("predict")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Trained model directory (config.json + model.safetensors).")
@click.option("--bench", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Predictions JSONL to write.")
@click.option("--split", "splits", multiple=True, type=click.Choice(["test_s", "test_u"]),
              help="Only these splits (repeatable) [default: all present].")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["image", "video"]),
              help="Only these modes (repeatable) [default: all present].")
@click.option("--silence-audio", is_flag=True, help="Ablation: zero waveform (method name gets a suffix).")
@click.option("--batch-masks", type=int, default=64, show_default=True, help="Masks per audit call.")
@click.option("--method", default=None, help="Method name in the file [default: auditor-lite-<preset>].")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def predict(model_dir, bench, out_file, splits, modes, silence_audio, batch_masks, method, threads, quiet):
    """Audit every test candidate and write the evaluation JSONL (docs/predictions.md)."""
    from auditor_lite.data.schema import DataError
    from auditor_lite.training.predict import predict as run_predict

    try:
        counts = run_predict(model_dir, bench, out_file, splits or None, modes or None, silence_audio,
                             batch_masks, method, threads, progress=not quiet)
    except (DataError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    for pair, n in counts.items():
        click.echo(f"{pair}: {n} predictions")
    click.echo(f"wrote {sum(counts.values())} predictions to {out_file}")
