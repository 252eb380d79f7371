"""ONNX Runtime's optimised graphs cached outside the model directory (runtime/ort_cache.py)."""

from __future__ import annotations

import numpy as np
import pytest

from auditor_lite.runtime import Auditor
from auditor_lite.runtime.model_dir import DEFAULT_MODEL_DIR


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_LITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUDITOR_LITE_ORT_CACHE", raising=False)
    return tmp_path / "cache" / "ort"


def _audit(auditor):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 96, 96, 3), dtype=np.uint8)
    masks = rng.random((3, 96, 96)) > 0.5
    audio = (0.1 * rng.standard_normal(16000 * 10)).astype(np.float32)
    return [r.raw_iou for r in auditor.audit(frames, audio, "the dog on the left", masks, frame_index=3)]


def _states(auditor):
    return {name: graph.optimised_cache for name, graph in auditor.graphs.items()} | \
        {"text_encoder": auditor.text.graph.optimised_cache}


def test_the_second_load_uses_the_cached_graphs_with_the_same_results(cache):
    before = sorted(p.name for p in DEFAULT_MODEL_DIR.iterdir())
    first = Auditor.load(intra_op_threads=1)
    assert set(_states(first).values()) == {"written"}
    second = Auditor.load(intra_op_threads=1)
    assert set(_states(second).values()) == {"hit"}
    assert _audit(first) == _audit(second)
    assert len(list(cache.glob("*.onnx"))) == 3 and len(list(cache.glob("*.json"))) == 3
    assert not list(cache.glob(".*"))                                  # nothing half-written left
    assert sorted(p.name for p in DEFAULT_MODEL_DIR.iterdir()) == before   # the model directory untouched


def test_a_damaged_cache_file_is_not_used(cache):
    Auditor.load(intra_op_threads=1)
    for graph in cache.glob("*.onnx"):
        graph.write_bytes(graph.read_bytes()[:1000])                  # truncated behind our back
    auditor = Auditor.load(intra_op_threads=1)
    assert set(_states(auditor).values()) == {"written"}              # rebuilt, not loaded
    assert set(_states(Auditor.load(intra_op_threads=1)).values()) == {"hit"}


def test_the_cache_can_be_turned_off_and_other_providers_are_not_cached(cache, monkeypatch):
    monkeypatch.setenv("AUDITOR_LITE_ORT_CACHE", "0")
    assert set(_states(Auditor.load(intra_op_threads=1)).values()) == {"off"}
    assert not cache.exists()
    monkeypatch.delenv("AUDITOR_LITE_ORT_CACHE")
    cache.parent.mkdir()
    cache.write_text("a file where the cache folder should be")        # unwritable: plain loads
    assert set(_states(Auditor.load(intra_op_threads=1)).values()) == {"off"}
    from auditor_lite.runtime.ort_cache import cache_key

    path = DEFAULT_MODEL_DIR / "masks.onnx"
    assert cache_key(path, "abc", ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert cache_key(path, None, ["CPUExecutionProvider"]) is None
    assert cache_key(path, "abc", ["CPUExecutionProvider"]) != cache_key(path, "abd", ["CPUExecutionProvider"])
