"""Bad-input cases on file trees: a model directory and a benchmark, each broken one way."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bad_input_cases import (META, Case, _reverse_knots, audit_argv, bench_copy, clip_copy, edit_json, model_copy,
                             rehash, without_precision)


def model_cases() -> list[Case]:
    cases = []

    def model_case(name, break_it, expect):
        for command in ("audit", "bench"):          # the runtime's two ways in: an audit, a benchmark
            def build(folder, command=command):
                clip = clip_copy(folder)
                model = model_copy(folder)
                result = break_it(model)
                target = result if isinstance(result, Path) else model
                if command == "bench":
                    return ["bench", "--model", target, "--repeats", "1", "--warmup", "0", "--layouts", "fused",
                            "--mask-counts", "1"]
                return audit_argv(clip, extra=("--model", target))
            cases.append(Case("model directory", f"{name} [{command}]", build, expect))

    def graph_name(model):
        return json.loads((model / "manifest.json").read_text())["graphs"]["masks"]["int8-cpu"]

    model_case("missing", lambda m: m.parent / "nowhere", "nowhere")
    model_case("a file", lambda m: m / "config.json", "config.json")
    model_case("empty folder", lambda m: (shutil.rmtree(m), m.mkdir()) and None, "manifest.json")
    model_case("manifest deleted", lambda m: (m / "manifest.json").unlink(), "manifest.json")
    model_case("manifest not JSON", lambda m: (m / "manifest.json").write_text("{"), "manifest.json")
    model_case("manifest a list", lambda m: (m / "manifest.json").write_text("[]"), "manifest.json")
    model_case("manifest nested 100000 deep", lambda m: (m / "manifest.json").write_text("[" * 100000), "manifest.json")
    model_case("manifest 0 bytes", lambda m: (m / "manifest.json").write_bytes(b""), "manifest.json")
    model_case("manifest UTF-16", lambda m: (m / "manifest.json").write_text((m / "manifest.json").read_text(), encoding="utf-16"), "manifest.json")
    model_case("format_version older", lambda m: edit_json(m / "manifest.json", lambda d: d.__setitem__("format_version", 1)), "older runtime")
    model_case("format_version newer", lambda m: edit_json(m / "manifest.json", lambda d: d.__setitem__("format_version", 99)), "format_version")
    model_case("format unknown", lambda m: edit_json(m / "manifest.json", lambda d: d.__setitem__("format", "x")), "format")
    for field in ("files", "graphs", "contract", "name", "default_precision"):
        model_case(f"field {field} removed", lambda m, k=field: edit_json(m / "manifest.json", lambda d: d.pop(k)), field)
        model_case(f"field {field} a number", lambda m, k=field: edit_json(m / "manifest.json", lambda d: d.__setitem__(k, 7)), field)
    for bad in ("../manifest.json", "/etc/hostname", "..", "a/../../x", "", "./config.json/..", "C:\\x"):
        model_case(f"listed path {bad!r}", lambda m, b=bad: edit_json(m / "manifest.json", lambda d: d["files"].__setitem__(
            b, {"bytes": 1, "sha256": "0" * 64})), "manifest.json")
    model_case("listed file is a symlink out", lambda m: ((m / "config.json").unlink(), os.symlink("/etc/hostname", m / "config.json")), "config.json")
    for extra in ("extra.onnx", "EXTRA.ONNX", ".hidden.onnx", "notes.txt", "sub/dir.onnx", "MANIFEST.JSON"):
        model_case(f"unlisted file {extra}", lambda m, e=extra: ((m / e).parent.mkdir(parents=True, exist_ok=True),
                                                                  (m / e).write_bytes(b"x")), Path(extra).name)
    model_case("config.json deleted", lambda m: (m / "config.json").unlink(), "config.json")
    model_case("graph deleted", lambda m: (m / graph_name(m)).unlink(), "masks")
    def flip(m):
        path = m / graph_name(m)
        data = bytearray(path.read_bytes())
        path.unlink()
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    model_case("graph byte flipped", flip, "masks")
    def truncate(m):
        path = m / graph_name(m)
        data = path.read_bytes()[:1000]
        path.unlink()
        path.write_bytes(data)
    model_case("graph truncated", truncate, "masks")
    def garbage_vouched(m):
        path = m / graph_name(m)
        path.unlink()
        path.write_bytes(b"not onnx at all")
        rehash(m, graph_name(m))
    model_case("graph garbage but vouched for", garbage_vouched, "masks")
    for field, value in [("mask_types", ["a", "b", "c"]), ("mask_types", "perfect"), ("mask_types", ["x", "x", "y", "z", "w", "v", "u"]),
                         ("actions", []), ("actions", ["accept"]), ("key_size", 64), ("key_size", -1), ("key_size", "128"),
                         ("frame_size", 0), ("max_tokens", 2), ("max_tokens", None), ("architecture", "transformer"),
                         ("cell_motion", False)]:
        model_case(f"config {field} = {value!r}", lambda m, k=field, v=value: (edit_json(m / "config.json", lambda d: d.__setitem__(k, v)),
                                                                               rehash(m, "config.json")), field)
    model_case("config not JSON (vouched)", lambda m: ((m / "config.json").write_text("{{"), rehash(m, "config.json")), "config.json")
    model_case("config a list (vouched)", lambda m: ((m / "config.json").write_text("[1]"), rehash(m, "config.json")), "config.json")
    model_case("config edited, not vouched", lambda m: edit_json(m / "config.json", lambda d: d.__setitem__("key_size", 64)), "config.json")
    def small_vocab(m):
        edit_json(m / "manifest.json", lambda d: d["contract"]["text_encoder"]["inputs"][0].__setitem__("range", [0, 99]))
    model_case("tokenizer larger than the text graph's table", small_vocab, "vocabulary")
    model_case("tokenizer not JSON (vouched)", lambda m: ((m / "tokenizer.json").write_text("nope"), rehash(m, "tokenizer.json")), "tokenizer.json")
    model_case("score calibration not JSON (vouched)", lambda m: ((m / "score_calibration.json").write_text("{"),
                                                                  rehash(m, "score_calibration.json")), "score_calibration.json")
    model_case("score calibration knots decreasing (vouched)", lambda m: (edit_json(m / "score_calibration.json", _reverse_knots),
                                                                           rehash(m, "score_calibration.json")), "score_calibration.json")
    model_case("score calibration names a missing file", lambda m: edit_json(m / "manifest.json", lambda d: d.__setitem__(
        "score_calibration", "../x.json")), "x.json")
    model_case("contract shape emptied", lambda m: edit_json(m / "manifest.json", lambda d: d["contract"]["context"]["inputs"][0].__setitem__("shape", [])), "frames")
    model_case("contract dtype changed", lambda m: edit_json(m / "manifest.json", lambda d: d["contract"]["masks"]["inputs"][1].__setitem__("dtype", "int8")), "masks")
    model_case("default precision absent", lambda m: edit_json(without_precision(m) / "manifest.json",
                                                                lambda d: d.__setitem__("default_precision", "int8-trt")), "default_precision")
    return cases


def bench_cases() -> list[Case]:
    cases = []

    def bench_case(name, break_it, expect, commands=("audit", "validate", "calibrate"), accept=False):
        for command in commands:
            def build(folder, command=command):
                bench = bench_copy(folder)
                break_it(bench)
                out = folder / "out"
                if command == "audit":
                    return ["audit", "--bench", str(bench), "--out", str(out / "p.jsonl"), "--no-progress"]
                if command == "validate":
                    return ["data", "validate", str(bench)]
                return ["calibrate", "--bench", str(bench), "--out", str(out / "model"), "--quiet"]
            cases.append(Case("benchmark", f"{name} [{command}]", build, expect, accept=accept))

    image_json = f"{META}/test_s_image_filtered.json"

    def edit_items(change):
        def apply(bench):
            path = bench / image_json
            items = json.loads(path.read_text())
            change(items)
            path.write_text(json.dumps(items))
        return apply

    bench_case("metadata.csv missing", lambda b: (b / META / "metadata.csv").unlink(), "metadata.csv")
    bench_case("metadata.csv empty", lambda b: (b / META / "metadata.csv").write_text(""), "metadata.csv")
    bench_case("metadata.csv header only", lambda b: (b / META / "metadata.csv").write_text(
        (b / META / "metadata.csv").read_text().splitlines()[0] + "\n"), "metadata.csv")
    bench_case("metadata.csv binary", lambda b: (b / META / "metadata.csv").write_bytes(bytes(range(256)) * 4), "metadata.csv")
    bench_case("meta folder missing", lambda b: shutil.rmtree(b / META), META)
    bench_case("image JSON not JSON", lambda b: (b / image_json).write_text("{"), "test_s_image_filtered.json")
    bench_case("image JSON nested 100000 deep", lambda b: (b / image_json).write_text("[" * 100000), "test_s_image_filtered.json")
    bench_case("image JSON a number", lambda b: (b / image_json).write_text("42"), "test_s_image_filtered.json")
    bench_case("image JSON list of strings", lambda b: (b / image_json).write_text('["a", "b"]'), "test_s_image_filtered.json")
    # an item whose uid metadata.csv does not list is skipped (upstream's files hold such items),
    # so these are read safely, never followed: accepted, and nothing outside the root is opened
    for field, value in [("uid", "../../etc"), ("uid", "/etc/passwd"), ("vid", "../x"), ("vid", "/abs")]:
        bench_case(f"item {field} = {value!r} (not in metadata.csv: skipped)",
                   edit_items(lambda items, k=field, v=value: items[0].__setitem__(k, v)), "", ("audit", "validate"), True)
    bench_case("metadata.csv split = 'test_s\\x00' (an unknown split: its rows are ignored, as val and test_n)",
               lambda b: _edit_metadata(b, "split", "test_s\\x00"), "", ("audit", "validate"), True)
    for field, value in [("uid", ""),
                         ("gt_mask_path", "../../../etc/hostname"), ("gt_mask_path", "/etc/hostname"),
                         ("gt_mask_path", {"mask_path": "../../../../etc/hostname"}), ("part_neg_masks", "cut"),
                         ("full_neg_masks", {"a": 1})]:
        bench_case(f"item {field} = {value!r}", edit_items(lambda items, k=field, v=value: items[0].__setitem__(k, v)),
                   "test_s_image_filtered.json")
    for column, value in [("kfid", "99"), ("kfid", "-1"), ("kfid", "x"), ("fid", "1e9"), ("exp", ""), ("uid", "../../x"),
                          ("vid", "/etc")]:
        bench_case(f"metadata.csv {column} = {value!r}", lambda b, c=column, v=value: _edit_metadata(b, c, v), "metadata.csv")
    for key in ("cutout", "dilate"):
        bench_case(f"{key} mask_path outside", edit_items(lambda items, k=key: _set_first_mask(items, k, "mask_path", "../../../../etc/hostname")),
                   "test_s_image_filtered.json")
        bench_case(f"{key} iou_to_gt 'abc'", edit_items(lambda items, k=key: _set_first_mask(items, k, "iou_to_gt", "abc")),
                   "test_s_image_filtered.json")
        bench_case(f"{key} iou_to_gt 7", edit_items(lambda items, k=key: _set_first_mask(items, k, "iou_to_gt", 7)),
                   "test_s_image_filtered.json")
    bench_case("a mask file is text", lambda b: next((b / "candidates").rglob("*.png")).write_text("x"), ".png", ("audit", "validate"))
    bench_case("a frame is missing", lambda b: next((b / "media").rglob("*.jpg")).unlink(), ".jpg", ("audit", "validate"))
    bench_case("the audio is text", lambda b: next((b / "media").rglob("*.wav")).write_text("x"), ".wav", ("audit", "validate"))
    return cases


def _set_first_mask(items: list, key: str, field: str, value) -> None:
    """Set ``field`` of the first candidate whose type key (``cut``, ``Dilate``, ...) starts like ``key``."""
    for item in items:
        for k, entry in (item.get("part_neg_masks") or {}).items():
            if k.lower()[:3] == key[:3] and entry:
                entry[0][field] = value
                return
    raise KeyError(key)


def _edit_metadata(bench: Path, column: str, value: str) -> None:
    """Set ``column`` of the metadata.csv row of the first test_s expression."""
    import csv

    path = bench / META / "metadata.csv"
    rows = list(csv.reader(path.open(encoding="utf-8")))
    header = rows[0]
    row = next(r for r in rows[1:] if r[header.index("split")] == "test_s")
    row[header.index(column)] = value.replace("\\x00", "\x00")
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
