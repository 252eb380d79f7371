"""The edge auditor: load a model directory, then audit candidate masks. Imports no torch.

    from auditor_lite.runtime import Auditor
    auditor = Auditor.load("path/to/model_dir")            # verifies hashes and graph contracts
    results = auditor.audit(frames, audio, "the barking dog", masks, frame_index=3)
    print(auditor.backend, results[0].explanation)

``Auditor.load`` refuses a directory whose files differ from ``manifest.json`` (size or SHA-256), a
graph whose inputs/outputs differ from the manifest's contract, and a ``config.json`` whose sizes
disagree with the graphs', each with an error naming the file. One loaded auditor may serve any
number of threads: ONNX Runtime sessions are thread-safe, the text cache is locked, and each
``audit`` call works in its own :class:`~auditor_lite.runtime.session.ClipSession`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from auditor_lite.data.schema import ACTIONS, MASK_TYPES, SAMPLE_RATE
from auditor_lite.manifest import ManifestError, check_graph_contract, load_manifest
from auditor_lite.runtime.backends import ModelFileError, OrtGraph, available_providers, choose_providers
from auditor_lite.runtime.results import AuditResult
from auditor_lite.runtime.session import ClipSession
from auditor_lite.runtime.text import TextEmbedder

PRECISION_CHOICES = ("auto", "fp32", "int8-cpu", "int8-trt")
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_model"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"


class ModelNotFoundError(FileNotFoundError):
    """No model directory where one was expected (e.g. the packaged default is not installed)."""


def _read_config(manifest) -> dict:
    """config.json fields the runtime needs, checked against the graphs' contract."""
    path = manifest.file(CONFIG_FILE)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"unreadable JSON ({exc})") from None
    config = {"mask_types": list(raw.get("mask_types") or MASK_TYPES),
              "actions": list(raw.get("actions") or ACTIONS),
              "architecture": raw.get("architecture", "auditor")}
    if config["architecture"] == "grounded":
        value = raw.get("max_tokens")
        if isinstance(value, bool) or not isinstance(value, int) or value < 3:
            raise ModelFileError(path, f"max_tokens must be an integer >= 3, got {value!r}", "max_tokens")
        config["max_tokens"] = value
    for name in ("frame_size", "key_size"):
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelFileError(path, f"{name} must be a positive integer, got {value!r}", name)
        config[name] = value
    # The graphs were exported at fixed sizes: preprocessing to other sizes would fail at run time
    # (or, for a graph that broadcasts, silently mis-read the input).
    contract = manifest.contract.get("context") or manifest.contract.get("auditor")
    shapes = {t["name"]: t["shape"] for t in contract["inputs"]} if contract else {}
    for field_name, tensor, axis in (("frame_size", "frames", -1), ("key_size", "key_frame", -1)):
        if tensor in shapes and shapes[tensor][axis] != config[field_name]:
            raise ModelFileError(path, f"{field_name} is {config[field_name]} but the graphs take "
                                 f"{tensor} of shape {shapes[tensor]}: config.json does not belong "
                                 "to these graphs", field_name)
    # the number of names must match the logits the graphs give, or results index past them
    scoring = manifest.contract.get("masks") or manifest.contract.get("auditor") or {}
    outputs = {t["name"]: t["shape"] for t in scoring.get("outputs", [])}
    for field_name, tensor in (("mask_types", "type_logits"), ("actions", "action_logits")):
        names = config[field_name]
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ModelFileError(path, f"{field_name} must be distinct non-empty names, got {names!r}", field_name)
        width = outputs.get(tensor, [None, None])[-1]
        if isinstance(width, int) and width != len(names):
            raise ModelFileError(path, f"{field_name} lists {len(names)} names but the graphs give {width} "
                                 f"{tensor}: config.json does not belong to these graphs", field_name)
    # the context graph of newer grounded models also reads the clip's cell motion (motion.py)
    config["cell_motion"] = "cell_motion" in shapes
    if bool(raw.get("cell_motion", False)) != config["cell_motion"]:
        raise ModelFileError(path, f"cell_motion is {raw.get('cell_motion', False)!r} but the context graph "
                             f"{'takes' if config['cell_motion'] else 'does not take'} a cell_motion input: "
                             "config.json does not belong to these graphs", "cell_motion")
    return config


def _check_vocabulary(manifest, text: TextEmbedder) -> None:
    """Token ids the tokenizer can produce must be rows of the text graph's embedding table."""
    inputs = {t["name"]: t for t in manifest.contract.get("text_encoder", {}).get("inputs", [])}
    limit = (inputs.get("input_ids", {}).get("range") or [None, None])[1]
    size = text.tokenizer.get_vocab_size(with_added_tokens=True)
    if isinstance(limit, (int, float)) and size > limit + 1:
        raise ModelFileError(manifest.file(TOKENIZER_FILE), f"vocabulary of {size} tokens but the text "
                             f"encoder takes ids up to {int(limit)}: the tokenizer does not belong to "
                             "this model", "vocabulary")


class Auditor:
    """A loaded model directory. Use :meth:`load`; see the module docstring."""

    def __init__(self, model_dir: Path, manifest, config: dict, precision: str, graphs: dict,
                 text: TextEmbedder, calibration):
        self.model_dir = model_dir
        self.manifest = manifest
        self.config = config
        self.precision = precision
        self.graphs = graphs          # "context" + "masks", or "auditor" (fused)
        self.split = "context" in graphs
        self.grounded = config["architecture"] == "grounded"   # stage A + stage B graphs
        self.text = text
        self.calibration = calibration
        layout = "split graphs (context + masks)" if self.split else "fused graph"
        self.provider = next(iter(graphs.values())).provider
        self.backend = f"{next(iter(graphs.values())).backend_name}, {precision}, {layout}"

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path=None, precision: str = "auto", providers: list[str] | None = None,
             intra_op_threads: int | None = None, verify: bool = True) -> "Auditor":
        """Load and verify a model directory (default: the packaged INT8 student).

        ``precision``: ``auto`` (the manifest's ``default_precision`` when its graph is there, else
        ``fp32``), or ``fp32`` / ``int8-cpu`` / ``int8-trt``. ``providers``: ONNX Runtime execution
        providers to use instead of the automatic choice. ``intra_op_threads`` defaults to the
        number of CPUs. ``verify=False`` skips the SHA-256 check (existence is still checked).
        """
        if precision not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
        model_dir = resolve_model_dir(path)
        manifest = load_manifest(model_dir, verify=verify)
        config = _read_config(manifest)
        precision = cls._pick_precision(manifest, precision)
        chosen = choose_providers(precision, available_providers(), providers)
        names = ("context", "masks") if cls._has_split(manifest, precision) else ("auditor",)
        graphs = {name: cls._open_graph(manifest, name, precision, chosen, intra_op_threads)
                  for name in names}
        text_precision = precision if precision in manifest.precisions("text_encoder") else None
        text_graph = cls._open_graph(manifest, "text_encoder", text_precision,
                                     choose_providers("fp32", available_providers(), providers),
                                     intra_op_threads)
        text = TextEmbedder(manifest.file(TOKENIZER_FILE), text_graph)
        _check_vocabulary(manifest, text)
        calibration = None
        calibration_path = manifest.optional_file("score_calibration")
        if calibration_path is not None:
            from auditor_lite.runtime.score_calibration import load_score_calibration

            calibration = load_score_calibration(calibration_path)
        return cls(model_dir, manifest, config, precision, graphs, text, calibration)

    @staticmethod
    def _has_split(manifest, precision: str) -> bool:
        return all(g in manifest.graphs and precision in manifest.graphs[g] for g in ("context", "masks"))

    @classmethod
    def _pick_precision(cls, manifest, precision: str) -> str:
        def usable(p):
            return p in manifest.graphs.get("auditor", {}) or cls._has_split(manifest, p)

        if precision == "auto":
            return manifest.default_precision if usable(manifest.default_precision) else "fp32"
        if not usable(precision):
            have = [p for p in ("fp32", "int8-cpu", "int8-trt") if usable(p)]
            raise ManifestError(manifest.model_dir / "manifest.json",
                                f"no {precision} auditor graph in this model directory (available: "
                                f"{', '.join(have) or 'none'}); build it with `auditor-lite export int8`")
        return precision

    @staticmethod
    def _open_graph(manifest, name: str, precision: str | None, providers, threads):
        precision, path = manifest.graph_file(name, precision)
        graph = OrtGraph(path, providers, threads)
        check_graph_contract(manifest, name, graph.session.get_inputs(), graph.session.get_outputs(), precision)
        return graph

    # ------------------------------------------------------------------ running graphs
    def calibrate(self, raw_iou: np.ndarray, predicted_types=None):
        """Raw graph IoU -> ``(iou, low, high)``; the identity and no interval without calibration.
        ``predicted_types`` select per-type interval widths where the calibration has them."""
        if self.calibration is None:
            return raw_iou, None, None
        return self.calibration.apply(raw_iou, predicted_types)

    def run_context(self, feed: dict) -> np.ndarray:
        return self.graphs["context"].run(feed, ["context"])[0]

    def run_masks(self, context: np.ndarray, masks: np.ndarray, key_frame: np.ndarray):
        return self.graphs["masks"].run({"context": context, "masks": masks, "key_frame": key_frame},
                                        ["iou", "type_logits", "action_logits"])

    def run_fused(self, feed: dict):
        return self.graphs["auditor"].run(feed, ["iou", "type_logits", "action_logits"])

    # ------------------------------------------------------------------ public API
    def embed_text(self, expression: str) -> np.ndarray:
        """The expression's 384-d embedding (cached per expression string)."""
        return self.text.embed(expression)

    def session(self, expression: str, frames=None, audio=None, *, sample_rate: int = SAMPLE_RATE,
                allow_silent: bool = False, context_cache: int = 10) -> ClipSession:
        """A :class:`ClipSession` for auditing many masks (and frames) of one clip."""
        return ClipSession(self, expression, frames, audio, sample_rate=sample_rate,
                           allow_silent=allow_silent, context_cache=context_cache)

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


def resolve_model_dir(path=None) -> Path:
    """``path``, or the packaged default model; a clear error when there is none."""
    if path is not None:
        model_dir = Path(path)
        if not model_dir.is_dir():
            raise ModelNotFoundError(f"{model_dir}: model directory not found")
        return model_dir
    if not (DEFAULT_MODEL_DIR / "manifest.json").is_file():
        raise ModelNotFoundError(
            f"{DEFAULT_MODEL_DIR}: the packaged default model is not installed. Pass --model DIR, or "
            "build one: `auditor-lite export onnx --model CHECKPOINT --out DIR` then "
            "`auditor-lite export int8 --model DIR --bench BENCH --out DIR`")
    return DEFAULT_MODEL_DIR
