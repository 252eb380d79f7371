"""``export onnx``: a checkpoint -> a model directory, the unit of deployment (docs/artifact.md).

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
from time import perf_counter

from auditor_lite.export.contract import AUDITOR_GRAPHS, auditor_contract, text_encoder_contract
from auditor_lite.export.exporter import (DEFAULT_TOLERANCES, ExportError, check_opset, compare_with_torch,
                                          export_auditor_graph, load_checkpoint)
from auditor_lite.export.onnx_config import DEFAULT_OPSET
from auditor_lite.manifest import MANIFEST_FILE, sha256_file, write_manifest

GRAPH_FILES = {"auditor": "auditor.onnx", "context": "context.onnx", "masks": "masks.onnx"}
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
    """Export ``checkpoint`` into the model directory ``out`` (FP32 graphs, text encoder, manifest).

    Raises ExportError when an ONNX output differs from torch by more than its tolerance
    (``DEFAULT_TOLERANCES``, overridable per output), leaving ``out`` untouched.
    """
    if text_precision not in TEXT_PRECISIONS:
        raise ExportError(f"text_precision {text_precision!r}: expected one of {TEXT_PRECISIONS}")
    checkpoint, out = Path(checkpoint), Path(out)
    if (checkpoint / "scorer_config.json").is_file():      # a grounded checkpoint (stage A + B)
        from auditor_lite.export.grounded import export_grounded_dir

        return export_grounded_dir(checkpoint, out, opset=opset, text_precision=text_precision,
                                   overwrite=overwrite, name=name, with_text=with_text)
    opset = check_opset(opset)
    model = load_checkpoint(checkpoint)
    summary = ExportSummary(out=out)
    with staged_directory(out, overwrite) as staging:
        model.config.to_json_file(str(staging / "config.json"))
        graph_files = {}
        for graph in AUDITOR_GRAPHS:
            graph_files[graph] = staging / GRAPH_FILES[graph]
            summary.seconds[graph] = export_auditor_graph(model, graph, graph_files[graph], opset)
        start = perf_counter()
        summary.comparison = compare_with_torch(model, graph_files, tolerances=tolerances)
        summary.seconds["compare"] = perf_counter() - start
        failed = [r for r in summary.comparison if not r["ok"]]
        if failed:
            worst = max(failed, key=lambda r: r["max_abs_diff"] / max(r["tolerance"], 1e-30))
            raise ExportError(f"{out / GRAPH_FILES[worst['graph'].split('+')[-1]]}: ONNX Runtime "
                              f"differs from torch beyond tolerance in {len(failed)} check(s); worst "
                              f"{worst['output']} N={worst['num_masks']}: {worst['max_abs_diff']:.2e} "
                              f"> {worst['tolerance']:.0e}", comparison=summary.comparison)
        graphs = {graph: {"fp32": GRAPH_FILES[graph]} for graph in AUDITOR_GRAPHS}
        contract = {graph: auditor_contract(model.config, graph) for graph in AUDITOR_GRAPHS}
        if with_text:
            graphs["text_encoder"] = _export_text(staging, opset, text_precision, summary)
            contract["text_encoder"] = text_encoder_contract(_vocab_size(staging))
        weights = checkpoint / "model.safetensors"
        export_info = {
            "opset": opset, "exporter": "optimum.exporters.onnx.export (TorchScript)",
            "source": {"checkpoint": checkpoint.name,
                       "weights_sha256": sha256_file(weights) if weights.is_file() else None},
            "tolerances": {**DEFAULT_TOLERANCES, **(tolerances or {})},
            "torch_vs_onnxruntime": summary.comparison,
            "text_encoder": summary.text,
        }
        summary.manifest = write_manifest(staging, name=name or f"auditor-lite-{model.config.preset_name}",
                                          graphs=graphs, contract=contract, default_precision="fp32",
                                          extra={"export": export_info})
    return summary


def _vocab_size(model_dir: Path) -> int:
    """Vocabulary size of the exported tokenizer (the ``input_ids`` range in the contract)."""
    vocab = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    return len(vocab)
