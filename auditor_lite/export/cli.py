"""``auditor-lite export``: ``onnx`` (checkpoint -> model directory), ``trt`` (TensorRT engine) and,
from the calibration package, ``int8`` (quantized graphs). See docs/export.md."""

from __future__ import annotations

from pathlib import Path

import click

from auditor_lite.cli import LazyGroup


class _ExportGroup(LazyGroup):
    """A LazyGroup whose lazy commands may be missing from an install: ``int8`` lives in
    ``auditor_lite.calibration``; where that module does not exist, ``export --help`` still works and
    ``export int8`` is an unknown command. An import error inside an existing module is raised."""

    def get_command(self, ctx, name):
        try:
            return super().get_command(ctx, name)
        except ModuleNotFoundError as exc:
            module_name = self.lazy_commands.get(name, "").split(":")[0]
            if exc.name and module_name.startswith(exc.name):
                return None
            raise


@click.group(cls=_ExportGroup, lazy_commands={"int8": "auditor_lite.calibration.cli:int8"})
def export():
    """Export a trained auditor for deployment (ONNX model directory, INT8, TensorRT)."""


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


@export.command("onnx")
@click.option("--model", "checkpoint", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Grounded checkpoint directory (what `train-grounding` + `train-scorer` wrote).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model directory to write (config.json, *.onnx, tokenizer.json, manifest.json).")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset, 17 to 20.")
@click.option("--no-text", is_flag=True, help="Skip the MiniLM text encoder and tokenizer.")
@click.option("--text-precision", type=click.Choice(["auto", "fp32", "int8", "both"]), default="auto",
              show_default=True,
              help="Text encoder files to ship; auto: int8 alone if its min cosine to torch >= 0.99.")
@click.option("--name", default=None, help="Model name in manifest.json [auditor-lite-grounded].")
@click.option("--iou-tol", default=1e-4, show_default=True, help="Max |ORT - torch| for iou.")
@click.option("--logit-tol", default=1e-3, show_default=True,
              help="Max |ORT - torch| for type/action logits.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory at --out.")
def onnx_cmd(checkpoint, out, opset, no_text, text_precision, name, iou_tol, logit_tol, overwrite):
    """Export CHECKPOINT's graphs to ONNX, check them against torch, write the model directory."""
    from auditor_lite.export.exporter import ExportError, format_comparison
    from auditor_lite.export.model_dir import export_model_dir
    from auditor_lite.model.text import TextEncoderUnavailable

    tolerances = {"iou": iou_tol, "type_logits": logit_tol, "action_logits": logit_tol}
    try:
        summary = export_model_dir(checkpoint, out, opset=opset, with_text=not no_text,
                                   text_precision=text_precision, overwrite=overwrite, name=name,
                                   tolerances=tolerances)
    except ExportError as exc:
        if exc.comparison:
            click.echo(format_comparison(exc.comparison), err=True)
        raise click.ClickException(str(exc)) from None
    except TextEncoderUnavailable as exc:
        raise click.ClickException(f"{exc} (or pass --no-text)") from None
    click.echo(format_comparison(summary.comparison))
    click.echo("\nexport seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.seconds.items()))
    for precision, report in (summary.text or {}).items():
        click.echo(f"text_encoder {precision}: min cosine to torch {report['min_cosine']:.4f} "
                   f"(mean {report['mean_cosine']:.4f}, {report['expressions']} expressions), "
                   f"{report['median_ms']:.1f} ms/expression, {_mb(report['bytes'])}")
    click.echo("files: " + ", ".join(f"{n} {_mb(b)}" for n, b in summary.sizes.items()))
    click.echo(f"wrote {out}")


@export.command("trt")
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model directory (from `export onnx` / `export int8`).")
@click.option("--out", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also copy the engine here.")
@click.option("--graph", default="masks", show_default=True,
              type=click.Choice(["context", "masks", "text_encoder"]))
@click.option("--precision", default=None, type=click.Choice(["int8-trt", "fp32"]),
              help="Graph flavour [int8-trt if the directory has it, else fp32].")
@click.option("--mask-counts", "mask_profile", default="1,13,64", show_default=True,
              help="Optimisation profile MIN,OPT,MAX for the mask batch N.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Engine and timing cache [$AUDITOR_LITE_CACHE/tensorrt or ~/.cache/auditor-lite/tensorrt].")
def trt_cmd(model_dir, out, graph, precision, mask_profile, cache_dir):
    """Build a TensorRT engine for one graph of a model directory (prints the trtexec equivalent)."""
    from auditor_lite.export import tensorrt as trt_build
    from auditor_lite.export.trt_checks import check_tensorrt_graph
    from auditor_lite.manifest import ManifestError, load_manifest

    try:
        profile = tuple(int(v) for v in mask_profile.split(","))
        if len(profile) != 3:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected MIN,OPT,MAX integers, got {mask_profile!r}",
                                 param_hint="--mask-counts") from None
    try:
        manifest = load_manifest(model_dir)
        if precision is None:
            precision = "int8-trt" if "int8-trt" in manifest.precisions(graph) else "fp32"
        precision, onnx_path = manifest.graph_file(graph, precision)
        shapes = trt_build.profile_shapes(manifest.contract[graph], {"N": profile})
    except (ManifestError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    problems = check_tensorrt_graph(onnx_path)
    if problems:
        raise click.ClickException(f"{onnx_path}: not buildable by TensorRT:\n  " + "\n  ".join(problems))

    file_name = manifest.graphs[graph][precision]
    plan = trt_build.plan_engine(onnx_path, manifest.data["files"][file_name]["sha256"], shapes=shapes,
                                 cache_dir=cache_dir or trt_build.default_cache_dir(),
                                 label=f"{manifest.name}-{graph}-{precision}")
    click.echo("equivalent trtexec command:\n  " + plan.trtexec(out))
    if plan.tensorrt_version is None:
        note = (" (written for TensorRT 10.x; on 8.6 use --int8 --fp16 instead of --stronglyTyped)"
                if plan.mode == "strongly-typed" else "")
        raise click.ClickException("TensorRT is not installed, so no engine was built" + note +
                                   ". Install it on a machine with an NVIDIA GPU (`pip install "
                                   "tensorrt`) or run the trtexec command above.")
    try:
        engine, built = trt_build.build_planned(plan)
    except (trt_build.TensorRTUnavailable, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'built' if built else 'reused cached'} engine {engine} (TensorRT "
               f"{plan.tensorrt_version}, {plan.mode})")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(engine.read_bytes())
        click.echo(f"copied to {out}")


@export.command("slim")
@click.option("--model", "model_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A complete model directory (from 'export int8').")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the trimmed copy.")
@click.option("--keep", multiple=True, default=("int8-cpu",), show_default=True,
              type=click.Choice(["fp32", "int8-cpu", "int8-trt"]),
              help="Precision(s) to keep (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory at --out.")
def slim_cmd(model_dir: Path, out: Path, keep: tuple[str, ...], overwrite: bool):
    """Copy a model directory keeping only the graphs of the given precisions (re-hashed manifest)."""
    from auditor_lite.export.slim import slim_model_dir
    from auditor_lite.manifest import ManifestError

    try:
        manifest = slim_model_dir(model_dir, out, keep=keep, overwrite=overwrite)
    except (ManifestError, FileExistsError) as err:
        raise click.ClickException(str(err)) from None
    total = sum(f["bytes"] for f in manifest["files"].values())
    click.echo(f"wrote {out}: {len(manifest['files'])} files, {_mb(total)}; graphs "
               + ", ".join(f"{g}: {'/'.join(p)}" for g, p in manifest["graphs"].items()))
