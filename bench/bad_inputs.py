"""The bad-input campaign: hostile and broken inputs through the real command line, each checked clean.

    python bench/bad_inputs.py [--out runs/bad_inputs.json] [--only CATEGORY]

Every case builds its bad file(s) in a fresh folder, runs ``auditor-lite ...`` as a subprocess and
calls the result **clean** when all of these hold (issue 12, "Fuzzing"):

- a non-zero exit status;
- no Python traceback, and one ``Error: ...`` line that names the file, field or argument at fault;
- no output created or changed (the ``--out`` path of the case does not appear);
- within 2 s wall time and 500 MB peak resident memory (of the child process).

Categories: frames, audio, masks, expression, frame index, model directory, benchmark, options. The
table of cases and their outcome goes to ``--out`` (JSON) and is summarised on stdout; docs/testing.md
quotes it. Torch-free: runs in the edge install (model-directory cases hard-link the packaged model's
graphs instead of copying them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "auditor_lite" / "assets" / "sample_clip"
MODEL = ROOT / "auditor_lite" / "assets" / "default_model"
UPSTREAM = ROOT / "tests" / "fixtures" / "upstream_small"
TIME_LIMIT_S = 2.0
MEMORY_LIMIT_MB = 500


@dataclass
class Case:
    category: str
    name: str
    build: Callable[[Path], list]      # folder -> argv after "auditor-lite"; must name `expect`
    expect: str                        # a substring the error line must contain (file, field, option)
    accept: bool = False               # a valid (if costly) input: it must succeed within the limits


# ----------------------------------------------------------------------------------- helpers
def clip_copy(folder: Path) -> Path:
    clip = folder / "clip"
    shutil.copytree(SAMPLE, clip)
    return clip


def audit_argv(clip: Path, *, frames=None, audio=None, expression="the sounding drum", frame="8",
               masks=None, extra=()) -> list:
    masks = masks if masks is not None else [clip / "masks" / "mask_00.png", clip / "masks" / "mask_01.png"]
    argv = ["audit", "--frames", frames or clip / "frames", "--audio", audio or clip / "audio.wav",
            "--expression", expression, "--frame", frame, "--masks", *masks, *extra]
    return [str(a) if not isinstance(a, bytes) else a for a in argv]


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    data = np.clip(samples, -1, 1)
    ints = (data * 32767).astype("<i2") if width == 2 else (data * 127 + 128).astype(np.uint8)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(ints.tobytes())
    return path


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares width x height (IDAT of zeros, compressed)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * width
    body = b"".join(compressor.compress(row) for _ in range(min(height, 64))) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def model_copy(folder: Path) -> Path:
    model = folder / "model"
    for path in MODEL.rglob("*"):
        if path.is_dir():
            continue
        target = model / path.relative_to(MODEL)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".onnx":
            try:
                os.link(path, target)
                continue
            except OSError:
                pass
        shutil.copy(path, target)
    return model


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    """Apply ``change`` (which mutates the loaded JSON in place; its return value is ignored)."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def rehash(model: Path, name: str) -> None:
    """Make the manifest vouch for an edited file (so the check under test is the next one)."""
    from hashlib import sha256

    path = model / name
    edit_json(model / "manifest.json", lambda m: m["files"].__setitem__(
        name, {"bytes": path.stat().st_size, "sha256": sha256(path.read_bytes()).hexdigest()}))


def _reverse_knots(calibration: dict) -> None:
    """Make the isotonic knots decrease, wherever the file keeps them."""
    for value in calibration.values():
        if isinstance(value, dict) and isinstance(value.get("y"), list):
            value["y"] = list(reversed(value["y"]))
            return
    calibration["y"] = list(reversed(calibration["y"]))


def bench_copy(folder: Path) -> Path:
    bench = folder / "bench"
    shutil.copytree(UPSTREAM, bench)
    return bench


META = "train_test_meta_files"


# ----------------------------------------------------------------------------------- cases
def frame_cases() -> list[Case]:
    cases = []

    def frames_case(name, make, expect=None):
        def build(folder):
            clip = clip_copy(folder)
            return audit_argv(clip, frames=make(clip, clip / "frames"))
        cases.append(Case("frames", name, build, expect or "frames"))

    frames_case("folder missing", lambda c, f: f.parent / "nowhere")
    frames_case("folder is a file", lambda c, f: c / "audio.wav", "audio.wav")
    frames_case("folder empty", lambda c, f: (shutil.rmtree(f), f.mkdir(), f)[2])
    for k in (0, 3, 9):
        frames_case(f"frame {k} missing", lambda c, f, k=k: ((f / f"{k}.jpg").unlink(), f)[1])
    frames_case("11 frames", lambda c, f: (shutil.copy(f / "0.jpg", f / "10.jpg"), f)[1])
    frames_case("frame is text", lambda c, f: ((f / "4.jpg").write_text("not an image"), f)[1], "4.jpg")
    frames_case("frame empty file", lambda c, f: ((f / "2.jpg").write_bytes(b""), f)[1], "2.jpg")
    frames_case("frame truncated JPEG", lambda c, f: ((f / "5.jpg").write_bytes((f / "5.jpg").read_bytes()[:200]), f)[1], "5.jpg")
    frames_case("frame of another size", lambda c, f: (Image.new("RGB", (64, 48)).save(f / "6.jpg"), f)[1], "6.jpg")
    frames_case("frame 1x1", lambda c, f: ([Image.new("RGB", (1, 1)).save(f / f"{k}.jpg") for k in range(10)], f)[1])
    frames_case("frame decompression bomb (30000x30000 PNG)",
                lambda c, f: ([(f / f"{k}.jpg").unlink() for k in range(10)],
                              [png_bomb(f / f"{k}.png", 30000, 30000) for k in range(10)], f)[2])
    frames_case("frame is a directory", lambda c, f: ((f / "7.jpg").unlink(), (f / "7.jpg").mkdir(), f)[2], "7.jpg")
    frames_case("frame is a WAV renamed", lambda c, f: (shutil.copy(c / "audio.wav", f / "1.jpg"), f)[1], "1.jpg")
    frames_case("folder name with odd characters, missing", lambda c, f: f.parent / "fr ämes\u202e", "fr ämes")

    def video_case(name, make, expect):
        def build(folder):
            clip = clip_copy(folder)
            argv = audit_argv(clip)
            i = argv.index("--frames")
            argv[i:i + 2] = ["--video", str(make(clip))]
            return argv
        cases.append(Case("frames", name, build, expect))

    video_case("video missing", lambda c: c / "none.mp4", "none.mp4")
    video_case("video is text", lambda c: (c / "v.mp4", (c / "v.mp4").write_text("hello"))[0], "v.mp4")
    video_case("video is a PNG", lambda c: (c / "v.mkv", shutil.copy(c / "masks" / "mask_00.png", c / "v.mkv"))[0], "v.mkv")
    cases.append(Case("frames", "both --frames and --video", lambda f: audit_argv(clip_copy(f), extra=("--video", "x.mp4")), "--video"))
    return cases


def audio_cases() -> list[Case]:
    cases = []

    def audio_case(name, make, expect="audio"):
        def build(folder):
            clip = clip_copy(folder)
            return audit_argv(clip, audio=make(clip))
        cases.append(Case("audio", name, build, expect))

    tone = lambda n: 0.3 * np.sin(np.arange(n) / 7.0)  # noqa: E731

    def accept_case(name, make):     # valid but costly: must succeed, within the time and memory limits
        def build(folder):
            clip = clip_copy(folder)
            return audit_argv(clip, audio=make(clip))
        cases.append(Case("audio", name, build, "", accept=True))

    audio_case("file missing", lambda c: c / "none.wav", "none.wav")
    audio_case("not audio", lambda c: (c / "a.wav", (c / "a.wav").write_text("RIFF? no"))[0], "a.wav")
    audio_case("empty file", lambda c: (c / "a.wav", (c / "a.wav").write_bytes(b""))[0], "a.wav")
    audio_case("truncated header", lambda c: (c / "a.wav", (c / "a.wav").write_bytes((c / "audio.wav").read_bytes()[:30]))[0], "a.wav")
    audio_case("a PNG renamed", lambda c: (c / "a.wav", shutil.copy(c / "masks" / "mask_00.png", c / "a.wav"))[0], "a.wav")
    audio_case("a directory", lambda c: c / "frames", "frames")
    audio_case("0.5 s", lambda c: write_wav(c / "a.wav", tone(8000), 16000), "a.wav")
    audio_case("0 samples", lambda c: write_wav(c / "a.wav", tone(0), 16000), "a.wav")
    audio_case("silent", lambda c: write_wav(c / "a.wav", np.zeros(160000), 16000), "a.wav")
    for rate in (1000, 4000, 7999, 192001, 384000, 999983):
        audio_case(f"{rate} Hz", lambda c, rate=rate: write_wav(c / "a.wav", tone(rate * 3 // 1 if rate < 200000 else rate), rate), "a.wav")
    audio_case("33 channels", lambda c: write_wav(c / "a.wav", np.tile(tone(16000 * 2), 33), 16000, channels=33), "a.wav")
    accept_case("10 minutes at 48 kHz (only the window is decoded)", lambda c: _long_wav(c / "a.wav", 600, 48000))
    accept_case("8-bit, 3 s, 11025 Hz", lambda c: write_wav(c / "a.wav", tone(3 * 11025), 11025, width=1))
    accept_case("stereo 44.1 kHz, 10 s", lambda c: write_wav(c / "a.wav", np.repeat(tone(441000), 2), 44100, channels=2))
    audio_case("NaN float WAV", lambda c: _float_wav(c / "a.wav", np.full(32000, np.nan)), "a.wav")
    audio_case("inf float WAV", lambda c: _float_wav(c / "a.wav", np.full(32000, np.inf)), "a.wav")
    audio_case("clipping at 40 dB over full scale", lambda c: _float_wav(c / "a.wav", 100 * tone(32000)), "a.wav")
    return cases


def _long_wav(path: Path, seconds: int, rate: int) -> Path:
    """A long tone written a second at a time: the campaign's own process stays small (a child
    forked from a big parent would carry its resident memory into the measurement)."""
    second = (0.3 * np.sin(np.arange(rate) / 7.0) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        for _ in range(seconds):
            out.writeframes(second)
    return path


def _float_wav(path: Path, samples: np.ndarray) -> Path:
    import soundfile as sf

    sf.write(str(path), samples.astype(np.float32), 16000, subtype="FLOAT")
    return path


def mask_cases() -> list[Case]:
    cases = []

    def mask_case(name, make, expect):
        def build(folder):
            clip = clip_copy(folder)
            return audit_argv(clip, masks=make(clip))
        cases.append(Case("masks", name, build, expect))

    size = Image.open(SAMPLE / "frames" / "0.jpg").size
    mask_case("missing", lambda c: [c / "nope.png"], "nope.png")
    mask_case("not an image", lambda c: [(c / "m.png", (c / "m.png").write_text("x"))[0]], "m.png")
    mask_case("empty file", lambda c: [(c / "m.png", (c / "m.png").write_bytes(b""))[0]], "m.png")
    mask_case("wrong size", lambda c: [(c / "m.png", Image.new("L", (size[0] + 1, size[1])).save(c / "m.png"))[0]], "m.png")
    mask_case("soft values (a gradient)", lambda c: [(c / "m.png", Image.fromarray(
        np.tile(np.arange(size[0], dtype=np.uint8), (size[1], 1))).save(c / "m.png"))[0]], "m.png")
    mask_case("colour mask with three values", lambda c: [(c / "m.png", Image.fromarray(
        (np.random.default_rng(0).integers(0, 3, (size[1], size[0], 3)) * 100).astype(np.uint8)).save(c / "m.png"))[0]], "m.png")
    mask_case("decompression bomb 20000x20000", lambda c: [png_bomb(c / "m.png", 20000, 20000)], "m.png")
    mask_case("12 MP mask, wrong size (must be refused fast)", lambda c: [png_bomb(c / "m.png", 4000, 3000)], "m.png")
    mask_case("truncated PNG", lambda c: [(c / "m.png", (c / "m.png").write_bytes(
        (SAMPLE / "masks" / "mask_00.png").read_bytes()[:60]))[0]], "m.png")
    mask_case("a directory", lambda c: [c / "frames"], "frames")
    mask_case("the second of three is bad", lambda c: [c / "masks" / "mask_00.png", (c / "bad.png", (c / "bad.png").write_text("x"))[0],
                                                     c / "masks" / "mask_01.png"], "bad.png")
    mask_case("no masks at all", lambda c: [], "mask")
    cases.append(Case("masks", "mask dir empty", lambda f: _mask_dir_case(f), "mask"))
    return cases


def _mask_dir_case(folder: Path) -> list:
    clip = clip_copy(folder)
    (clip / "empty").mkdir()
    argv = audit_argv(clip, masks=[])
    i = argv.index("--masks")
    argv[i:i + 1] = ["--mask-dir", str(clip / "empty")]
    return argv


def expression_cases() -> list[Case]:
    cases = []
    for name, text in [("empty", ""), ("spaces", "   "), ("newlines only", "\n\n"), ("1001 characters", "a" * 1001),
                       ("50000 characters", "the dog " * 6250), ("tabs and NUL-free control", "\t\x0b\x0c"),
                       ("non-UTF-8 bytes (lone surrogates)", b"the \xff\xfe dog"), ("zero-width only", "\u200b\u200c\u200d")]:
        cases.append(Case("expression", name, lambda f, t=text: audit_argv(clip_copy(f), expression=t), "expression"))
    cases.append(Case("expression", "option missing", lambda f: [a for a in audit_argv(clip_copy(f))
                                                                  if a not in ("--expression", "the sounding drum")], "expression"))
    return cases


def frame_index_cases() -> list[Case]:
    cases = []
    for value in ("-1", "10", "x", "3.5", "", "99999999999999999999"):
        cases.append(Case("frame index", f"--frame {value!r}", lambda f, v=value: audit_argv(clip_copy(f), frame=v), "--frame"))
    return cases


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
                    return ["bench", "--model", target, "--repeats", "1", "--warmup", "0", "--layouts", "split",
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
    model_case("default precision absent", lambda m: edit_json(m / "manifest.json", lambda d: d.__setitem__("default_precision", "int8-trt")), "default_precision")
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


def option_cases() -> list[Case]:
    cases = []
    sample = lambda f: audit_argv(clip_copy(f))  # noqa: E731
    for option, value in [("--precision", "int4"), ("--precision", "int8-trt"), ("--threads", "0"), ("--threads", "-2"),
                          ("--threads", "many")]:
        cases.append(Case("options", f"audit {option} {value}", lambda f, o=option, v=value: sample(f) + [o, v], option if value != "int8-trt" else "int8-trt"))
    for argv, expect in [(["bench", "--mask-counts", "a,b", "--repeats", "1"], "--mask-counts"),
                         (["bench", "--mask-counts", "0", "--repeats", "1"], "--mask-counts"),
                         (["bench", "--layouts", "sideways", "--repeats", "1"], "--layouts"),
                         (["bench", "--repeats", "0"], "--repeats"),
                         (["calibrate", "--bench", str(UPSTREAM), "--out", "OUT", "--coverage", "1.5"], "--coverage"),
                         (["calibrate", "--bench", str(UPSTREAM), "--out", "OUT", "--split", "val"], "--split"),
                         (["calibrate", "--bench", str(UPSTREAM), "--out", "OUT"], "test_s_image_filtered.json"),
                         (["calibrate", "--bench", "/nonexistent", "--out", "OUT"], "--bench"),
                         (["audit", "--bench", str(UPSTREAM)], "--out"),
                         (["audit", "--bench", str(UPSTREAM), "--out", "OUT", "--split", "val"], "--split"),
                         (["select", "--bench", "/nonexistent"], "nonexistent"),
                         (["eval", "--bench", str(UPSTREAM), "--pred", "/nonexistent.jsonl"], "nonexistent"),
                         (["demo", "--sample", "/nonexistent"], "nonexistent"),
                         (["audit"], "frames")]:
        cases.append(Case("options", " ".join(argv[:4]), lambda f, a=argv: [str(f / "out") if x == "OUT" else x for x in a], expect))
    return cases


# ----------------------------------------------------------------------------------- running
def run_case(case: Case, exe: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
        folder = Path(tmp)
        try:
            argv = case.build(folder)
        except Exception as exc:  # the case itself is broken: report, never count as clean
            return {"category": case.category, "name": case.name, "clean": False, "why": f"case setup: {exc!r}"}
        before = {p for p in folder.rglob("*")}
        args = [exe] + [a if isinstance(a, bytes) else str(a) for a in argv]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        started = time.perf_counter()
        with open(folder / ".stdout", "w+b") as out_file, open(folder / ".stderr", "w+b") as err_file:
            before |= {folder / ".stdout", folder / ".stderr"}
            proc = subprocess.Popen(args, stdout=out_file, stderr=err_file, env=env, cwd=folder)
            killer = threading.Timer(60, proc.kill)
            killer.start()
            _, status, usage = os.wait4(proc.pid, 0)      # this child's own peak memory
            killer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - started
            out_file.seek(0)
            err_file.seek(0)
            out, err = out_file.read(), err_file.read()
        peak_mb = round(usage.ru_maxrss / 1024.0, 1)
        text = (out + err).decode("utf-8", "replace")
        error_lines = [line for line in text.splitlines() if line.startswith("Error")]
        created = {p for p in folder.rglob("*")} - before
        problems = []
        if case.accept:
            if proc.returncode != 0:
                problems.append(f"exit status {proc.returncode} for a valid input")
        elif proc.returncode == 0:
            problems.append("exit status 0")
        if "Traceback" in text:
            problems.append("traceback")
        report = args[1:3] == ["data", "validate"]     # a multi-line report by design, exit status 1
        if report:
            if case.expect.lower() not in text.lower():
                problems.append(f"the report does not name {case.expect!r}")
        elif not case.accept:
            if len(error_lines) != 1:
                problems.append(f"{len(error_lines)} 'Error' lines")
            elif case.expect.lower() not in error_lines[0].lower():
                problems.append(f"the error does not name {case.expect!r}")
        if created and not case.accept:
            problems.append(f"created {sorted(str(p.relative_to(folder)) for p in created)[:3]}")
        if seconds > TIME_LIMIT_S:
            problems.append(f"{seconds:.2f} s")
        if peak_mb is not None and peak_mb > MEMORY_LIMIT_MB:
            problems.append(f"{peak_mb:.0f} MB")
        return {"category": case.category, "name": case.name, "clean": not problems, "why": "; ".join(problems),
                "seconds": round(seconds, 2), "peak_mb": peak_mb, "exit": proc.returncode,
                "message": (error_lines[0] if error_lines else (text.strip().splitlines() or [""])[-1])[:300]}


ALL = {"frames": frame_cases, "audio": audio_cases, "masks": mask_cases, "expression": expression_cases,
       "frame index": frame_index_cases, "model directory": model_cases, "benchmark": bench_cases, "options": option_cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bad_inputs.json"))
    parser.add_argument("--only", choices=sorted(ALL), default=None)
    parser.add_argument("--exe", default=shutil.which("auditor-lite") or "auditor-lite")
    args = parser.parse_args()
    cases = [c for name, make in ALL.items() if args.only in (None, name) for c in make()]
    results = []
    for i, case in enumerate(cases):
        result = run_case(case, args.exe)
        results.append(result)
        mark = "ok  " if result["clean"] else "FAIL"
        print(f"{mark} [{i + 1}/{len(cases)}] {case.category}: {case.name} ({result.get('seconds', '-')} s)"
              + ("" if result["clean"] else f" -- {result['why']} | {result.get('message', '')}"), flush=True)
    clean = sum(r["clean"] for r in results)
    by_category = {}
    for r in results:
        c = by_category.setdefault(r["category"], [0, 0])
        c[0] += r["clean"]
        c[1] += 1
    summary = {"cases": len(results), "clean": clean, "by_category": by_category,
               "max_seconds": max((r.get("seconds", 0) for r in results), default=0),
               "max_peak_mb": max((r.get("peak_mb") or 0 for r in results), default=0),
               "load_average": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
