"""Property-based fuzzing (hypothesis) of what reads outside input: preprocessing and the input
checks, the benchmark reader, and the model-directory loader.

The property everywhere: an input is either accepted (and the result has the documented shape and
range) or refused with the project's own exception type (``InputError``, ``DataError``,
``ManifestError`` / ``ModelFileError``) and a message naming the argument or file; never another
exception from deep inside. Bounded for CI (``FUZZ_EXAMPLES`` per property, about 20 s in all);
``AUDITOR_LITE_FUZZ_EXAMPLES=2000`` runs a long campaign. Torch-free: part of the edge run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from auditor_lite.data.reader import Benchmark  # noqa: E402
from auditor_lite.data.schema import DataError  # noqa: E402
from auditor_lite.manifest import ManifestError, sha256_file  # noqa: E402
from auditor_lite.preprocess import log_mel, prepare_masks  # noqa: E402
from auditor_lite.runtime.inputs import (InputError, check_audio, check_expression, check_frames,  # noqa: E402
                                         check_masks)
from auditor_lite.runtime.model_dir import DEFAULT_MODEL_DIR, ModelDirectory  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("AUDITOR_LITE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "upstream_small"

DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_])


def arrays(max_dims: int = 4, max_side: int = 12):
    return DTYPES.flatmap(lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
        elements=None if dtype is np.bool_ else hnp.from_dtype(np.dtype(dtype), allow_nan=True,
                                                              allow_infinity=True)))


def _named(error: Exception, *names: str) -> None:
    """The message starts with (or, for files, contains) the argument's name, on one line."""
    text = str(error)
    assert "\n" not in text.strip() and any(n in text for n in names), text


# ------------------------------------------------------------------------------ input checks
@FUZZ
@given(arrays(max_dims=5))
def test_frames_are_accepted_or_refused_by_name(frames):
    try:
        out = check_frames(frames)
    except InputError as exc:
        _named(exc, "frames")
        return
    assert out.dtype == np.uint8 and out.ndim == 4 and out.shape[0] == 10 and out.shape[-1] == 3


@FUZZ
@given(arrays(max_dims=2, max_side=40_000), st.integers(-10, 400_000), st.booleans())
def test_audio_is_accepted_or_refused_by_name(wave, rate, allow_silent):
    try:
        out = check_audio(wave, rate, allow_silent=allow_silent)
    except InputError as exc:
        _named(exc, "audio", "sample_rate")
        return
    assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))


@FUZZ
@given(st.one_of(arrays(max_dims=3), st.lists(arrays(max_dims=2), max_size=3)),
       st.tuples(st.integers(1, 12), st.integers(1, 12)))
def test_masks_are_accepted_or_refused_by_name(masks, frame_shape):
    try:
        stack, empty = check_masks(masks, frame_shape)
    except InputError as exc:
        _named(exc, "masks")
        return
    assert stack.shape[1:] == frame_shape and set(np.unique(stack)) <= {0, 1, False, True}
    tensor = prepare_masks(stack, 16)
    assert tensor.shape == (len(stack), 1, 16, 16) and set(np.unique(tensor)) <= {0.0, 1.0}
    assert all(not stack[i].any() for i in empty)


@FUZZ
@given(st.one_of(st.text(max_size=1500), st.binary(max_size=50), st.integers(), st.none(),
                 st.text(alphabet=st.characters(categories=["Cs", "Co", "Cc", "Zs"]), max_size=30)))
def test_expressions_are_accepted_or_refused_by_name(expression):
    try:
        out = check_expression(expression)
    except InputError as exc:
        _named(exc, "expression")
        return
    assert isinstance(out, str) and out == out.strip() and out and len(out) <= 1000
    out.encode("utf-8")          # what the tokenizer needs: no lone surrogates get through


@FUZZ
@given(hnp.arrays(np.float32, st.integers(0, 4000), elements=st.floats(-1, 1, width=32)))
def test_log_mel_of_any_length_is_finite(wave):
    try:
        mel = log_mel(wave)
    except ValueError as exc:         # the numpy front end names its argument too
        _named(exc, "wave")
        return
    assert mel.shape[0] == 64 and np.all(np.isfinite(mel))


# ------------------------------------------------------------------------------ benchmark reader
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=25)
ITEM_KEYS = ["uid", "vid", "exp", "fid", "kfid", "split", "gt_mask_path", "masks", "mask_path", "iou_to_gt",
             "rank", "action", "cutout", "erode", "dilate", "merge", "full_neg", "null", "perfect"]
ITEMS = st.lists(st.dictionaries(st.sampled_from(ITEM_KEYS), JSON | st.sampled_from(
    ["bbb_2000_12000_dog_1", "../outside", "/etc/hostname", "test_s", "0", "x.png"]), max_size=8), max_size=4)


@pytest.fixture(scope="module")
def bench_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "bench"
    shutil.copytree(UPSTREAM, root)
    return root


@FUZZ
@given(st.one_of(ITEMS, JSON, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_benchmark_json_is_read_or_refused_with_a_data_error(bench_copy, payload):
    path = bench_copy / "train_test_meta_files" / "test_s_image_filtered.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    try:
        records = list(Benchmark(bench_copy).records("test_s", "image"))
    except DataError as exc:
        assert "\n" not in str(exc).strip()
        return
    root = bench_copy.resolve()
    for record in records:               # whatever was read stays inside the benchmark
        for cand in record.candidates:
            assert cand.mask_path.resolve().is_relative_to(root)
        assert record.clip.frames_dir.resolve().is_relative_to(root)


@FUZZ
@given(st.lists(st.lists(st.text(max_size=30), max_size=8), max_size=6))
def test_metadata_csv_is_read_or_refused_with_a_data_error(bench_copy, rows):
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    meta = bench_copy / "train_test_meta_files" / "metadata.csv"
    original = (UPSTREAM / "train_test_meta_files" / "metadata.csv").read_bytes()
    meta.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        list(Benchmark(bench_copy).records("test_s", "image"))
    except DataError as exc:
        assert "\n" not in str(exc).strip()
    finally:
        meta.write_bytes(original)


# ------------------------------------------------------------------------------ model directory
@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-model") / "model"
    for path in DEFAULT_MODEL_DIR.rglob("*"):      # hard links where possible: the graphs are tens of MB
        target = root / path.relative_to(DEFAULT_MODEL_DIR)
        if path.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy(path, target)
    return root


def _restore(model: Path) -> None:
    for name in ("manifest.json", "config.json"):
        (model / name).unlink()
        shutil.copy(DEFAULT_MODEL_DIR / name, model / name)


def _mutate(value, path: list, new):
    """``value`` with the element at ``path`` (keys / indices) replaced by ``new``."""
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict) and head in value:
        return {**value, head: _mutate(value[head], rest, new)}
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value):
        return [*value[:head], _mutate(value[head], rest, new), *value[head + 1:]]
    return value


def _paths(value, prefix=()):
    yield list(prefix)
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, (*prefix, i))


MANIFEST = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
CONFIG = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
MANIFEST_PATHS = [p for p in _paths(MANIFEST) if p[:1] != ["versions"]]
CONFIG_PATHS = list(_paths(CONFIG))
VALUES = JSON | st.sampled_from(["../config.json", "/etc/hostname", "CONFIG.JSON", ".hidden", "", "grounded",
                                 -1, 0, 10 ** 12, [], {}, "N"])


@FUZZ
@given(st.sampled_from(MANIFEST_PATHS), VALUES)
def test_a_mutated_manifest_is_refused_by_name_or_loads(model_copy, path, value):
    _restore(model_copy)
    (model_copy / "manifest.json").write_text(json.dumps(_mutate(MANIFEST, path, value)))
    try:
        model = ModelDirectory.open(model_copy, verify=False)
    except (ManifestError, DataError) as exc:
        assert "\n" not in str(exc).strip() and str(model_copy) in str(exc)
        return
    assert model.config.key_size > 0


@FUZZ
@given(st.sampled_from(CONFIG_PATHS), VALUES)
def test_a_mutated_config_is_refused_by_field_or_loads(model_copy, path, value):
    _restore(model_copy)
    config = model_copy / "config.json"
    config.write_text(json.dumps(_mutate(CONFIG, path, value)))
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["files"]["config.json"] = {"bytes": config.stat().st_size, "sha256": sha256_file(config)}
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    try:
        model = ModelDirectory.open(model_copy)
    except (ManifestError, DataError) as exc:
        assert "\n" not in str(exc).strip() and "config.json" in str(exc)
        return
    assert model.config.key_size == CONFIG["key_size"] or path[:1] not in (["key_size"], [])
