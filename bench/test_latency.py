"""End-to-end latency of the production path, one pytest-benchmark case per variant and mask count.

Each case times ``Variant.call``: a runtime ``ClipSession`` from decoded uint8 frames, float audio,
the expression (embedding cached) and boolean masks to ``AuditResult`` objects -- the path
``auditor-lite bench`` times, so the two agree. pytest-benchmark runs cases one after another;
for side-by-side (interleaved) numbers, speed-ups and the goals use ``auditor-lite bench``.
"""

from __future__ import annotations

import pytest

PRECISIONS = ("fp32", "int8-cpu")
LAYOUTS = ("fused", "naive", "cached")
MASKS = (1, 13)


def _run(benchmark, variants, clip, name: str, masks: int):
    if name not in variants:
        pytest.skip(f"{name}: not available with this model directory / machine")
    variant = variants[name]
    variant.prepare(clip)
    chosen = clip.masks_for(masks)
    benchmark.group = f"end-to-end, {masks} mask{'s' if masks > 1 else ''} per clip"
    benchmark.extra_info.update(variant=name, masks=masks, backend=variant.describe()["backend"])
    results, _ = benchmark(variant.call, clip, chosen)
    assert len(results) == masks
    assert all(0.0 <= r.raw_iou <= 1.0 for r in results)


@pytest.mark.parametrize("masks", MASKS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_onnxruntime_cpu(benchmark, variants, clip, precision, layout, masks):
    if layout == "naive" and masks == 1:
        pytest.skip("naive at 1 mask is the fused call")
    _run(benchmark, variants, clip, f"ort {precision} {layout}", masks)


@pytest.mark.parametrize("masks", MASKS)
@pytest.mark.parametrize("name", ["ort-trt int8-trt fused", "ort-trt int8-trt naive", "ort-cuda fp32 fused"])
def test_gpu(benchmark, variants, clip, name, masks):
    _run(benchmark, variants, clip, name, masks)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_text_encoder_cold(benchmark, variants, clip, precision):
    """A new expression: tokenize + text graph (the cache is cleared before every call)."""
    name = next((n for n in variants if n.startswith(f"ort {precision} ")), None)
    if name is None:
        pytest.skip(f"no {precision} graphs")
    text = variants[name].auditor.text
    benchmark.group = "expression embedding, cold"
    benchmark.extra_info.update(text_graph=text.graph.path.name)

    def cold():
        text.cache.clear()
        return text.embed(clip.expression)

    assert benchmark(cold).shape == (384,)
