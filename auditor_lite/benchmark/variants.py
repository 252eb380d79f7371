"""The things the benchmark times: one model directory run every way it can be deployed.

Every variant goes through the production path of :mod:`auditor_lite.runtime` -- a
:class:`~auditor_lite.runtime.ClipSession` over decoded uint8 frames, float audio, the expression
string (its embedding cached, as the runtime caches it) and boolean masks, returning
``AuditResult`` objects -- so what is timed is what an edge box runs. Layouts:

* ``fused``: the context graph once, then the masks graph once for all N masks: the production
  path (``Auditor.audit``); a fresh session per clip.
* ``naive``: the context re-encoded for every mask (a session without a context cache), which is
  how the reference MQ-Auditor scores candidates (one generation per mask). The preprocessed
  frames and audio are shared by the per-mask calls, so the comparison with ``fused`` isolates the
  graph work.
* ``alone``: every mask audited as if it were the only one, a fresh session per mask: the clip's
  whole per-clip work (frames, log-mel, cell motion, context graph) redone for each, the text
  embedding cached. Against ``fused`` its ceiling is N x (the fast-core issue's "naive", written
  when the log-mel was still inside the context graph).
* ``cached``: a warm ``ClipSession`` whose context for the frame is already encoded: each call
  runs the masks graph only (more masks of an already audited frame; streaming use).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from auditor_lite.data.schema import DataError

SAMPLE_CLIP = Path(__file__).resolve().parent.parent / "assets" / "sample_clip"
CPU = ["CPUExecutionProvider"]
CPU_PRECISIONS = ("fp32", "int8-cpu")
LAYOUTS = ("fused", "naive", "alone", "cached")


# ----------------------------------------------------------------------------- the clip
@dataclass
class ClipInputs:
    """One decoded clip, as the runtime API takes it (decoding is not part of the timed path)."""

    frames: np.ndarray          # uint8 (10, H, W, 3)
    audio: np.ndarray           # float32 mono 16 kHz
    expression: str
    masks: list[np.ndarray]     # bool (H, W) candidates of frame ``frame_index``
    frame_index: int
    source: str = ""

    def masks_for(self, count: int) -> list[np.ndarray]:
        """``count`` candidate masks: the clip's own, cycled when it has fewer."""
        if count < 1:
            raise ValueError(f"masks per clip must be >= 1, got {count}")
        return [self.masks[i % len(self.masks)] for i in range(count)]

    def describe(self) -> dict:
        return {"source": self.source, "frame_size": list(self.frames.shape[1:3]),
                "audio_seconds": len(self.audio) / 16000, "expression": self.expression,
                "masks_available": len(self.masks), "frame_index": self.frame_index}


def load_clip(folder: Path = SAMPLE_CLIP) -> ClipInputs:
    """A clip folder in the sample-clip layout (frames/, audio.wav, expression.txt, masks/,
    truth.json with ``frame_index``), decoded by the runtime's own file loaders."""
    from auditor_lite.runtime import files

    folder = Path(folder)
    truth_path = folder / "truth.json"
    try:
        frame_index = int(json.loads(truth_path.read_text(encoding="utf-8"))["frame_index"])
    except FileNotFoundError:
        raise DataError(truth_path, "not found: a benchmark clip folder needs truth.json with frame_index") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(truth_path, f"no integer frame_index ({exc})", "frame_index") from None
    expression_path = folder / "expression.txt"
    if not expression_path.is_file():
        raise DataError(expression_path, "not found: the clip's referring expression")
    masks = files.load_mask_files(files.mask_dir_files(folder / "masks"))
    return ClipInputs(frames=files.load_frames_dir(folder / "frames"),
                      audio=files.load_audio_file(folder / "audio.wav"),
                      expression=expression_path.read_text(encoding="utf-8").strip(),
                      masks=[np.asarray(m, dtype=bool) for m in masks], frame_index=frame_index,
                      source=str(folder))


# ----------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One way of running the model: an engine/precision (``auditor``) in a ``layout``."""

    name: str
    engine: str                 # "onnxruntime cpu", "onnxruntime tensorrt-ep", ...
    precision: str
    layout: str
    auditor: object             # an Auditor
    warm_session: object = field(default=None, repr=False, init=False)  # the cached layout's session
    warm_clip: object = field(default=None, repr=False, init=False)     # ... and the clip it holds

    def prepare(self, clip: ClipInputs) -> None:
        """Make the ``cached`` layout's session and encode its context (other layouts: nothing)."""
        if self.layout == "cached":
            self.warm_session = self.auditor.session(clip.expression, clip.frames, clip.audio)
            self.warm_session.audit(clip.masks[:1], clip.frame_index)
            self.warm_clip = clip

    def call(self, clip: ClipInputs, masks: list[np.ndarray]):
        """Audit ``masks`` of the clip end to end; returns ``(results, session.stats)``."""
        if self.layout == "cached":
            if self.warm_clip is not clip:
                self.prepare(clip)
            session = self.warm_session
            return session.audit(masks, clip.frame_index), session.stats
        if self.layout == "naive":  # one context per mask; number the results as one call would
            session = self.auditor.session(clip.expression, clip.frames, clip.audio, context_cache=0)
            results = [replace(session.audit(mask, clip.frame_index)[0], index=i) for i, mask in enumerate(masks)]
            return results, session.stats
        if self.layout == "alone":  # a fresh session (and clip preparation) per mask
            results, stats = [], Counter()
            for i, mask in enumerate(masks):
                session = self.auditor.session(clip.expression, clip.frames, clip.audio)
                results.append(replace(session.audit(mask, clip.frame_index)[0], index=i))
                stats += session.stats
            return results, stats
        session = self.auditor.session(clip.expression, clip.frames, clip.audio)
        return session.audit(masks, clip.frame_index), session.stats

    def describe(self) -> dict:
        return {"name": self.name, "engine": self.engine, "precision": self.precision,
                "layout": self.layout, "backend": getattr(self.auditor, "backend", self.engine)}


def _short_engine(provider: str) -> str:
    return {"CPUExecutionProvider": "ort", "CUDAExecutionProvider": "ort-cuda",
            "TensorrtExecutionProvider": "ort-trt"}.get(provider, provider)


def onnx_variants(model_dir, precision: str, providers: list[str], threads: int,
                  layouts=LAYOUTS) -> list[Variant]:
    """The variants of one precision: one loaded auditor in each layout."""
    from auditor_lite.runtime import Auditor

    loaded = Auditor.load(model_dir, precision=precision, providers=providers, intra_op_threads=threads)
    engine = _short_engine(loaded.provider)
    return [Variant(f"{engine} {precision} {layout}", loaded.backend.split(",")[0], precision, layout, loaded)
            for layout in layouts]


def build_variants(model_dir, threads: int, gpu: bool = True,
                   layouts=LAYOUTS) -> tuple[list[Variant], list[str]]:
    """Every variant this machine and model directory allow, and a note for each one skipped."""
    import onnxruntime as ort

    from auditor_lite.manifest import load_manifest

    manifest = load_manifest(model_dir, verify=False)  # Auditor.load verifies the hashes below
    shipped = manifest.graphs.get("context", {}).keys() & manifest.graphs.get("masks", {}).keys()
    variants, notes = [], []
    for precision in CPU_PRECISIONS:
        if precision in shipped:
            variants += onnx_variants(model_dir, precision, CPU, threads, layouts)
        else:
            notes.append(f"{precision}: not in {model_dir} (build it with `auditor-lite export int8`)")
    available = ort.get_available_providers()
    if not gpu:
        notes.append("GPU variants: skipped (--no-gpu)")
        return variants, notes
    if "CUDAExecutionProvider" in available and "fp32" in shipped:
        cuda = onnx_variants(model_dir, "fp32", ["CUDAExecutionProvider", *CPU], threads, ("fused",))
        if cuda and cuda[0].name.startswith("ort-cuda"):
            variants += cuda
        else:  # ONNX Runtime fell back to the CPU: these would repeat the CPU variants
            notes.append("CUDA: the CUDAExecutionProvider did not start (ONNX Runtime fell back to CPU)")
    if "TensorrtExecutionProvider" not in available:
        notes.append("TensorRT: TensorrtExecutionProvider is not in this onnxruntime build")
    elif "int8-trt" not in shipped:
        notes.append(f"TensorRT: no int8-trt graph in {model_dir}")
    else:
        trt = onnx_variants(model_dir, "int8-trt", ["TensorrtExecutionProvider", "CUDAExecutionProvider", *CPU],
                            threads, ("fused", "naive"))
        if trt and not trt[0].name.startswith("ort-trt"):
            notes.append(f"TensorRT: the provider did not start; int8-trt ran on {trt[0].engine}")
        variants += trt
    return variants, notes
