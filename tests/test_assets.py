"""Asset pipeline: the .rcc/.deb readers, licence notes, the procedural library, the cache round
trip and a build from a tiny fake gcompris package. None of it needs the real package; one test
builds from it when $AUDITOR_LITE_GCOMPRIS_DEB names it."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tarfile
import time
import zlib
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from auditor_lite.data import assets as assets_mod
from auditor_lite.data.assets import (AssetBuildError, AssetLibrary, build_asset_cache, decode_recording,
                                      load_library, svg_rasterizer)
from auditor_lite.data.procedural import (CATEGORIES, PALETTE, _render, colour_words, crop_to_alpha,
                                          procedural_library)
from auditor_lite.data.rcc import (CopyrightNotes, RccBundle, deb_version, extract_deb, qt_hash,
                                   read_deb_members)
from auditor_lite.data.schema import SAMPLE_RATE, DataError


# -- a minimal rcc writer (Qt's layout: header, data, names, tree; children listed contiguously) --
def make_rcc(files: dict[str, tuple[bytes, int]], version: int = 3) -> bytes:
    """``files``: path -> (bytes, flags) with flags 0 (stored), 1 (zlib) or 4 (zstd, raw bytes)."""
    tree: dict = {}
    for path, payload in files.items():
        node = tree
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = payload
    nodes, queue = [("", tree)], [tree]  # breadth-first, so each directory's children are contiguous
    first_child = {}
    while queue:
        directory = queue.pop(0)
        first_child[id(directory)] = len(nodes)
        for name, child in directory.items():
            nodes.append((name, child))
            if isinstance(child, dict):
                queue.append(child)
    data, names, name_at, data_at = b"", b"", {}, {}
    for name, child in nodes:
        if name not in name_at:
            name_at[name] = len(names)
            names += struct.pack(">HI", len(name), qt_hash(name)) + name.encode("utf-16-be")
        if not isinstance(child, dict):
            payload, flags = child
            if flags == 1:
                payload = struct.pack(">I", len(payload)) + zlib.compress(payload)
            data_at[id(child)] = len(data)
            data += struct.pack(">I", len(payload)) + payload
    tree_bytes = b""
    for name, child in nodes:
        if isinstance(child, dict):
            tree_bytes += struct.pack(">IHII", name_at[name], 2, len(child), first_child[id(child)])
        else:
            tree_bytes += struct.pack(">IHHHI", name_at[name], child[1], 0, 1, data_at[id(child)])
        if version >= 2:
            tree_bytes += struct.pack(">Q", 0)
    header_size = 24 if version >= 3 else 20
    data_off, names_off = header_size, header_size + len(data)
    tree_off = names_off + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_off, data_off, names_off)
    header += struct.pack(">I", 0) if version >= 3 else b""
    return header + data + names + tree_bytes


SAMPLE_FILES = {"top.txt": (b"hello", 0), "sub/inner.bin": (bytes(range(256)) * 40, 1),
                "sub/deeper/leaf.txt": ("é ünïcode".encode(), 0)}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_lists_and_reads_nested_and_compressed_files(tmp_path, version):
    path = tmp_path / "x.rcc"
    path.write_bytes(make_rcc(SAMPLE_FILES, version))
    bundle = RccBundle(path)
    assert sorted(bundle.names()) == sorted(SAMPLE_FILES)
    for name, (payload, flags) in SAMPLE_FILES.items():
        assert bundle.read(name) == payload
    assert {e.path: e.compression for e in bundle.entries()}["sub/inner.bin"] == "zlib"
    written = bundle.extract_all(tmp_path / "out")
    assert (tmp_path / "out/sub/deeper/leaf.txt").read_bytes() == SAMPLE_FILES["sub/deeper/leaf.txt"][0]
    assert len(written) == 3 and "sub/inner.bin" in bundle and "nope" not in bundle


def test_rcc_errors_name_the_problem(tmp_path, monkeypatch):
    bad = tmp_path / "bad.rcc"
    bad.write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(DataError, match="bad.rcc.*qres"):
        RccBundle(bad)
    with pytest.raises(DataError, match="no file 'missing.txt'"):
        RccBundle(make_rcc(SAMPLE_FILES)).read("missing.txt")
    blob = bytearray(make_rcc({"z.bin": (b"x" * 100, 1)}))
    blob[24 + 4 + 4 + 2] ^= 0xFF  # flip a byte inside the zlib stream (after size and length prefix)
    with pytest.raises(DataError, match="z.bin: corrupt zlib"):
        RccBundle(bytes(blob), name="corrupt.rcc").read("z.bin")
    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)  # import fails
    with pytest.raises(DataError, match="install the 'zstandard' package"):
        RccBundle(make_rcc({"z.bin": (b"\x28\xb5\x2f\xfd", 4)})).read("z.bin")
    with pytest.raises(DataError, match="corrupt tree: node 4 is out of range"):
        RccBundle(make_rcc(SAMPLE_FILES)[:-30])


# -- a minimal .deb writer ------------------------------------------------------------------------
def _tar(files: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def make_deb(data_files: dict[str, bytes], version: str = "9.9-1") -> bytes:
    control = f"Package: gcompris-qt-data\nVersion: {version}\n".encode()
    out = b"!<arch>\n"
    for name, payload in (("debian-binary", b"2.0\n"), ("control.tar.gz", _tar({"./control": control}, "w:gz")),
                          ("data.tar.xz", _tar(data_files, "w:xz"))):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(payload):<10}".encode() + b"`\n" + payload
        out += b"\n" if len(payload) % 2 else b""
    return out


def test_deb_reader_extracts_and_refuses_escaping_paths(tmp_path):
    deb = tmp_path / "p.deb"
    deb.write_bytes(make_deb({"./usr/share/a.txt": b"A", "./usr/lib/b.txt": b"B"}, version="3.1-2"))
    assert set(read_deb_members(deb)) == {"debian-binary", "control.tar.gz", "data.tar.xz"}
    assert deb_version(deb) == "3.1-2"
    written = extract_deb(deb, tmp_path / "x", ("usr/share/",))
    assert [p.read_bytes() for p in written] == [b"A"]
    evil = tmp_path / "evil.deb"
    evil.write_bytes(make_deb({"../../escape.txt": b"!"}))
    with pytest.raises(DataError, match="outside"):
        extract_deb(evil, tmp_path / "y")
    (tmp_path / "not.deb").write_bytes(b"hello")
    with pytest.raises(DataError, match="not a Debian package"):
        read_deb_members(tmp_path / "not.deb")


def test_copyright_notes_pick_readme_then_last_dep5_paragraph():
    dep5 = ("Format: x\n\nFiles: *\nCopyright: Everyone\nLicense: GPL-3+\n\n"
            "Files: src/activities/a/resource/photo.jpg\n Copyright: ignored\nLicense: CC-BY-2.0\n"
            "Comment: https://example.org/photo\n\n"
            "Files: src/activities/a/resource/*.svg\nCopyright: Artist\nLicense: GPL-3+\n\n"
            "Files: src/activities/a/resource/pic.svg\nCopyright: Later\nLicense: CC0-1.0\n")
    readme = ("Copyright: Jane\nLicense: CC-BY-SA 4.0\nSource: https://example.org/cat\nFiles:\ncat.webp\n\n"
              "Copyright: Old\nLicense: GPL\nnoted.svg\n")  # the second block forgot "Files:"
    notes = CopyrightNotes(dep5)
    notes.add_readme("gcompris/src/activities/a/resource/README", readme)
    base = "gcompris/src/activities/a/resource/"
    cat = notes.lookup(base + "cat.webp")
    assert (cat.licence, cat.copyright, cat.source) == ("CC-BY-SA-4.0", "Jane", "https://example.org/cat")
    photo = notes.lookup(base + "photo.webp")  # Debian still names the JPEG that became WebP
    assert (photo.licence, photo.source, photo.basis) == ("CC-BY-2.0", "https://example.org/photo",
                                                          "debian/copyright")
    assert notes.lookup(base + "pic.svg").licence == "CC0-1.0"          # last match wins
    assert notes.lookup(base + "noted.svg").licence == "GPL-3+"         # README "GPL" refined
    fallback = notes.lookup("gcompris/src/other/thing.ogg")
    assert (fallback.licence, fallback.basis) == ("GPL-3+", "debian/copyright (Files: *)")


# -- procedural library and appearance words ------------------------------------------------------
def test_procedural_library_is_deterministic_and_complete():
    # No timing assertion: speed is shown by benchmarks, not by unit tests on a noisy machine.
    procedural_library.cache_clear()
    lib = procedural_library(11)
    procedural_library.cache_clear()
    again = procedural_library(11)
    assert again is not lib
    for a, b in zip(lib.objects, again.objects):
        assert a.name == b.name and np.array_equal(a.rgba, b.rgba) and np.array_equal(a.sound, b.sound)
    assert all(np.array_equal(a, b) for a, b in zip(lib.backgrounds, again.backgrounds))
    other = procedural_library(12)
    assert any(not np.array_equal(a.sound, b.sound) for a, b in zip(lib.objects, other.objects))
    assert lib.origin == "procedural" and len(lib.categories()) >= 12
    for category in lib.categories():
        variants = lib.objects_of(category)
        assert len(variants) >= 2
        assert len({v.attributes["color"] for v in variants}) == len(variants), category
        assert "_" not in category  # uids are <vid>_<category>_<k>
    for obj in lib.objects:
        coverage = obj.mask.mean()
        assert obj.rgba.dtype == np.uint8 and obj.rgba.shape[2] == 4 and 0.05 < coverage < 0.98
        assert obj.sound.dtype == np.float32 and len(obj.sound) >= SAMPLE_RATE
        assert np.isfinite(obj.sound).all() and np.sqrt(np.mean(obj.sound ** 2)) > 0.02
    assert len(lib.backgrounds) >= 8
    assert all(bg.dtype == np.uint8 and bg.shape == (256, 256, 3) and bg.std() > 10 for bg in lib.backgrounds)


def test_procedural_timbres_differ_between_categories():
    lib = procedural_library(0)
    spectra = {}
    for category in lib.categories():
        wave = lib.objects_of(category)[0].sound
        magnitude = np.abs(np.fft.rfft(wave))
        bands = np.add.reduceat(magnitude, np.arange(0, len(magnitude), len(magnitude) // 64))
        spectra[category] = bands / np.linalg.norm(bands)
    names = sorted(spectra)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert spectra[a] @ spectra[b] < 0.97, f"{a} and {b} sound alike"


def test_colour_words_match_the_fill_of_every_shape():
    for category, (draw, *_rest) in CATEGORIES.items():
        for word, rgb in PALETTE.items():
            assert colour_words(_render(draw, rgb, 1.0))[0] == word, (category, word)


@pytest.mark.parametrize("rgb,expected", [((250, 128, 114), "pink"), ((130, 80, 40), "brown"),
                                          ((20, 20, 20), "black"), ((200, 200, 205), "gray"),
                                          ((250, 250, 250), "white"), ((30, 200, 200), "blue")])
def test_colour_words_of_plain_patches(rgb, expected):
    patch = np.zeros((10, 10, 4), np.uint8)
    patch[..., :3], patch[..., 3] = rgb, 255
    patch[:3, :, 3] = 0  # transparent pixels do not vote
    patch[:3, :, :3] = (255, 0, 0)
    assert colour_words(patch) == [expected]


def test_crop_to_alpha_trims_and_scales():
    rgba = np.zeros((100, 200, 4), np.uint8)
    rgba[40:60, 50:130] = (10, 200, 10, 255)
    sprite = crop_to_alpha(rgba, 64, margin=0)
    assert sprite.shape == (16, 64, 4)
    assert (sprite[..., 3] > 127).mean() > 0.95


# -- sounds ---------------------------------------------------------------------------------------
def _ogg(wave: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def test_decode_recording_resamples_mixes_and_trims():
    rate = 44100
    t = np.arange(int(1.5 * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    stereo = np.stack([np.r_[np.zeros(rate // 2), tone], np.r_[np.zeros(rate // 2), tone]], axis=1)
    wave = decode_recording(_ogg(stereo, rate))
    assert wave.dtype == np.float32 and abs(np.abs(wave).max() - 0.9) < 1e-3
    assert abs(len(wave) / SAMPLE_RATE - 1.5) < 0.1        # the 0.5 s lead-in is trimmed
    peak_hz = np.argmax(np.abs(np.fft.rfft(wave))) * SAMPLE_RATE / len(wave)
    assert abs(peak_hz - 1000) < 5
    short = decode_recording(_ogg(0.5 * np.sin(2 * np.pi * 440 * t[: rate // 4]), rate))
    assert len(short) == SAMPLE_RATE                          # padded to 1 s
    with pytest.raises(DataError, match="clip.ogg: recording is silent"):
        decode_recording(_ogg(np.zeros(rate), rate), "clip.ogg")
    with pytest.raises(DataError, match="not a decodable recording"):
        decode_recording(b"garbage" * 10, "x.ogg")


# -- the cache ------------------------------------------------------------------------------------
def write_fake_cache(root: Path, sample_rate: int = SAMPLE_RATE) -> dict:
    """A one-object cache as build_asset_cache lays it out."""
    sprite = np.zeros((30, 40, 4), np.uint8)
    sprite[5:25, 5:35] = (200, 30, 30, 255)
    (root / "sprites").mkdir(parents=True)
    Image.fromarray(sprite, "RGBA").save(root / "sprites/bell-x.png")
    sound = (0.5 * np.sin(np.linspace(0, 800 * np.pi, sample_rate))).astype(np.float32)
    (root / "sounds").mkdir()
    sf.write(root / "sounds/bell.wav", sound, sample_rate, subtype="PCM_16")
    (root / "backgrounds").mkdir()
    Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(root / "backgrounds/b.jpg")
    meta = {"format": 1, "origin": "gcompris-qt-data 0.0-test",
            "objects": [{"name": "bell", "category": "bell", "kind": "instrument", "sprite": "sprites/bell-x.png",
                         "sound": "sounds/bell.wav", "attributes": {"color": "red"}, "licence": "CC0-1.0",
                         "source": "test"}],
            "backgrounds": [{"file": "backgrounds/b.jpg"}]}
    (root / "assets.json").write_text(json.dumps(meta))
    return {"sprite": sprite, "sound": sound}


def test_cache_round_trip_is_memoized_and_reloads_when_rebuilt(tmp_path):
    truth = write_fake_cache(tmp_path)
    lib = load_library(tmp_path)
    assert isinstance(lib, AssetLibrary) and lib.origin == "gcompris-qt-data 0.0-test"
    (obj,) = lib.objects
    assert (obj.name, obj.category, obj.kind, obj.attributes, obj.licence) == (
        "bell", "bell", "instrument", {"color": "red"}, "CC0-1.0")
    assert np.array_equal(obj.rgba, truth["sprite"]) and np.array_equal(obj.mask, truth["sprite"][..., 3] > 127)
    assert np.abs(obj.sound - truth["sound"]).max() < 1e-3   # PCM16 rounding
    assert lib.backgrounds[0].shape == (256, 256, 3) and lib.categories() == ["bell"]
    assert load_library(tmp_path) is lib
    meta = json.loads((tmp_path / "assets.json").read_text())
    meta["objects"][0]["category"] = "gong"
    (tmp_path / "assets.json").write_text(json.dumps(meta))
    os.utime(tmp_path / "assets.json", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert load_library(tmp_path).categories() == ["gong"]


def test_cache_errors_name_file_and_field(tmp_path):
    write_fake_cache(tmp_path / "rate", sample_rate=22050)
    with pytest.raises(DataError, match="bell.wav: sample rate 22050"):
        load_library(tmp_path / "rate")
    write_fake_cache(tmp_path / "key")
    meta = json.loads((tmp_path / "key/assets.json").read_text())
    del meta["objects"][0]["kind"]
    (tmp_path / "key/assets.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"assets.json \[objects\[0\]\]: object 0 lacks 'kind'"):
        load_library(tmp_path / "key")
    write_fake_cache(tmp_path / "gone")
    (tmp_path / "gone/backgrounds/b.jpg").unlink()
    with pytest.raises(DataError, match="b.jpg"):
        load_library(tmp_path / "gone")
    with pytest.raises(DataError, match="no asset cache here"):
        load_library(tmp_path / "empty")


def test_load_library_falls_back_to_procedural(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITOR_LITE_ASSETS", str(tmp_path / "nothing-built"))
    assert assets_mod.default_asset_dir() == tmp_path / "nothing-built"
    assert load_library(seed=3).origin == "procedural"
    write_fake_cache(tmp_path / "nothing-built")
    assert load_library().origin == "gcompris-qt-data 0.0-test"
    assert load_library(procedural=True).origin == "procedural"


# -- building from a (fake) package ---------------------------------------------------------------
def _rasterizer_or_skip():
    try:
        return svg_rasterizer()
    except AssetBuildError as exc:
        pytest.skip(str(exc))


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="50">'
       b'<rect x="10" y="10" width="40" height="30" fill="#1e5adc"/></svg>')


def test_svg_rasterizer_renders_colour_and_alpha():
    rgba = _rasterizer_or_skip()(SVG, 200)
    assert rgba.shape == (100, 200, 4)
    inside, outside = rgba[50, 60], rgba[5, 5]
    assert outside[3] == 0 and inside[3] == 255 and abs(int(inside[2]) - 0xDC) <= 1
    assert abs((rgba[..., 3] > 127).sum() - 80 * 60) <= 2 * (80 + 60)   # a 40x30 rect at scale 2
    sprite = assets_mod.rasterize_sprite(_rasterizer_or_skip(), SVG)
    assert colour_words(crop_to_alpha(sprite, 64)) == ["blue"]


def test_missing_svg_renderer_is_named(monkeypatch):
    def no_library():
        raise OSError("librsvg-2.so.2: cannot open shared object file")

    monkeypatch.setattr(assets_mod, "_load_librsvg", no_library)
    monkeypatch.setattr(assets_mod.shutil, "which", lambda name: None)
    with pytest.raises(AssetBuildError, match="needs librsvg: install Debian's librsvg2-2"):
        svg_rasterizer()


def fake_package(tmp_path: Path) -> Path:
    """A .deb laid out like gcompris-qt-data with two tiny bundles and a Debian copyright file."""
    rate = 22050
    ogg = _ogg(0.4 * np.sin(2 * np.pi * 330 * np.arange(rate * 2) / rate), rate)
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(photo, "WEBP")
    tiny = io.BytesIO()
    Image.new("RGB", (100, 90)).save(tiny, "WEBP")
    drawing = io.BytesIO()
    cut_out = np.zeros((60, 60, 4), np.uint8)
    cut_out[10:50, 20:40] = (240, 220, 40, 255)
    Image.fromarray(cut_out, "RGBA").save(drawing, "WEBP", lossless=True)
    root = "gcompris/src/activities/"
    toys = make_rcc({root + "toys/resource/bell.svg": (SVG, 1), root + "toys/resource/bell.ogg": (ogg, 0),
                     root + "toys/resource/bell2.webp": (drawing.getvalue(), 0),
                     root + "toys/resource/README": (b"Copyright: Ann\nLicense: CC0-1.0\nFiles:\nbell.svg\n", 0)})
    pics = make_rcc({root + "pics/resource/field.webp": (photo.getvalue(), 0),
                     root + "pics/resource/cow.webp": (photo.getvalue(), 0),
                     root + "pics/resource/small.webp": (tiny.getvalue(), 1)})
    copyright_ = b"Files: *\nCopyright: GCompris team\nLicense: GPL-3+\n"
    deb = tmp_path / "gcompris-qt-data_0.1-1_all.deb"
    deb.write_bytes(make_deb({"./usr/share/gcompris-qt/rcc/toys.rcc": toys,
                              "./usr/share/gcompris-qt/rcc/pics.rcc": pics,
                              "./usr/share/doc/gcompris-qt-data/copyright": copyright_}, version="0.1-1"))
    return deb


TINY_CATALOGUE = {
    "objects": [{"name": "hand bell", "category": "bell", "kind": "instrument", "family": "percussion",
                 "size": "small", "sprites": ["toys:resource/bell.svg", "toys:resource/bell2.webp"],
                 "sounds": ["toys:resource/bell.ogg"]}],
    "backgrounds": [{"glob": "pics:resource/*.webp", "skip": {"cow": "shows a cow"}}],
    "not_used": {}}


def test_build_from_a_fake_package_round_trips(tmp_path, monkeypatch):
    _rasterizer_or_skip()
    monkeypatch.setattr(assets_mod, "load_catalogue", lambda: TINY_CATALOGUE)
    out = tmp_path / "cache"
    summary = build_asset_cache(out, deb=fake_package(tmp_path), progress=False)
    assert "gcompris-qt-data 0.1-1" in summary and "objects: 2 (2 instrument)" in summary
    assert "backgrounds: 1 (2 skipped" in summary
    meta = json.loads((out / "assets.json").read_text())
    assert {s["reason"] for s in meta["skipped_backgrounds"]} == {"shows a cow", "too small (100x90)"}
    first, second = meta["objects"]
    assert first["credits"][0]["licence"] == "CC0-1.0" and first["credits"][1]["licence"] == "GPL-3+"
    assert first["sound"] == second["sound"] == "sounds/toys-bell.wav"   # one recording, two sprites
    lib = load_library(out)
    assert [o.attributes["color"] for o in lib.objects] == ["blue", "yellow"]
    assert all(max(o.rgba.shape[:2]) == 256 and o.mask.any() for o in lib.objects)
    assert lib.objects[0].sound.dtype == np.float32 and len(lib.objects[0].sound) > SAMPLE_RATE
    assert lib.backgrounds[0].shape == (320, 320, 3)
    assert not (tmp_path / ".cache.partial").exists()


def test_build_failures_are_clear_messages(tmp_path, monkeypatch):
    _rasterizer_or_skip()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(AssetBuildError, match="neither empty nor an asset cache"):
        build_asset_cache(precious, deb=tmp_path / "whatever.deb")
    assert (precious / "thesis.txt").exists()
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"not an archive")
    with pytest.raises(AssetBuildError, match="bogus.deb: not a Debian package"):
        build_asset_cache(tmp_path / "out", deb=bogus, progress=False)
    assert issubclass(AssetBuildError, click.ClickException)  # the CLI prints it without a traceback
    monkeypatch.setattr(assets_mod, "load_catalogue", lambda: {
        **TINY_CATALOGUE, "objects": [{**TINY_CATALOGUE["objects"][0], "sprites": ["toys:resource/nope.svg"]}]})
    with pytest.raises(AssetBuildError, match="no file .*nope.svg"):
        build_asset_cache(tmp_path / "out", deb=fake_package(tmp_path), progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_cli_reports_a_bad_package_without_traceback(tmp_path):
    from click.testing import CliRunner

    from auditor_lite.data.cli import data

    _rasterizer_or_skip()
    bogus = tmp_path / "bogus.deb"
    bogus.write_bytes(b"nope")
    result = CliRunner().invoke(data, ["assets", "--out", str(tmp_path / "c"), "--deb", str(bogus)])
    assert result.exit_code == 1 and "Error:" in result.output and "not a Debian package" in result.output
    assert "Traceback" not in result.output


REAL_DEB = os.environ.get("AUDITOR_LITE_GCOMPRIS_DEB")


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DEB or not Path(REAL_DEB).is_file(),
                    reason="set AUDITOR_LITE_GCOMPRIS_DEB to a gcompris-qt-data .deb to build the real cache")
def test_real_gcompris_package(tmp_path):
    _rasterizer_or_skip()
    summary = build_asset_cache(tmp_path / "cache", deb=Path(REAL_DEB), progress=False)
    lib = load_library(tmp_path / "cache")
    assert lib.origin.startswith("gcompris-qt-data "), summary
    kinds = {o.kind for o in lib.objects}
    assert kinds == {"instrument", "animal"} and len(lib.objects) >= 50 and len(lib.categories()) >= 25
    for category in ("violin", "cello", "guitar", "piano", "drum", "flute", "dog", "cat"):
        assert lib.objects_of(category), category
    assert len(lib.backgrounds) >= 150
    meta = json.loads((tmp_path / "cache/assets.json").read_text())
    assert all(c["licence"] != "unknown" for o in meta["objects"] for c in o["credits"])
    for item, obj in zip(meta["objects"], lib.objects):   # the coloured ducks name their colour
        sprite_file = item["credits"][0]["file"]
        if sprite_file.startswith("colors:"):
            word = sprite_file.rsplit("/", 1)[1].split("_")[0].replace("grey", "gray")
            assert obj.attributes["color"] == word, sprite_file
    shutil.rmtree(tmp_path / "cache")
