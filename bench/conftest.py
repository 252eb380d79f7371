"""Fixtures for the pytest-benchmark suite (``pytest bench/ --benchmark-only``; see README.md).

The model directory is ``$AUDITOR_LITE_BENCH_MODEL``, else the packaged default model; with neither
the whole suite is skipped. ``$AUDITOR_LITE_BENCH_CHECKPOINT`` adds torch eager, and
``$AUDITOR_LITE_BENCH_THREADS`` sets the ONNX Runtime threads (default: every CPU, as the runtime).
These files are not part of the CI tests (``testpaths = ["tests"]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _model_dir() -> Path | None:
    configured = os.environ.get("AUDITOR_LITE_BENCH_MODEL")
    if configured:
        path = Path(configured)
        if not (path / "manifest.json").is_file():  # asked for, so a mistake: fail, do not skip
            raise pytest.UsageError(f"AUDITOR_LITE_BENCH_MODEL={configured}: no manifest.json there")
        return path
    from auditor_lite.runtime import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "manifest.json").is_file() else None


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = _model_dir()
    if path is None:
        pytest.skip("no model directory: set AUDITOR_LITE_BENCH_MODEL=DIR (an `auditor-lite export` "
                    "output) or install the packaged default model")
    return path


@pytest.fixture(scope="session")
def threads() -> int:
    return int(os.environ.get("AUDITOR_LITE_BENCH_THREADS", "0")) or os.cpu_count() or 1


@pytest.fixture(scope="session")
def clip():
    from auditor_lite.benchmark.variants import load_clip

    return load_clip()


@pytest.fixture(scope="session")
def variants(model_dir, threads) -> dict:
    """Every variant of the model directory by name, e.g. ``"ort int8-cpu fused"``."""
    from auditor_lite.benchmark.variants import build_variants

    built, _ = build_variants(model_dir, threads)
    return {variant.name: variant for variant in built}
