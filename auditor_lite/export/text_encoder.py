"""Export the MiniLM text encoder (its own graph), its tokenizer, and a weight-INT8 copy.

The FP32 graph is about 90 MB, most of it the 30k-token embedding table and six BERT layers, so
:func:`quantize_text_encoder` also writes ``text_encoder.int8.onnx`` with ONNX Runtime's dynamic
quantization (per-channel S8 weights, activations quantized at run time; CPU only; about 34 MB).
:func:`measure_text_encoders` compares both with the torch encoder on real-looking expressions
(every phrasing template of ``auditor_lite/data/phrasing``, filled in) by cosine similarity, and
times them.
"""

from __future__ import annotations

import logging
import re
import statistics
from pathlib import Path
from time import perf_counter

import numpy as np

from auditor_lite.export.contract import text_encoder_contract
from auditor_lite.export.exporter import ExportError, check_opset, export_with_optimum
from auditor_lite.export.onnx_config import DEFAULT_OPSET, MiniLMOnnxConfig
from auditor_lite.export.wrappers import TextEncoderOnnx

TEXT_FP32_FILE = "text_encoder.onnx"
TEXT_INT8_FILE = "text_encoder.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
INT8_MIN_COSINE = 0.99  # the int8 encoder replaces the fp32 one only at or above this (worst case)
# Slot fillers for the phrasing templates, cycled so that consecutive templates differ.
_FFN_DOWN = re.compile(r"layer\.\d+/output/dense/MatMul$")  # exporter node names of BERT's FFN output
_SLOTS = {"cat": ("guitar", "man", "violin", "dog", "piano", "woman", "cello", "baby"),
          "anchor": ("woman", "drum", "saxophone", "man", "car", "accordion"),
          "dir": ("left", "right"), "depth": ("in front of", "behind"),
          "color": ("red", "black", "white", "brown"), "size": ("biggest", "small")}


def sample_expressions(limit: int | None = None) -> list[str]:
    """Every phrasing template filled with fixed slot values, deterministically ordered."""
    from auditor_lite.data.phrasing import load_phrasing

    texts = []
    for _, form in sorted(load_phrasing()["forms"].items()):
        for template in form["templates"]:
            i = len(texts)
            texts.append(re.sub(r"\{(\w+)\}",
                                lambda m: _SLOTS[m.group(1)][i % len(_SLOTS[m.group(1)])],
                                template["text"]))
    return texts[:limit] if limit else texts


def export_tokenizer(encoder, path: Path, check_texts: list[str]) -> None:
    """Write the MiniLM ``tokenizer.json`` set up as the torch encoder uses it.

    The packaged file pads every text to 128 tokens and truncates at 128; the training path pads
    nothing (one text at a time) and truncates at ``MAX_TOKENS`` (256). The exported file does the
    same, so ``Tokenizer.from_file(...).encode(text)`` gives the runtime the training ids.
    """
    from tokenizers import Tokenizer

    from auditor_lite.model.text import MAX_TOKENS

    tokenizer = Tokenizer.from_file(str(encoder.model_dir / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.save(str(path))
    reloaded = Tokenizer.from_file(str(path))
    too_long = " ".join(["the violin on the left of the man"] * 40)  # > MAX_TOKENS: truncation
    for text in [*check_texts, too_long]:
        expected = encoder.tokenize([text])["input_ids"][0].tolist()
        if reloaded.encode(text).ids != expected:
            raise ExportError(f"{path}: tokenizes {text[:60]!r} differently from the torch tokenizer")


def export_text_encoder(encoder, path: str | Path, opset: int = DEFAULT_OPSET) -> float:
    """Export the FP32 text encoder graph; returns seconds taken."""
    wrapper = TextEncoderOnnx(encoder).eval()
    config = encoder.bert.config
    return export_with_optimum(wrapper, MiniLMOnnxConfig(config), Path(path), check_opset(opset),
                               text_encoder_contract(config.vocab_size),
                               {"sequence_length": 16}, {"sequence_length": 9})


def int8_nodes(model) -> tuple[list[str], list[str]]:
    """``(quantized, kept_fp32)`` node names for :func:`quantize_text_encoder`.

    Quantized: every MatMul with a weight initializer and the embedding-table Gathers. Kept FP32:
    the feed-forward down-projections (``layer.K/output/dense``), whose inputs (GELU outputs) hold
    BERT's activation outliers, which per-tensor dynamic activation quantization resolves poorly.
    Measured on the phrasing expressions: min cosine to torch 0.987 with them quantized, 0.9945
    without (ONNX Runtime 1.32, per-channel S8 weights).
    """
    weights = {init.name for init in model.graph.initializer}
    quantized, kept = [], []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            (kept if _FFN_DOWN.search(node.name) else quantized).append(node.name)
        elif node.op_type == "Gather" and node.input[0] in weights:
            quantized.append(node.name)
    return quantized, kept


def quantize_text_encoder(fp32_path: str | Path, int8_path: str | Path) -> float:
    """ONNX Runtime dynamic quantization, per-channel S8 weights (see :func:`int8_nodes`); returns
    seconds taken."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    start = perf_counter()
    quantized, _ = int8_nodes(onnx.load(str(fp32_path), load_external_data=False))
    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_quantize=quantized)
    finally:
        logging.getLogger().removeFilter(hint)
    return perf_counter() - start


class _DropPreprocessHint(logging.Filter):
    """ONNX Runtime's quantizer advises ``quant_pre_process`` on the root logger at every call. That
    pre-processing fails on this graph (its symbolic shape inference cannot broadcast
    ``Min(512, T)``), and per-channel weight quantization of MatMul/Gather does not need it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def measure_text_encoders(encoder, tokenizer_path: Path, graph_files: dict[str, Path],
                          texts: list[str]) -> dict[str, dict]:
    """Per precision: cosine similarity with the torch encoder (min, mean), max abs difference,
    median latency per expression (ms, ONNX Runtime CPU) and file size."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    if not texts:
        raise ValueError("measure_text_encoders: no texts")
    reference = encoder.encode(texts).numpy()
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    feeds = []
    for text in texts:
        encoded = tokenizer.encode(text)
        feeds.append({"input_ids": np.array([encoded.ids], dtype=np.int64),
                      "attention_mask": np.array([encoded.attention_mask], dtype=np.int64)})
    report = {}
    for precision, path in graph_files.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        session.run(None, feeds[0])  # warm-up: first-run allocations are not per-call cost
        embeddings, times = [], []
        for feed in feeds:
            start = perf_counter()
            (embedding,) = session.run(["text_embedding"], feed)
            times.append(perf_counter() - start)
            embeddings.append(embedding[0])
        got = np.stack(embeddings)
        cosine = np.sum(got * reference, axis=1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
        report[precision] = {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
                             "max_abs_diff": float(np.abs(got - reference).max()),
                             "median_ms": 1000 * statistics.median(times),
                             "bytes": Path(path).stat().st_size, "expressions": len(texts)}
    return report
