"""A model directory, opened and checked once: what every user of an exported model goes through.

    model = ModelDirectory.open("path/to/model_dir")      # manifest, config, contract, tokenizer
    model.config.key_size, model.pick_precision("auto"), model.graph_path("masks", "int8-cpu")

:meth:`ModelDirectory.open` refuses, each with an error naming the file and field:

- files that differ from ``manifest.json`` (size, SHA-256), paths that leave the directory, files the
  manifest does not list (:func:`auditor_lite.manifest.load_manifest`);
- a ``config.json`` whose sizes, mask types, actions or ``cell_motion`` disagree with the graphs'
  contract (the graphs were exported at fixed sizes: other sizes would fail at run time or, for a
  graph that broadcasts, silently mis-read the input);
- a tokenizer whose ids go past the text graph's embedding table;
- an unreadable score calibration.

The :class:`~auditor_lite.runtime.auditor.Auditor` opens the graphs it names with a backend
(:mod:`auditor_lite.runtime.backends`); calibration, the benchmarks and ``auditor-lite calibrate``
receive the same object. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from auditor_lite.data.schema import ACTIONS, MASK_TYPES
from auditor_lite.graph_io import ARCHITECTURES, RETIRED, graph_inputs
from auditor_lite.jsonio import read_json
from auditor_lite.manifest import Manifest, ManifestError, check_graph_contract, load_manifest
from auditor_lite.runtime.backends import ModelFileError

PRECISIONS = ("fp32", "int8-cpu", "int8-trt")
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_model"
AUDITOR_GRAPHS = ("context", "masks")   # stage A once per clip and frame, stage B per mask call
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"


class ModelNotFoundError(FileNotFoundError):
    """No model directory where one was expected (e.g. the packaged default is not installed)."""


@dataclass(frozen=True)
class ModelConfig:
    """The fields of ``config.json`` the runtime reads, checked against the graphs."""

    architecture: str                 # graph_io.GROUNDED
    frame_size: int
    key_size: int
    mask_types: tuple[str, ...]
    actions: tuple[str, ...]
    max_tokens: int                   # token states per expression
    cell_motion: bool = False         # the context graph reads motion.cell_motion


def _positive_int(path: Path, raw: dict, name: str, minimum: int = 1) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelFileError(path, f"{name} must be an integer >= {minimum}, got {value!r}", name)
    return value


def read_config(manifest: Manifest) -> ModelConfig:
    """``config.json`` of ``manifest``'s directory, checked against the graphs' contract."""
    path = manifest.file(CONFIG_FILE)
    raw = read_json(path, ModelFileError)
    if not isinstance(raw, dict):
        raise ModelFileError(path, f"expected a JSON object, got {type(raw).__name__}")
    architecture = raw.get("architecture", RETIRED)
    if architecture == RETIRED:
        raise ModelFileError(path, "exported for an older runtime: the pooled-text 'auditor' architecture "
                             "(a fused graph fed a sentence embedding) is retired; use the packaged model "
                             "or export a grounded checkpoint (`auditor-lite export onnx`)", "architecture")
    if architecture not in ARCHITECTURES:
        raise ModelFileError(path, f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})",
                             "architecture")
    sizes = {name: _positive_int(path, raw, name) for name in ("frame_size", "key_size")}
    # every input of the auditor graphs, by name
    shapes = {t["name"]: t["shape"] for g in ("masks", "context")
              for t in manifest.contract.get(g, {}).get("inputs", [])}
    for name, tensor in (("frame_size", "frames"), ("key_size", "key_frame")):
        if tensor in shapes and (shapes[tensor] or [None])[-1] != sizes[name]:
            raise ModelFileError(path, f"{name} is {sizes[name]} but the graphs take {tensor} of shape "
                                 f"{shapes[tensor]}: config.json does not belong to these graphs", name)
    # the number of names must match the logits the graphs give, or results index past them
    scoring = manifest.contract.get("masks") or {}
    outputs = {t["name"]: t["shape"] for t in scoring.get("outputs", [])}
    names = {}
    for name, tensor, default in (("mask_types", "type_logits", MASK_TYPES), ("actions", "action_logits", ACTIONS)):
        value = raw.get(name, list(default))
        if (not isinstance(value, list) or not value or not all(isinstance(n, str) and n for n in value)
                or len(set(value)) != len(value)):
            raise ModelFileError(path, f"{name} must be distinct non-empty names, got {value!r}", name)
        width = (outputs.get(tensor) or [None])[-1]
        if isinstance(width, int) and width != len(value):
            raise ModelFileError(path, f"{name} lists {len(value)} names but the graphs give {width} "
                                 f"{tensor}: config.json does not belong to these graphs", name)
        names[name] = tuple(value)
    max_tokens = _positive_int(path, raw, "max_tokens", minimum=3)
    motion = "cell_motion" in shapes     # an input of newer grounders' context graph only
    if bool(raw.get("cell_motion", False)) != motion:
        raise ModelFileError(path, f"cell_motion is {raw.get('cell_motion', False)!r} but the context "
                             f"graph {'takes' if motion else 'does not take'} a cell_motion input: "
                             "config.json does not belong to these graphs", "cell_motion")
    return ModelConfig(architecture, sizes["frame_size"], sizes["key_size"], names["mask_types"],
                       names["actions"], max_tokens, motion)


def load_tokenizer(path: Path):
    """``tokenizer.json`` as a ``tokenizers.Tokenizer``, one sentence at a time, cut as in training."""
    from tokenizers import Tokenizer

    from auditor_lite.runtime.text import MAX_TOKENS

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises a plain Exception for every parse error
        raise ModelFileError(path, f"not a tokenizers JSON file ({exc})") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return tokenizer


@dataclass(frozen=True)
class ModelDirectory:
    """A verified model directory. Use :meth:`open`."""

    path: Path
    manifest: Manifest
    config: ModelConfig
    tokenizer: object                 # tokenizers.Tokenizer
    score_calibration: object | None  # runtime.score_calibration.ScoreCalibration

    @classmethod
    def open(cls, path=None, verify: bool = True) -> "ModelDirectory":
        """Open ``path`` (default: the packaged model); ``verify=False`` skips the SHA-256 check."""
        model_dir = resolve_model_dir(path)
        manifest = load_manifest(model_dir, verify=verify)
        config = read_config(manifest)
        tokenizer_path = manifest.file(TOKENIZER_FILE)
        tokenizer = load_tokenizer(tokenizer_path)
        inputs = {t["name"]: t for t in manifest.contract.get("text_encoder", {}).get("inputs", [])}
        limit = (inputs.get("input_ids", {}).get("range") or [None, None])[1]
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        if isinstance(limit, (int, float)) and size > limit + 1:
            raise ModelFileError(tokenizer_path, f"vocabulary of {size} tokens but the text encoder takes "
                                 f"ids up to {int(limit)}: the tokenizer does not belong to this model",
                                 "vocabulary")
        calibration = None
        calibration_path = manifest.optional_file("score_calibration")
        if calibration_path is not None:
            from auditor_lite.runtime.score_calibration import load_score_calibration

            calibration = load_score_calibration(calibration_path)
        return cls(model_dir, manifest, config, tokenizer, calibration)

    # ------------------------------------------------------------------ graphs
    def usable(self, precision: str) -> bool:
        """Both auditor graphs (context and masks) exist at ``precision``."""
        graphs = self.manifest.graphs
        return all(g in graphs and precision in graphs[g] for g in AUDITOR_GRAPHS)

    def precisions(self) -> list[str]:
        """Precisions with a complete set of auditor graphs here."""
        return [p for p in PRECISIONS if self.usable(p)]

    def pick_precision(self, precision: str = "auto") -> str:
        """``auto``: the manifest's default when its graphs are here, else ``fp32``."""
        if precision == "auto":
            default = self.manifest.default_precision
            return default if self.usable(default) else "fp32"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}, got {precision!r}")
        if not self.usable(precision):
            raise ManifestError(self.path / "manifest.json",
                                f"no {precision} auditor graph in this model directory (available: "
                                f"{', '.join(self.precisions()) or 'none'}); build it with `auditor-lite export int8`")
        return precision

    def text_precision(self, precision: str) -> str | None:
        """The text graph's precision to use with auditor graphs at ``precision`` (None: its default)."""
        return precision if precision in self.manifest.precisions("text_encoder") else None

    def graph_path(self, name: str, precision: str | None) -> tuple[str, Path]:
        """``(precision, path)`` of graph ``name`` (``precision`` None: its only or FP32 file)."""
        return self.manifest.graph_file(name, precision)

    def inputs(self, name: str) -> tuple[str, ...]:
        """The graph's input names (:mod:`auditor_lite.graph_io`)."""
        return graph_inputs(self.config.architecture, name, self.config.cell_motion)

    def check_graph(self, name: str, precision: str | None, input_specs, output_specs) -> None:
        """Refuse a loaded graph whose inputs/outputs (name, shape, dtype) differ from the contract."""
        check_graph_contract(self.manifest, name, input_specs, output_specs, precision)


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
