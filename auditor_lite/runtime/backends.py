"""Inference backends: what runs a model directory's graphs.

A backend opens a graph file as a :class:`Graph`: ``run(feed, outputs)``, the input/output specs to
check against the manifest's contract, and the provider that actually serves it. The
:class:`~auditor_lite.runtime.auditor.Auditor` receives one (default :class:`OnnxRuntimeBackend`),
so a TensorRT engine runner or another runtime plugs in without touching the auditor, the session,
calibration or the benchmarks.

ONNX Runtime sessions run on the best available execution provider.

Provider choice (``choose_providers``), best first among ``onnxruntime.get_available_providers()``:
TensorRT (only for the ``int8-trt`` graph, the one built for it), CUDA, CPU. A provider list given
by the caller is used as is (after checking that each is available). ONNX Runtime silently falls
back to CPU when a listed GPU provider fails to initialise, so the provider actually serving a
graph is read back from the session, and that is what ``Auditor.backend`` reports.

TensorRT runs through ONNX Runtime's TensorRT execution provider (engines cached between runs in
``$AUDITOR_LITE_TRT_CACHE``, default ``~/.cache/auditor-lite/trt``). A runner for the standalone
engines that ``auditor-lite export trt`` builds is not part of the runtime (docs/runtime.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from auditor_lite.data.schema import DataError

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
SHORT_NAMES = {"TensorrtExecutionProvider": "tensorrt-ep", "CUDAExecutionProvider": "cuda",
               "CPUExecutionProvider": "cpu"}


class ModelFileError(DataError):
    """A file of a model directory is missing, corrupt or does not fit the runtime."""


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(precision: str, available: list[str], requested: list[str] | None = None) -> list[str]:
    """The execution providers for a graph of ``precision``, best first (always ending with CPU)."""
    if requested:
        unknown = [p for p in requested if p not in available]
        if unknown:
            raise ValueError(f"providers: {', '.join(unknown)} not available in this onnxruntime "
                             f"build (available: {', '.join(available)})")
        return list(requested)
    chosen = [p for p in PROVIDER_ORDER if p in available]
    if precision != "int8-trt":  # the TensorRT EP builds engines for the graph made for it only
        chosen = [p for p in chosen if p != "TensorrtExecutionProvider"]
    return chosen or ["CPUExecutionProvider"]


def _provider_options(provider: str) -> dict:
    if provider == "TensorrtExecutionProvider":
        # Building a TensorRT engine takes minutes: keep it between runs.
        cache = Path(os.environ.get("AUDITOR_LITE_TRT_CACHE", Path.home() / ".cache" / "auditor-lite" / "trt"))
        return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
    return {}


class OrtGraph:
    """One ONNX graph in an ONNX Runtime session. ``run`` is safe to call from several threads
    (ONNX Runtime's ``InferenceSession.run`` is)."""

    def __init__(self, path, providers: list[str], intra_op_threads: int | None = None,
                 fingerprint: str | None = None):
        import onnxruntime as ort

        from auditor_lite.runtime import ort_cache

        self.path = Path(path)
        # the graph ONNX Runtime optimised for this machine, when an earlier load cached it
        key = ort_cache.cache_key(self.path, fingerprint, providers)
        cached = ort_cache.cached_graph(key) if key else None
        staging = ort_cache.staging_path(key) if key and cached is None else None
        self.optimised_cache = "hit" if cached else ("written" if staging else "off")
        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if cached
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if staging is not None:
            options.optimized_model_filepath = str(staging)
        options.intra_op_num_threads = int(intra_op_threads or os.cpu_count() or 1)
        options.log_severity_level = 3  # errors only: provider fall-back warnings are reported by us
        # ORT's worker threads busy-wait between ops by default. On an edge box the auditor shares
        # a few cores with the rest of the robot stack, and spinning threads steal them: measured
        # here, 3-5x lower latency with spinning off on a loaded 2-core CPU. AUDITOR_LITE_ORT_SPIN=1
        # turns it back on for a dedicated machine.
        spin = os.environ.get("AUDITOR_LITE_ORT_SPIN", "0")
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin == "1" else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin == "1" else "0")
        provider_list = [(p, _provider_options(p)) for p in providers]
        try:
            self.session = ort.InferenceSession(str(cached or self.path), sess_options=options,
                                                providers=provider_list)
        except Exception as exc:  # onnxruntime raises its own pybind11 exception types
            if staging is not None:
                staging.unlink(missing_ok=True)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(self.path, f"ONNX Runtime cannot load this graph ({first_line})") from None
        if staging is not None:
            ort_cache.commit(key, staging)
        self.provider = self.session.get_providers()[0]  # what serves it, after any fall-back
        self.backend_name = f"onnxruntime {SHORT_NAMES.get(self.provider, self.provider)}"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feed: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        return self.session.run(outputs or self.output_names, feed)

    def input_specs(self) -> list:
        """The graph's inputs (``.name``, ``.shape``, ``.type``), for the contract check."""
        return self.session.get_inputs()

    def output_specs(self) -> list:
        return self.session.get_outputs()


class Graph(Protocol):
    """One opened graph."""

    path: Path
    provider: str            # what serves it, after any fall-back
    backend_name: str        # e.g. "onnxruntime cpu"

    def run(self, feed: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]: ...
    def input_specs(self) -> list: ...
    def output_specs(self) -> list: ...


class Backend(Protocol):
    """Opens graph files; one backend serves all the graphs of an auditor."""

    def open(self, path: Path, precision: str | None, fingerprint: str | None = None) -> Graph: ...


class OnnxRuntimeBackend:
    """ONNX Runtime: ``providers`` (default: the best available for each graph's precision) and
    ``intra_op_threads`` (default: the number of CPUs) per session."""

    def __init__(self, providers: list[str] | None = None, intra_op_threads: int | None = None):
        self.requested = list(providers) if providers else None
        self.intra_op_threads = intra_op_threads
        if self.requested:            # fail at construction, naming what this build has
            choose_providers("fp32", available_providers(), self.requested)

    def open(self, path: Path, precision: str | None, fingerprint: str | None = None) -> OrtGraph:
        """``fingerprint``: the file's SHA-256 from the manifest; with it, the graph ONNX Runtime
        optimises for this machine is cached outside the model directory (``ort_cache``)."""
        chosen = choose_providers(precision or "fp32", available_providers(), self.requested)
        return OrtGraph(path, chosen, self.intra_op_threads, fingerprint)
