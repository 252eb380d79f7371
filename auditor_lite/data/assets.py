"""Objects, sounds and backgrounds for synthetic scenes: a cache built from GCompris, or procedural ones.

``build_asset_cache`` turns Debian's ``gcompris-qt-data`` package into a small local cache of
instrument and animal drawings (exact masks from their alpha channel), each with a real recording
of that instrument or animal, plus photos to use as backgrounds. ``load_library`` reads the cache,
or falls back to ``procedural_library`` (no files needed) so that tests and CI run without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fnmatch
import functools
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from math import gcd
from pathlib import Path

import click
import numpy as np
import soundfile as sf
from tqdm import tqdm

from auditor_lite.data.rcc import (CopyrightNotes, RccBundle, deb_version, iter_deb_files,
                                   read_deb_members)
from auditor_lite.data.schema import SAMPLE_RATE, DataError

CACHE_FORMAT = 1
MASK_ALPHA = 127  # alpha > MASK_ALPHA is the object's mask


@dataclass
class AssetObject:
    name: str            # e.g. "electric guitar"
    category: str        # Ref-AVS-style noun used in expressions and uids, e.g. "guitar" (no '_')
    kind: str            # "instrument" | "animal" | "shape"
    rgba: np.ndarray     # uint8 (h, w, 4) sprite; alpha > 127 is the object's exact mask
    sound: np.ndarray    # float32 mono 16 kHz recording of this object (>= 1 s)
    attributes: dict = field(default_factory=dict)   # e.g. {"color": "brown", "size_word": "large"}
    licence: str = ""
    source: str = ""

    @property
    def mask(self) -> np.ndarray:
        return self.rgba[..., 3] > MASK_ALPHA


@dataclass
class AssetLibrary:
    objects: list[AssetObject]
    backgrounds: list[np.ndarray]    # uint8 (H, W, 3), >= 256 px side
    origin: str                      # "gcompris-qt-data <version>" or "procedural"

    def categories(self) -> list[str]:
        return sorted({obj.category for obj in self.objects})

    def objects_of(self, category: str) -> list[AssetObject]:
        return [obj for obj in self.objects if obj.category == category]


def default_asset_dir() -> Path:
    """``$AUDITOR_LITE_ASSETS`` if set, else ``~/.cache/auditor-lite/assets``."""
    env = os.environ.get("AUDITOR_LITE_ASSETS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "auditor-lite" / "assets"


def load_library(asset_dir=None, procedural: bool = False, seed: int = 0) -> AssetLibrary:
    """The asset cache in ``asset_dir`` (default: ``default_asset_dir()``) if it holds one, else
    ``procedural_library(seed)``. An explicitly named ``asset_dir`` without a cache is an error.

    Results are memoized per process (keyed by the cache file's mtime): treat them as read-only.
    """
    if procedural:
        return procedural_library(seed)
    folder = Path(asset_dir).expanduser() if asset_dir is not None else default_asset_dir()
    index = folder / "assets.json"
    if not index.is_file():
        if asset_dir is not None:
            raise DataError(index, "no asset cache here; build one with "
                                   "'auditor-lite data assets --out DIR' or use --procedural")
        return procedural_library(seed)
    return _load_cache(str(index.resolve()), index.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_cache(index_path: str, _mtime_ns: int) -> AssetLibrary:
    from PIL import Image

    from auditor_lite.media import load_audio

    index = Path(index_path)
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(index, f"unreadable asset index: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise DataError(index, f"not an asset index of format {CACHE_FORMAT}", "format")
    root = index.parent
    sounds: dict[str, np.ndarray] = {}

    def sound(rel: str) -> np.ndarray:
        if rel not in sounds:
            wave, sr = load_audio(root / rel)
            if sr != SAMPLE_RATE:
                raise DataError(root / rel, f"sample rate {sr}, expected {SAMPLE_RATE}")
            sounds[rel] = wave
        return sounds[rel]

    def image(rel: str, mode: str) -> np.ndarray:
        try:
            with Image.open(root / rel) as im:
                return np.asarray(im.convert(mode))
        except OSError as exc:
            raise DataError(root / rel, f"unreadable image: {exc}") from None

    objects = []
    for k, item in enumerate(meta.get("objects", [])):
        try:
            objects.append(AssetObject(
                name=item["name"], category=item["category"], kind=item["kind"],
                rgba=image(item["sprite"], "RGBA"), sound=sound(item["sound"]),
                attributes=dict(item.get("attributes", {})), licence=item.get("licence", ""),
                source=item.get("source", "")))
        except KeyError as exc:
            raise DataError(index, f"object {k} lacks {exc}", f"objects[{k}]") from None
    backgrounds = [image(bg["file"], "RGB") for bg in meta.get("backgrounds", [])]
    if not objects or not backgrounds:
        raise DataError(index, "asset index lists no objects or no backgrounds")
    return AssetLibrary(objects=objects, backgrounds=backgrounds, origin=meta.get("origin", "cache"))


def procedural_library(seed: int = 0) -> AssetLibrary:
    """``procedural.procedural_library``, importable from here too (deferred: it imports us)."""
    from auditor_lite.data import procedural

    return procedural.procedural_library(seed)


# -- building the cache from gcompris-qt-data -----------------------------------------------------
class AssetBuildError(click.ClickException):
    """A missing tool or a bad package: click prints the message, not a traceback."""


SPRITE_SIDE = 256            # longer side of a cached sprite
BACKGROUND_SIDE = 320        # cached backgrounds are square
MIN_BACKGROUND_SOURCE = 160  # shorter side a photo needs (at most a 2x upscale)
SOUND_SECONDS = (1.0, 10.0)  # a recording is padded / cut to this range (a clip is 10 s)
RCC_DIR = "usr/share/gcompris-qt/rcc/"
COPYRIGHT_FILE = "usr/share/doc/gcompris-qt-data/copyright"


def build_asset_cache(out: Path, deb: Path | None = None, progress: bool = True) -> str:
    """Build the cache in ``out`` from gcompris-qt-data (``deb``, else ``apt-get download``).

    ``out`` is replaced only when the build succeeds, and only if it is empty or a previous cache.
    Returns a printable summary.
    """
    started = time.perf_counter()
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not (out / "assets.json").is_file():
        raise AssetBuildError(f"{out} is neither empty nor an asset cache; choose another --out")
    rasterize = svg_rasterizer()
    _require_decoders()
    catalogue = load_catalogue()
    with tempfile.TemporaryDirectory(prefix="auditor-lite-gcompris-") as tmp:
        package = _open_package(Path(deb) if deb is not None else _download_deb(Path(tmp)), catalogue)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for folder in ("sprites", "sounds", "backgrounds"):
        (staging / folder).mkdir(parents=True)
    try:
        objects = _build_objects(package, catalogue, staging, rasterize, progress)
        backgrounds, skipped = _build_backgrounds(package, catalogue, staging, progress)
        index = {"format": CACHE_FORMAT, "origin": package.origin, "sample_rate": SAMPLE_RATE,
                 "source": "Debian package gcompris-qt-data (GCompris, https://gcompris.net)",
                 "objects": objects, "backgrounds": backgrounds, "skipped_backgrounds": skipped,
                 "not_used": catalogue["not_used"]}
        (staging / "assets.json").write_text(json.dumps(index, indent=1, ensure_ascii=False), "utf-8")
    except DataError as exc:
        raise AssetBuildError(str(exc)) from None
    finally:
        if not (staging / "assets.json").is_file():
            shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    _load_cache.cache_clear()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    kinds = Counter(o["kind"] for o in objects)
    return (f"asset cache {out} from {package.origin}\n"
            f"objects: {len(objects)} ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
            f"in {len({o['category'] for o in objects})} categories\n"
            f"backgrounds: {len(backgrounds)} ({len(skipped)} skipped, reasons in assets.json)\n"
            f"size: {size / 1e6:.1f} MB, built in {time.perf_counter() - started:.1f} s")


def load_catalogue() -> dict:
    """What to take from the package (``auditor_lite/assets/gcompris_catalogue.json``)."""
    catalogue = resources.files("auditor_lite").joinpath("assets", "gcompris_catalogue.json")
    return json.loads(catalogue.read_text(encoding="utf-8"))


def _require_decoders() -> None:
    from PIL import features

    if "OGG" not in sf.available_formats():
        raise AssetBuildError("soundfile's libsndfile cannot decode OGG Vorbis (need libsndfile "
                              ">= 1.0.29; 'pip install -U soundfile' bundles one)")
    if not features.check("webp"):
        raise AssetBuildError("Pillow was built without WebP support; reinstall Pillow from PyPI")
    try:
        import scipy.signal  # noqa: F401
    except ImportError:
        raise AssetBuildError("building assets needs scipy: pip install 'auditor-lite[data]'") from None


def _download_deb(folder: Path) -> Path:
    apt = shutil.which("apt-get")
    if apt is None:
        raise AssetBuildError("no --deb given and apt-get is not available: download the Debian "
                              "package gcompris-qt-data (*.deb) elsewhere and pass --deb FILE")
    try:
        done = subprocess.run([apt, "download", "gcompris-qt-data"], cwd=folder, text=True,
                              capture_output=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise AssetBuildError("'apt-get download gcompris-qt-data' timed out; pass --deb FILE") from None
    debs = sorted(folder.glob("gcompris-qt-data_*.deb"))
    if done.returncode != 0 or not debs:
        raise AssetBuildError(f"'apt-get download gcompris-qt-data' failed: {done.stderr.strip()[-400:]}"
                              " (try 'apt-get update' first, or pass --deb FILE)")
    return debs[-1]


@dataclass
class _Package:
    origin: str
    bundles: dict[str, RccBundle]
    notes: CopyrightNotes

    def locate(self, ref: str) -> tuple[RccBundle, str]:
        """``bundle:path`` (catalogue notation) -> the bundle and the file's full path in it."""
        bundle, rel = ref.split(":", 1)
        return self.bundles[bundle], f"gcompris/src/activities/{bundle}/{rel}"

    def read(self, ref: str) -> bytes:
        bundle, path = self.locate(ref)
        return bundle.read(path)

    def credit(self, ref: str) -> dict:
        note = self.notes.lookup(self.locate(ref)[1])
        return {"file": ref, "licence": note.licence, "copyright": note.copyright,
                "url": note.source, "licence_basis": note.basis}


def _open_package(deb: Path, catalogue: dict) -> _Package:
    names = {ref.split(":", 1)[0] for obj in catalogue["objects"]
             for ref in obj["sprites"] + obj["sounds"]}
    names |= {spec["glob"].split(":", 1)[0] for spec in catalogue["backgrounds"]}
    try:
        members = read_deb_members(deb)
        version = deb_version(deb, members)
        wanted = tuple(f"{RCC_DIR}{n}.rcc" for n in sorted(names)) + (COPYRIGHT_FILE,)
        files = dict(iter_deb_files(deb, wanted, members))
        missing = [n for n in sorted(names) if f"{RCC_DIR}{n}.rcc" not in files]
        if missing:
            raise DataError(deb, f"package lacks the bundles {', '.join(missing)}")
        bundles = {n: RccBundle(files[f"{RCC_DIR}{n}.rcc"], name=f"{deb.name}:{n}.rcc") for n in names}
    except DataError as exc:
        raise AssetBuildError(str(exc)) from None
    notes = CopyrightNotes(files.get(COPYRIGHT_FILE, b"").decode("utf-8", "replace"))
    for bundle in bundles.values():
        for path in bundle.names():
            if path.endswith("/README"):
                notes.add_readme(path, bundle.read(path).decode("utf-8", "replace"))
    return _Package(origin=f"gcompris-qt-data {version}", bundles=bundles, notes=notes)


def _build_objects(package: _Package, catalogue: dict, staging: Path, rasterize, progress) -> list:
    from PIL import Image

    from auditor_lite.media import save_audio
    from auditor_lite.data.procedural import colour_words, crop_to_alpha

    jobs = [(entry, k, ref) for entry in catalogue["objects"] for k, ref in enumerate(entry["sprites"])]
    records, written_sounds = [], set()
    for entry, k, sprite_ref in tqdm(jobs, desc="objects", unit="obj", disable=not progress):
        sound_ref = entry["sounds"][k % len(entry["sounds"])]
        data = package.read(sprite_ref)
        try:
            if sprite_ref.endswith(".svg"):
                rgba = rasterize_sprite(rasterize, data)
            else:
                rgba = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
            if (rgba[..., 3] <= MASK_ALPHA).mean() < 0.01:
                raise ValueError("sprite has no transparent background, so no exact mask")
            rgba = crop_to_alpha(rgba, SPRITE_SIDE)
        except (ValueError, OSError) as exc:
            raise DataError(sprite_ref, str(exc)) from None
        stem = f"{entry['category']}-{_slug(sprite_ref)}"
        Image.fromarray(rgba, "RGBA").save(staging / "sprites" / f"{stem}.png", optimize=True)
        sound_file = f"sounds/{_slug(sound_ref)}.wav"
        if sound_file not in written_sounds:
            save_audio(staging / sound_file, decode_recording(package.read(sound_ref), sound_ref))
            written_sounds.add(sound_file)
        image_credit, sound_credit = package.credit(sprite_ref), package.credit(sound_ref)
        colours = colour_words(rgba)
        records.append({
            "name": entry["name"], "category": entry["category"], "kind": entry["kind"],
            "sprite": f"sprites/{stem}.png", "sound": sound_file,
            "attributes": {"color": colours[0], "colors": colours,
                           "size_word": entry["size"], "family": entry["family"]},
            "licence": f"image {image_credit['licence']}; sound {sound_credit['licence']}",
            "source": f"{package.origin}: {sprite_ref} + {sound_ref}",
            "credits": [image_credit, sound_credit]})
    return records


def _build_backgrounds(package: _Package, catalogue: dict, staging: Path, progress) -> tuple[list, list]:
    from PIL import Image

    jobs = []
    for spec in catalogue["backgrounds"]:
        bundle_name = spec["glob"].split(":", 1)[0]
        bundle, pattern = package.locate(spec["glob"])
        jobs += [(spec, f"{bundle_name}:{p.split('/', 4)[4]}", p) for p in bundle.names()
                 if fnmatch.fnmatchcase(p, pattern)]
    records, skipped = [], []
    for spec, ref, path in tqdm(jobs, desc="backgrounds", unit="img", disable=not progress):
        reason = next((why for key, why in spec["skip"].items() if key in ref.split(":", 1)[1]), None)
        image = Image.open(io.BytesIO(package.read(ref))).convert("RGB")
        if reason is None and min(image.size) < MIN_BACKGROUND_SOURCE:
            reason = f"too small ({image.size[0]}x{image.size[1]})"
        if reason is not None:
            skipped.append({"file": ref, "reason": reason})
            continue
        side = min(image.size)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        square = image.crop((left, top, left + side, top + side))
        name = f"backgrounds/{_slug(ref)}.jpg"
        square.resize((BACKGROUND_SIDE, BACKGROUND_SIDE), Image.Resampling.LANCZOS).save(
            staging / name, quality=90)
        credit = package.credit(ref)
        records.append({"file": name, "licence": credit["licence"],
                        "source": f"{package.origin}: {ref}", "credits": [credit]})
    return records, skipped


def _slug(ref: str) -> str:
    """``bundle:resource/dir/name.ext`` -> ``bundle-dir-name``: unique, file-name safe."""
    bundle, rel = ref.split(":", 1)
    parts = [bundle] + [p for p in rel.rsplit(".", 1)[0].split("/") if p not in ("resource", "images",
                                                                              "image", "animals")]
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(parts)).strip("-").lower()


def decode_recording(data: bytes, label: str = "recording") -> np.ndarray:
    """Any libsndfile-readable recording -> float32 mono 16 kHz, silence trimmed, 1-10 s, peak 0.9."""
    from scipy.signal import resample_poly

    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DataError(label, f"not a decodable recording ({exc})") from None
    mono = wave.mean(axis=1)
    step = gcd(int(rate), SAMPLE_RATE)
    mono = resample_poly(mono, SAMPLE_RATE // step, int(rate) // step).astype(np.float32)
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    if peak <= 1e-4:
        raise DataError(label, "recording is silent")
    # Trim leading/trailing silence (45 dB under the peak) so the sound starts when the object does.
    loud = np.nonzero(np.abs(mono) > peak * 10 ** (-45 / 20))[0]
    start = max(loud[0] - SAMPLE_RATE // 50, 0)
    mono = mono[start: loud[-1] + SAMPLE_RATE // 20][: int(SOUND_SECONDS[1] * SAMPLE_RATE)]
    shortfall = int(SOUND_SECONDS[0] * SAMPLE_RATE) - len(mono)
    if shortfall > 0:
        mono = np.pad(mono, (0, shortfall))  # a pause after a short call, e.g. one bark
    return (mono * (0.9 / peak)).astype(np.float32)


# -- SVG rasterization ----------------------------------------------------------------------------
# librsvg is the SVG renderer of GNOME and of Debian's own icon tools, so the drawings render as
# GCompris shows them. It is called through ctypes (no Python binding needed; Debian's
# librsvg2-2 and libcairo2 are enough) or, failing that, as the rsvg-convert program.
class _RsvgSize(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int),
                ("em", ctypes.c_double), ("ex", ctypes.c_double)]


class _GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]


def svg_rasterizer():
    """A function ``(svg_bytes, long_side) -> uint8 (h, w, 4)`` rendering the SVG page."""
    try:
        libs = _load_librsvg()
    except OSError:
        libs = None
    if libs is not None:
        return functools.partial(_render_with_librsvg, libs)
    if shutil.which("rsvg-convert"):
        return _render_with_rsvg_convert
    raise AssetBuildError("rasterizing the SVG drawings needs librsvg: install Debian's "
                          "librsvg2-2 and libcairo2 (or librsvg2-bin for the rsvg-convert program)")


def rasterize_sprite(rasterize, data: bytes) -> np.ndarray:
    """Render so the drawing (not the page around it) spans at least twice ``SPRITE_SIDE``."""
    rgba = rasterize(data, 4 * SPRITE_SIDE)
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if len(ys) == 0:
        raise ValueError("drawing renders fully transparent")
    extent = max(np.ptp(ys) + 1, np.ptp(xs) + 1)
    if extent < 2 * SPRITE_SIDE:
        rgba = rasterize(data, min(16 * SPRITE_SIDE, 4 * SPRITE_SIDE * 2 * SPRITE_SIDE // extent))
    return rgba


def _load_librsvg():
    def lib(name, soname):
        return ctypes.CDLL(ctypes.util.find_library(name) or soname)

    rsvg, cairo, gobject = (lib("rsvg-2", "librsvg-2.so.2"), lib("cairo", "libcairo.so.2"),
                            lib("gobject-2.0", "libgobject-2.0.so.0"))
    ptr = ctypes.c_void_p
    for fn, res, args in (
            (rsvg.rsvg_handle_new_from_data, ptr,
             [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(_GError))]),
            (rsvg.rsvg_handle_get_dimensions, None, [ptr, ctypes.POINTER(_RsvgSize)]),
            (rsvg.rsvg_handle_render_cairo, ctypes.c_int, [ptr, ptr]),
            (cairo.cairo_image_surface_create, ptr, [ctypes.c_int, ctypes.c_int, ctypes.c_int]),
            (cairo.cairo_create, ptr, [ptr]),
            (cairo.cairo_scale, None, [ptr, ctypes.c_double, ctypes.c_double]),
            (cairo.cairo_surface_flush, None, [ptr]),
            (cairo.cairo_image_surface_get_data, ctypes.POINTER(ctypes.c_ubyte), [ptr]),
            (cairo.cairo_image_surface_get_stride, ctypes.c_int, [ptr]),
            (cairo.cairo_destroy, None, [ptr]), (cairo.cairo_surface_destroy, None, [ptr]),
            (gobject.g_object_unref, None, [ptr])):
        fn.restype, fn.argtypes = res, args
    return rsvg, cairo, gobject


def _render_with_librsvg(libs, data: bytes, long_side: int) -> np.ndarray:
    rsvg, cairo, gobject = libs
    error = ctypes.POINTER(_GError)()
    handle = rsvg.rsvg_handle_new_from_data(data, len(data), ctypes.byref(error))
    if not handle:
        raise ValueError("librsvg cannot parse it: "
                         f"{error.contents.message.decode() if error else 'unknown error'}")
    try:
        size = _RsvgSize()
        rsvg.rsvg_handle_get_dimensions(handle, ctypes.byref(size))
        if size.width <= 0 or size.height <= 0:
            raise ValueError("drawing has no size")
        scale = long_side / max(size.width, size.height)
        width, height = max(1, round(size.width * scale)), max(1, round(size.height * scale))
        surface = cairo.cairo_image_surface_create(0, width, height)  # 0 = CAIRO_FORMAT_ARGB32
        context = cairo.cairo_create(surface)
        try:
            cairo.cairo_scale(context, scale, scale)
            rsvg.rsvg_handle_render_cairo(handle, context)
            cairo.cairo_surface_flush(surface)
            stride = cairo.cairo_image_surface_get_stride(surface)
            raw = np.ctypeslib.as_array(cairo.cairo_image_surface_get_data(surface),
                                        shape=(height, stride)).copy()
        finally:
            cairo.cairo_destroy(context)
            cairo.cairo_surface_destroy(surface)
    finally:
        gobject.g_object_unref(handle)
    # Cairo's ARGB32 is premultiplied, native-endian (BGRA bytes on little-endian machines).
    pixels = raw[:, : width * 4].reshape(height, width, 4).astype(np.float32)
    if np.little_endian:
        bgr, alpha = pixels[..., :3], pixels[..., 3:]
        rgb = bgr[..., ::-1]
    else:
        alpha, rgb = pixels[..., :1], pixels[..., 1:]
    rgb = np.where(alpha > 0, rgb * 255.0 / np.maximum(alpha, 1.0), 0.0)
    return np.concatenate([np.clip(rgb + 0.5, 0, 255), alpha], axis=-1).astype(np.uint8)


def _render_with_rsvg_convert(data: bytes, long_side: int) -> np.ndarray:
    from PIL import Image

    done = subprocess.run(["rsvg-convert", "--keep-aspect-ratio", "-w", str(long_side), "-h",
                           str(long_side), "-f", "png"], input=data, capture_output=True, timeout=120)
    if done.returncode != 0:
        raise ValueError(f"rsvg-convert failed: {done.stderr.decode(errors='replace')[-300:]}")
    return np.asarray(Image.open(io.BytesIO(done.stdout)).convert("RGBA"))
