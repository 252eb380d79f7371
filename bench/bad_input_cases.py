"""The cases of the bad-input campaign (``bench/bad_inputs.py`` runs them): each builds its bad
file(s) in a fresh folder and returns the ``auditor-lite`` arguments, with what the error must name."""

from __future__ import annotations

import json
import os
import shutil
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


def without_precision(model: Path, precision: str = "int8-trt") -> Path:
    """The directory without one precision's graphs (files deleted, manifest entries dropped), so that
    asking for that precision is bad input again."""
    def drop(manifest):
        for graph in manifest["graphs"].values():
            graph.pop(precision, None)
        for name in [n for n in manifest["files"] if f".{precision}." in n]:
            manifest["files"].pop(name)
    for path in list(model.rglob(f"*.{precision}.*")):
        path.unlink()
    edit_json(model / "manifest.json", drop)
    return model


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


def option_cases() -> list[Case]:
    cases = []
    sample = lambda f: audit_argv(clip_copy(f))  # noqa: E731
    for option, value in [("--precision", "int4"), ("--threads", "0"), ("--threads", "-2"), ("--threads", "many")]:
        cases.append(Case("options", f"audit {option} {value}", lambda f, o=option, v=value: sample(f) + [o, v], option))
    cases.append(Case("options", "audit --precision int8-trt of a directory without it",
                      lambda f: audit_argv(clip_copy(f), extra=("--model", without_precision(model_copy(f)),
                                                                "--precision", "int8-trt")), "int8-trt"))
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


def _tree_cases():
    from bad_input_trees import bench_cases, model_cases

    return model_cases, bench_cases


ALL = {"frames": frame_cases, "audio": audio_cases, "masks": mask_cases, "expression": expression_cases,
       "frame index": frame_index_cases, "model directory": lambda: _tree_cases()[0](),
       "benchmark": lambda: _tree_cases()[1](), "options": option_cases}
