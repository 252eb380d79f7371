"""The edge auditor: load a model directory, then audit candidate masks. Imports no torch.

    from auditor_lite.runtime import Auditor
    auditor = Auditor.load("path/to/model_dir")            # verifies hashes and graph contracts
    results = auditor.audit(frames, audio, "the barking dog", masks, frame_index=3)
    print(auditor.backend, results[0].explanation)

``Auditor.load`` opens the directory as a :class:`~auditor_lite.runtime.model_dir.ModelDirectory`
(files against ``manifest.json``, ``config.json`` and the tokenizer against the graphs' contract,
each refusal naming the file and field), then opens its graphs with a backend
(:mod:`auditor_lite.runtime.backends`) and checks each against the contract. One loaded auditor may serve any
number of threads: ONNX Runtime sessions are thread-safe, the text cache is locked, and each
``audit`` call works in its own :class:`~auditor_lite.runtime.session.ClipSession`.
"""

from __future__ import annotations

import os

import numpy as np

from auditor_lite.data.schema import SAMPLE_RATE
from auditor_lite.graph_io import CONTEXT_OUTPUT, HEAD_OUTPUTS
from auditor_lite.parallel import worker_count
from auditor_lite.runtime.backends import Backend, OnnxRuntimeBackend
from auditor_lite.runtime.model_dir import (AUDITOR_GRAPHS, DEFAULT_MODEL_DIR, PRECISIONS,  # noqa: F401
                                            ModelDirectory, ModelNotFoundError, resolve_model_dir)
from auditor_lite.runtime.results import AuditResult
from auditor_lite.runtime.session import ClipSession
from auditor_lite.runtime.text import TextEmbedder

PRECISION_CHOICES = ("auto",) + PRECISIONS


class Auditor:
    """A loaded model directory and its opened graphs. Use :meth:`load`; see the module docstring."""

    def __init__(self, model: ModelDirectory, precision: str, graphs: dict, text: TextEmbedder,
                 backend: Backend):
        self.model = model
        self.precision = precision
        self.graphs = graphs          # "context" (once per clip and frame) + "masks" (per call)
        self.text = text
        self.backend_impl = backend
        self.provider = graphs["masks"].provider
        self.backend = f"{graphs['masks'].backend_name}, {precision}"

    # the model directory's parts, under the names callers have used
    model_dir = property(lambda self: self.model.path)
    manifest = property(lambda self: self.model.manifest)
    config = property(lambda self: self.model.config)
    calibration = property(lambda self: self.model.score_calibration)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path=None, precision: str = "auto", providers: list[str] | None = None,
             intra_op_threads: int | None = None, verify: bool = True,
             backend: Backend | None = None) -> "Auditor":
        """Load and verify a model directory (default: the packaged INT8 model).

        ``precision``: ``auto`` (the manifest's ``default_precision`` when its graph is there, else
        ``fp32``), or ``fp32`` / ``int8-cpu`` / ``int8-trt``. ``backend``: what runs the graphs
        (default: ONNX Runtime with ``providers``, or the best available, and ``intra_op_threads``,
        default the number of CPUs). ``verify=False`` skips the SHA-256 check (existence is still
        checked). ``path`` may also be an opened :class:`ModelDirectory`.
        """
        if precision not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
        backend = backend or OnnxRuntimeBackend(providers, intra_op_threads)
        model = path if isinstance(path, ModelDirectory) else ModelDirectory.open(path, verify=verify)
        precision = model.pick_precision(precision)
        graphs = {name: cls._open_graph(model, backend, name, precision) for name in AUDITOR_GRAPHS}
        text_graph = cls._open_graph(model, backend, "text_encoder", model.text_precision(precision))
        return cls(model, precision, graphs, TextEmbedder(model.tokenizer, text_graph), backend)

    @staticmethod
    def _open_graph(model: ModelDirectory, backend: Backend, name: str, precision: str | None):
        precision, path = model.graph_path(name, precision)
        # the file's SHA-256 as the manifest lists it (checked at open): the optimised-graph cache key
        fingerprint = model.manifest.data["files"][model.manifest.graphs[name][precision]]["sha256"]
        graph = backend.open(path, precision, fingerprint)
        model.check_graph(name, precision, graph.input_specs(), graph.output_specs())
        return graph

    @property
    def preprocess_threads(self) -> int:
        """Threads a session resizes a clip's frames and masks with: the backend's intra-op threads
        (ONNX Runtime's default: the CPUs), at most ``os.cpu_count()``; 1 for a backend that does
        not say. Preprocessing runs before the graphs in the same call, never alongside them, and
        ONNX Runtime's threads do not spin between runs here (backends.py), so the two do not
        oversubscribe the cores."""
        threads = getattr(self.backend_impl, "intra_op_threads", 1)
        return worker_count(threads or os.cpu_count())

    # ------------------------------------------------------------------ running graphs
    def calibrate(self, raw_iou: np.ndarray, predicted_types=None):
        """Raw graph IoU -> ``(iou, low, high)``; the identity and no interval without calibration.
        ``predicted_types`` select per-type interval widths where the calibration has them."""
        if self.calibration is None:
            return raw_iou, None, None
        return self.calibration.apply(raw_iou, predicted_types)

    def run_context(self, feed: dict) -> np.ndarray:
        return self.graphs["context"].run(feed, [CONTEXT_OUTPUT])[0]

    def run_masks(self, context: np.ndarray, masks: np.ndarray, key_frame: np.ndarray):
        return self.graphs["masks"].run({"context": context, "masks": masks, "key_frame": key_frame},
                                        list(HEAD_OUTPUTS))

    # ------------------------------------------------------------------ public API
    def embed_text(self, expression: str) -> np.ndarray:
        """The expression's 384-d embedding (cached per expression string)."""
        return self.text.embed(expression)

    def session(self, expression: str, frames=None, audio=None, *, sample_rate: int = SAMPLE_RATE,
                allow_silent: bool = False, context_cache: int = 10, prepared: dict | None = None) -> ClipSession:
        """A :class:`ClipSession` for auditing many masks (and frames) of one clip (``prepared``:
        the clip's tensors, already prepared by the caller: :meth:`ClipSession._adopt`)."""
        return ClipSession(self, expression, frames, audio, sample_rate=sample_rate,
                           allow_silent=allow_silent, context_cache=context_cache, prepared=prepared)

    def audit(self, frames, audio, expression: str, masks, *, frame_index: int,
              sample_rate: int = SAMPLE_RATE, allow_silent: bool = False) -> list[AuditResult]:
        """Audit candidate ``masks`` of frame ``frame_index`` of a clip.

        ``frames``: uint8 (10, H, W, 3) (or float in [0, 1]); ``audio``: mono float samples at 16 kHz
        (1 to 10 s); ``masks``: (H, W) or a list / (N, H, W) of binary masks of that frame. There is
        no default ``frame_index``: the model's context includes the audited frame, and guessing it
        would silently audit the masks against the wrong picture.
        """
        clip = self.session(expression, frames, audio, sample_rate=sample_rate, allow_silent=allow_silent)
        return clip.audit(masks, frame_index)

    def __repr__(self) -> str:
        return f"Auditor({str(self.model_dir)!r}, backend={self.backend!r})"
