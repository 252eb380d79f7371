"""ONNX Runtime's optimised graphs, cached outside the model directory: a faster cold start.

Making a session optimises the graph at ``ORT_ENABLE_ALL`` for this CPU (fusions, NCHWc layouts):
about 240 ms for the context graph, 60 for the masks graph and 230 for the text encoder here, of a
0.75 s ``Auditor.load``. The optimised graph can be saved and loaded again with optimisation off
(95 / 52 / 97 ms), but it holds transforms tied to the machine that made it (AVX-512 vs AVX2
kernels; a Jetson is aarch64), so it must never ship in a model directory (which stays
portable and exactly as the manifest lists it). It lives here instead, keyed by everything it
depends on: the graph file (the manifest's SHA-256, size and modification time), the ONNX Runtime
version, the machine and its CPU flags, and the providers (CPU only: other providers are not
cached). A cached file is checked against the SHA-256 recorded when it was written before it is
used, and written atomically; any problem with the cache falls back to the plain load.

Location: ``$AUDITOR_LITE_CACHE/ort`` or ``~/.cache/auditor-lite/ort``; ``AUDITOR_LITE_ORT_CACHE=0``
turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from functools import lru_cache
from pathlib import Path


def cache_dir() -> Path | None:
    """Where optimised graphs are kept, or None when the cache is off."""
    if os.environ.get("AUDITOR_LITE_ORT_CACHE", "1") == "0":
        return None
    root = os.environ.get("AUDITOR_LITE_CACHE") or Path.home() / ".cache" / "auditor-lite"
    return Path(root) / "ort"


@lru_cache(maxsize=1)
def machine_key() -> str:
    """The machine's architecture and CPU feature flags (what the optimised kernels depend on)."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("flags", "features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        flags = platform.processor()
    return f"{platform.machine()}|{flags}"


def cache_key(path: Path, fingerprint: str | None, providers: list[str]) -> str | None:
    """The cache file's name for ``path``, or None when it must not be cached."""
    import onnxruntime as ort

    if fingerprint is None or list(providers) != ["CPUExecutionProvider"]:
        return None
    stat = path.stat()
    parts = [fingerprint, str(stat.st_size), str(stat.st_mtime_ns), ort.__version__, machine_key()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_graph(key: str) -> Path | None:
    """The cached optimised graph for ``key`` when it is there and intact."""
    directory = cache_dir()
    if directory is None:
        return None
    graph, record = directory / f"{key}.onnx", directory / f"{key}.json"
    try:
        expected = json.loads(record.read_text(encoding="utf-8"))["sha256"]
        return graph if _sha256(graph) == expected else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def staging_path(key: str) -> Path | None:
    """A fresh file name in the cache directory for ONNX Runtime to write the optimised graph to."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{key}.", suffix=".onnx", dir=directory)
        os.close(handle)
        return Path(name)
    except OSError:
        return None


def commit(key: str, written: Path) -> None:
    """Move the graph ONNX Runtime wrote into place with its checksum; never raises."""
    directory = written.parent
    try:
        if not written.is_file() or written.stat().st_size == 0:
            raise OSError("nothing written")
        record = directory / f".{key}.json.tmp"
        record.write_text(json.dumps({"sha256": _sha256(written)}), encoding="utf-8")
        os.replace(written, directory / f"{key}.onnx")
        os.replace(record, directory / f"{key}.json")
    except OSError:
        written.unlink(missing_ok=True)
