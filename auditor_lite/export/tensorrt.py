"""Build TensorRT engines from a model directory's graphs (``auditor-lite export trt``).

TensorRT is optional (NVIDIA GPUs only) and imported only inside :func:`build_engine`. How an
engine is built depends on the graph and the installed TensorRT:

* a QDQ (explicitly quantized) graph on TensorRT >= 10: a ``STRONGLY_TYPED`` network, where the
  Q/DQ nodes alone decide INT8 and precision flags are not allowed (``trtexec --stronglyTyped``);
* a QDQ graph on TensorRT 8.6 / 9.x: the ``INT8`` and ``FP16`` builder flags (``--int8 --fp16``);
* an FP32 graph: the ``FP16`` builder flag (``--fp16``).

The mask batch ``N`` gets an optimisation profile (min, opt, max) = (1, 13, 64) by default; the
text encoder's token count ``T`` gets (1, 16, 256). A timing cache (per TensorRT version and GPU)
makes rebuilds fast, and engines are cached under a key hashed from the TensorRT version, the GPU
name, the ONNX file's SHA-256, the build mode and the shapes: a cached engine is reused only where
it is valid.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIN_TENSORRT = (8, 6)  # LayerNormalization (opset 17) is parsed from 8.6 on
DEFAULT_PROFILES = {"N": (1, 13, 64), "T": (1, 16, 256)}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
MODE_FLAGS = {"strongly-typed": ["--stronglyTyped"], "int8-fp16": ["--int8", "--fp16"], "fp16": ["--fp16"]}


class TensorRTUnavailable(RuntimeError):
    """TensorRT (the Python package) is not installed, or too old."""


# ----------------------------------------------------------------------------------- environment
def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def parse_version(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"unrecognised TensorRT version {version!r}")
    return int(match.group(1)), int(match.group(2))


def _import_tensorrt():
    if not tensorrt_available():
        raise TensorRTUnavailable(
            "TensorRT is not installed: on a machine with an NVIDIA GPU, `pip install tensorrt` "
            "(or use the trtexec command printed above, from a TensorRT container)")
    import tensorrt as trt

    if parse_version(trt.__version__) < MIN_TENSORRT:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is too old: the graphs use "
                                  "LayerNormalization (opset 17), which needs TensorRT >= 8.6")
    return trt


def gpu_name() -> str:
    """Name of GPU 0 (NVML, else ``nvidia-smi``), or ``"unknown-gpu"``."""
    if importlib.util.find_spec("pynvml") is not None:
        try:
            import pynvml

            pynvml.nvmlInit()
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # no driver or no device: fall through to nvidia-smi
            pass
    if shutil.which("nvidia-smi"):
        try:
            result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=20, check=True)
            if result.stdout.strip():
                return result.stdout.strip().splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown-gpu"


def default_cache_dir() -> Path:
    root = os.environ.get("AUDITOR_LITE_CACHE") or Path.home() / ".cache" / "auditor-lite"
    return Path(root) / "tensorrt"


# ----------------------------------------------------------------------------------- shapes, keys
def profile_shapes(contract: dict, profiles: dict | None = None) -> dict[str, tuple[tuple, tuple, tuple]]:
    """``{input: (min_shape, opt_shape, max_shape)}`` from a graph's contract entry; each named
    dimension takes its (min, opt, max) from ``profiles`` (default :data:`DEFAULT_PROFILES`)."""
    profiles = {**DEFAULT_PROFILES, **(profiles or {})}
    shapes = {}
    for tensor in contract["inputs"]:
        per_level = []
        for level in range(3):
            dims = []
            for dim in tensor["shape"]:
                if isinstance(dim, str):
                    if dim not in profiles:
                        raise ValueError(f"input {tensor['name']!r}: no profile for dimension {dim!r}")
                    dims.append(int(profiles[dim][level]))
                else:
                    dims.append(int(dim))
            per_level.append(tuple(dims))
        if any(not 1 <= lo <= opt <= hi for lo, opt, hi in zip(*per_level)):
            raise ValueError(f"input {tensor['name']!r}: profile needs 1 <= min <= opt <= max, "
                             f"got {per_level}")
        shapes[tensor["name"]] = tuple(per_level)
    return shapes


def build_mode(tensorrt_version: tuple[int, int], quantized: bool) -> str:
    """``strongly-typed``, ``int8-fp16`` or ``fp16`` (see the module docstring)."""
    if not quantized:
        return "fp16"
    return "strongly-typed" if tensorrt_version >= (10, 0) else "int8-fp16"


def is_quantized(onnx_path: str | Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(node.op_type in QDQ_OPS for node in model.graph.node)


def engine_cache_key(*, tensorrt_version: str, gpu: str, onnx_sha256: str, mode: str,
                     shapes: dict) -> str:
    """Hex key of everything an engine depends on: a change in any of them means a new engine."""
    blob = json.dumps({"tensorrt": tensorrt_version, "gpu": gpu, "onnx_sha256": onnx_sha256,
                       "mode": mode, "shapes": {k: [list(s) for s in v] for k, v in sorted(shapes.items())}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def timing_cache_path(cache_dir: Path, tensorrt_version: str, gpu: str) -> Path:
    return Path(cache_dir) / f"timing-trt{_slug(tensorrt_version)}-{_slug(gpu)}.cache"


# ----------------------------------------------------------------------------------- trtexec
def _dims(shape: tuple) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(onnx_path: str | Path, *, engine_path: str | Path, shapes: dict, mode: str,
                    timing_cache: str | Path | None = None) -> str:
    """The ``trtexec`` command line that builds the same engine as :func:`build_engine`."""
    if mode not in MODE_FLAGS:
        raise ValueError(f"unknown build mode {mode!r}; known: {', '.join(MODE_FLAGS)}")
    parts = ["trtexec", f"--onnx={onnx_path}"]
    dynamic = {name: s for name, s in shapes.items() if s[0] != s[2]}
    for flag, level in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        if dynamic:
            parts.append(f"{flag}=" + ",".join(f"{name}:{_dims(s[level])}" for name, s in dynamic.items()))
    parts += MODE_FLAGS[mode]
    if timing_cache is not None:
        parts.append(f"--timingCacheFile={timing_cache}")
    parts.append(f"--saveEngine={engine_path}")
    return shlex.join(parts)


# ----------------------------------------------------------------------------------- build
def build_engine(onnx_path: str | Path, engine_path: str | Path, *, shapes: dict, mode: str | None = None,
                 timing_cache: str | Path | None = None, workspace_mb: int = 2048) -> Path:
    """Parse ``onnx_path`` with TensorRT's ONNX parser and write a serialized engine.

    ``shapes`` is :func:`profile_shapes` output; ``mode`` defaults to :func:`build_mode` for the
    installed TensorRT and the graph. The timing cache file is read if present and rewritten.
    """
    trt = _import_tensorrt()
    version = parse_version(trt.__version__)
    mode = mode or build_mode(version, is_quantized(onnx_path))
    if mode == "strongly-typed" and not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} has no strongly typed networks; "
                                  "use mode 'int8-fp16'")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flags = 0
    if version < (10, 0):  # explicit batch is the only mode from 10.0 on (the flag is deprecated)
        network_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if mode == "strongly-typed":
        network_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if mode == "int8-fp16":
        config.set_flag(trt.BuilderFlag.INT8)  # honours the Q/DQ scales (explicit quantization)
        config.set_flag(trt.BuilderFlag.FP16)
    elif mode == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        name = network.get_input(index).name
        if name not in shapes:
            raise ValueError(f"{onnx_path}: network input {name!r} has no profile shapes")
        profile.set_shape(name, *shapes[name])
    config.add_optimization_profile(profile)

    cache_file = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_file.read_bytes() if cache_file and cache_file.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(engine_path, bytes(serialized))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(cache_file, bytes(cache.serialize()))
    return engine_path


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass(frozen=True)
class EnginePlan:
    """Everything one engine build needs, decided before building (and printable as trtexec)."""

    onnx_path: Path
    engine_path: Path       # in the engine cache, named by the cache key
    timing_cache: Path
    mode: str
    shapes: dict
    tensorrt_version: str | None  # None: TensorRT absent, the plan assumes TensorRT 10

    def trtexec(self, engine_path: str | Path | None = None) -> str:
        return trtexec_command(self.onnx_path, engine_path=engine_path or self.engine_path,
                               shapes=self.shapes, mode=self.mode, timing_cache=self.timing_cache)


def plan_engine(onnx_path: str | Path, onnx_sha256: str, *, shapes: dict, cache_dir: str | Path,
                label: str) -> EnginePlan:
    """The engine for ``onnx_path``: build mode for the installed TensorRT (TensorRT 10 when it is
    absent), cache path keyed by :func:`engine_cache_key`, timing cache per version and GPU."""
    cache_dir, onnx_path = Path(cache_dir), Path(onnx_path)
    quantized = is_quantized(onnx_path)
    if not tensorrt_available():
        return EnginePlan(onnx_path, cache_dir / f"{label}.engine", cache_dir / "timing.cache",
                          build_mode((10, 0), quantized), shapes, None)
    version = _import_tensorrt().__version__
    gpu = gpu_name()
    mode = build_mode(parse_version(version), quantized)
    key = engine_cache_key(tensorrt_version=version, gpu=gpu, onnx_sha256=onnx_sha256, mode=mode,
                           shapes=shapes)
    return EnginePlan(onnx_path, cache_dir / f"{label}-{key}.engine",
                      timing_cache_path(cache_dir, version, gpu), mode, shapes, version)


def build_planned(plan: EnginePlan) -> tuple[Path, bool]:
    """Reuse the cached engine of ``plan`` or build it; returns ``(engine path, was_built)``."""
    if plan.tensorrt_version is None:
        _import_tensorrt()  # raises TensorRTUnavailable with the install hint
    if plan.engine_path.is_file():
        return plan.engine_path, False
    build_engine(plan.onnx_path, plan.engine_path, shapes=plan.shapes, mode=plan.mode,
                 timing_cache=plan.timing_cache)
    return plan.engine_path, True
