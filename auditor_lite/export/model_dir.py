"""``export onnx``: a grounded checkpoint -> a model directory, the unit of deployment
(docs/artifact.md). The graphs themselves are exported by :mod:`auditor_lite.export.grounded`.

The directory is built next to its destination (``.NAME.partial``) and renamed into place only when
every graph has been exported and checked against torch, so a failed export never leaves a
half-written model directory behind.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from auditor_lite.export.exporter import ExportError
from auditor_lite.export.onnx_config import DEFAULT_OPSET
from auditor_lite.manifest import MANIFEST_FILE

TEXT_PRECISIONS = ("auto", "fp32", "int8", "both")


@dataclass
class ExportSummary:
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)   # step -> seconds
    comparison: list[dict] = field(default_factory=list)      # compare_with_torch rows
    text: dict | None = None                                  # measure_text_encoders report
    manifest: dict | None = None

    @property
    def sizes(self) -> dict[str, int]:
        return {name: entry["bytes"] for name, entry in self.manifest["files"].items()}


def _prepare_destination(out: Path, overwrite: bool) -> Path:
    """Check that ``out`` may be (re)written; returns the empty staging directory to build in."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ExportError(f"{out}: exists and is not empty; pass --overwrite to replace a model "
                              "directory")
        if not (out / MANIFEST_FILE).is_file():
            raise ExportError(f"{out}: --overwrite replaces only a model directory (one with "
                              f"{MANIFEST_FILE}); refusing to delete anything else")
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)  # a previous export that failed half-way
    staging.mkdir(parents=True)
    return staging


@contextmanager
def staged_directory(out: Path, overwrite: bool):
    """Build a model directory in ``.NAME.partial`` next to ``out``; move it into place only when the
    block finishes, and delete it if the block raises (a failed export leaves ``out`` untouched)."""
    staging = _prepare_destination(out, overwrite)
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _export_text(staging: Path, opset: int, text_precision: str, summary: ExportSummary) -> dict:
    """Text encoder graph(s) and tokenizer.json; returns ``{precision: file}`` for the manifest."""
    from auditor_lite.export import text_encoder as te
    from auditor_lite.model.text import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    texts = te.sample_expressions()
    fp32, int8 = staging / te.TEXT_FP32_FILE, staging / te.TEXT_INT8_FILE
    te.export_tokenizer(encoder, staging / te.TOKENIZER_FILE, texts)
    summary.seconds["text_encoder"] = te.export_text_encoder(encoder, fp32, opset)
    files = {"fp32": fp32}
    if text_precision != "fp32":
        summary.seconds["text_encoder_int8"] = te.quantize_text_encoder(fp32, int8)
        files["int8-cpu"] = int8
    summary.text = te.measure_text_encoders(encoder, staging / te.TOKENIZER_FILE, files, texts)
    fp32_cosine = summary.text["fp32"]["min_cosine"]
    if fp32_cosine < 0.9999:
        raise ExportError(f"{fp32}: FP32 text encoder disagrees with torch (min cosine {fp32_cosine:.6f})")
    keep = {"fp32": ["fp32"], "int8": ["int8-cpu"], "both": ["fp32", "int8-cpu"]}.get(text_precision)
    if keep is None:  # auto: the int8 encoder alone if it is faithful enough, else fp32 alone
        good = summary.text["int8-cpu"]["min_cosine"] >= te.INT8_MIN_COSINE
        keep = ["int8-cpu"] if good else ["fp32"]
    for precision, path in files.items():
        if precision not in keep:
            path.unlink()
    return {precision: files[precision].name for precision in keep}


def export_model_dir(checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET,
                     with_text: bool = True, text_precision: str = "auto", overwrite: bool = False,
                     name: str | None = None, tolerances: dict | None = None) -> ExportSummary:
    """Export the grounded ``checkpoint`` (``train-grounding`` + ``train-scorer`` output) into the
    model directory ``out`` (FP32 graphs, text encoder, manifest).

    Raises ExportError when an ONNX output differs from torch by more than its tolerance
    (``grounded.TOLERANCES``, overridable per output), leaving ``out`` untouched.
    """
    from auditor_lite.export.grounded import export_grounded_dir

    if text_precision not in TEXT_PRECISIONS:
        raise ExportError(f"text_precision {text_precision!r}: expected one of {TEXT_PRECISIONS}")
    return export_grounded_dir(Path(checkpoint), Path(out), opset=opset, text_precision=text_precision,
                               overwrite=overwrite, name=name, with_text=with_text, tolerances=tolerances)


def _vocab_size(model_dir: Path) -> int:
    """Vocabulary size of the exported tokenizer (the ``input_ids`` range in the contract)."""
    vocab = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    return len(vocab)
