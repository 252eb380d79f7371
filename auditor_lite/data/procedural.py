"""Procedural sound sources: flat-coloured shapes with synthesized timbres, and textured backgrounds.

The fallback library when no asset cache is built, so tests and CI need no download. Each of the
12 categories has its own silhouette and its own kind of sound (inharmonic strikes, pitch-dropping
hits, harmonic stacks, noise bursts, FM sweeps, ...); its variants differ in colour, proportions
and pitch, so a scene can hold two objects of one category that still look and sound different.
Also home of the appearance helpers (colour words, sprite cropping) shared with the real cache.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from auditor_lite.data.assets import MASK_ALPHA, AssetLibrary, AssetObject
from auditor_lite.data.schema import SAMPLE_RATE

SPRITE_SIDE = 128
BACKGROUND_SIDE = 256
SOUND_SECONDS = 2.0
VARIANTS = 3
BACKGROUNDS = 12
PALETTE = {"red": (220, 40, 40), "orange": (240, 140, 20), "yellow": (240, 220, 40),
           "green": (40, 170, 60), "blue": (40, 90, 220), "purple": (140, 60, 190),
           "pink": (240, 150, 190), "brown": (130, 80, 40), "gray": (128, 128, 128),
           "white": (240, 240, 240), "black": (30, 30, 30)}

# -- appearance words -----------------------------------------------------------------------------
_HUE_BINS = ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (255, "blue"),
             (290, "purple"), (345, "pink"), (361, "red"))


def colour_words(rgba: np.ndarray, share: float = 0.25) -> list[str]:
    """Colour words of a sprite's opaque pixels, commonest first: the commonest, then any other
    covering >= ``share`` of them. Each pixel gets one word from its hue, saturation and value, so
    the thin dark outlines of a drawing rarely outvote its fill."""
    pixels = rgba[rgba[..., 3] > MASK_ALPHA][:, :3].astype(np.float32) / 255.0
    if len(pixels) == 0:
        raise ValueError("sprite has no opaque pixel")
    high, low = pixels.max(axis=1), pixels.min(axis=1)
    sat = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    r, g, b = pixels.T
    span = np.maximum(high - low, 1e-6)
    hue = 60.0 * np.where(high == r, ((g - b) / span) % 6,
                          np.where(high == g, (b - r) / span + 2, (r - g) / span + 4))
    words = np.empty(len(pixels), dtype=object)
    lower = 0
    for upper, word in _HUE_BINS:
        words[(hue >= lower) & (hue < upper)] = word
        lower = upper
    # Dark oranges and reds read as brown, pale reds and purples as pink; achromatic cases last.
    words[(words == "orange") & (high < 0.65)] = "brown"
    words[(words == "red") & (high < 0.45) & (sat < 0.7)] = "brown"
    words[np.isin(words, ["red", "purple"]) & (sat < 0.6) & (high > 0.75)] = "pink"
    words[sat < 0.18] = "gray"
    words[(sat < 0.18) & (high > 0.85)] = "white"
    words[high < 0.2] = "black"
    names, counts = np.unique(words.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return [str(names[i]) for j, i in enumerate(order) if j == 0 or counts[i] >= share * counts.sum()]


def crop_to_alpha(rgba: np.ndarray, long_side: int, margin: int = 2) -> np.ndarray:
    """Crop a sprite to its visible pixels and scale it so that its longer side is ``long_side``."""
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if len(ys) == 0:
        raise ValueError("sprite is fully transparent")
    top, left = max(ys.min() - margin, 0), max(xs.min() - margin, 0)
    crop = np.ascontiguousarray(rgba[top: ys.max() + margin + 1, left: xs.max() + margin + 1])
    scale = long_side / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    # Resample premultiplied ("RGBa") so transparent pixels' colours do not bleed into the edges.
    image = Image.fromarray(crop, "RGBA").convert("RGBa")
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS).convert("RGBA"))


# -- silhouettes: draw(d, s, fill, dark, shape) on an s x s canvas; shape in [0.85, 1.15] ---------
def _bell(d, s, c, k, w):
    d.ellipse((0.44 * s, 0.06 * s, 0.56 * s, 0.18 * s), fill=k)
    d.polygon([(0.5 * s - 0.12 * s * w, 0.15 * s), (0.5 * s + 0.12 * s * w, 0.15 * s),
               (0.5 * s + 0.2 * s * w, 0.55 * s), (0.5 * s + 0.34 * s * w, 0.78 * s),
               (0.5 * s - 0.34 * s * w, 0.78 * s), (0.5 * s - 0.2 * s * w, 0.55 * s)], fill=c)
    d.ellipse((0.43 * s, 0.74 * s, 0.57 * s, 0.88 * s), fill=k)


def _drum(d, s, c, k, w):
    x0, x1 = 0.5 * s - 0.38 * s * w, 0.5 * s + 0.38 * s * w
    d.rectangle((x0, 0.35 * s, x1, 0.75 * s), fill=c)
    d.ellipse((x0, 0.65 * s, x1, 0.85 * s), fill=c)
    d.ellipse((x0, 0.25 * s, x1, 0.45 * s), fill=(235, 225, 205), outline=k, width=3)
    for t in np.linspace(0.1, 0.9, 5):
        d.line((x0 + t * (x1 - x0), 0.45 * s, x0 + (t + 0.08) * (x1 - x0), 0.78 * s), fill=k, width=3)


def _horn(d, s, c, k, w):
    d.rectangle((0.05 * s, 0.46 * s, 0.2 * s, 0.54 * s), fill=k)
    d.polygon([(0.18 * s, 0.44 * s), (0.6 * s, 0.4 * s), (0.92 * s, 0.5 * s - 0.3 * s * w),
               (0.92 * s, 0.5 * s + 0.3 * s * w), (0.6 * s, 0.6 * s), (0.18 * s, 0.56 * s)], fill=c)
    d.ellipse((0.86 * s, 0.5 * s - 0.3 * s * w, 0.98 * s, 0.5 * s + 0.3 * s * w), fill=k)


def _whistle(d, s, c, k, w):
    d.ellipse((0.3 * s, 0.3 * s, 0.3 * s + 0.5 * s * w, 0.8 * s), fill=c)
    d.rectangle((0.05 * s, 0.3 * s, 0.5 * s, 0.45 * s), fill=c)
    d.rectangle((0.42 * s, 0.3 * s, 0.52 * s, 0.38 * s), fill=k)
    d.ellipse((0.08 * s, 0.2 * s, 0.2 * s, 0.32 * s), outline=k, width=4)


def _siren(d, s, c, k, w):
    d.pieslice((0.5 * s - 0.3 * s * w, 0.2 * s, 0.5 * s + 0.3 * s * w, 0.8 * s), 180, 360, fill=c)
    d.rectangle((0.5 * s - 0.36 * s * w, 0.5 * s, 0.5 * s + 0.36 * s * w, 0.6 * s), fill=k)
    d.rectangle((0.45 * s, 0.3 * s, 0.55 * s, 0.45 * s), fill=(250, 250, 210))


def _rattle(d, s, c, k, w):
    d.rectangle((0.46 * s, 0.5 * s, 0.54 * s, 0.95 * s), fill=k)
    d.ellipse((0.5 * s - 0.25 * s * w, 0.05 * s, 0.5 * s + 0.25 * s * w, 0.6 * s), fill=c)
    for x, y in ((0.42, 0.2), (0.56, 0.3), (0.45, 0.42)):
        d.ellipse(((x - 0.03) * s, (y - 0.03) * s, (x + 0.03) * s, (y + 0.03) * s), fill=k)


def _chime(d, s, c, k, w):
    d.rectangle((0.1 * s, 0.08 * s, 0.9 * s, 0.14 * s), fill=k)
    for i, x in enumerate(np.linspace(0.18, 0.82, 5)):
        bottom = (0.9 - 0.09 * i * w) * s
        d.line((x * s, 0.14 * s, x * s, 0.24 * s), fill=k, width=2)
        d.rectangle(((x - 0.05) * s, 0.24 * s, (x + 0.05) * s, bottom), fill=c)


def _buzzer(d, s, c, k, w):
    d.rounded_rectangle((0.5 * s - 0.4 * s * w, 0.25 * s, 0.5 * s + 0.4 * s * w, 0.8 * s),
                        radius=0.08 * s, fill=c)
    d.ellipse((0.37 * s, 0.39 * s, 0.63 * s, 0.65 * s), fill=k)
    d.rectangle((0.3 * s, 0.8 * s, 0.36 * s, 0.92 * s), fill=k)
    d.rectangle((0.64 * s, 0.8 * s, 0.7 * s, 0.92 * s), fill=k)


def _gong(d, s, c, k, w):
    d.rectangle((0.04 * s, 0.08 * s, 0.96 * s, 0.12 * s), fill=k)
    d.rectangle((0.04 * s, 0.08 * s, 0.08 * s, 0.96 * s), fill=k)
    d.rectangle((0.92 * s, 0.08 * s, 0.96 * s, 0.96 * s), fill=k)
    r = 0.36 * s * w
    d.ellipse((0.5 * s - r, 0.55 * s - r, 0.5 * s + r, 0.55 * s + r), fill=c)
    d.ellipse((0.5 * s - r / 3, 0.55 * s - r / 3, 0.5 * s + r / 3, 0.55 * s + r / 3), outline=k, width=3)
    d.line((0.3 * s, 0.14 * s, 0.45 * s, 0.55 * s - r), fill=k, width=2)
    d.line((0.7 * s, 0.14 * s, 0.55 * s, 0.55 * s - r), fill=k, width=2)


def _flute(d, s, c, k, w):
    half = 0.07 * s * w
    d.rounded_rectangle((0.03 * s, 0.5 * s - half, 0.97 * s, 0.5 * s + half), radius=half, fill=c)
    for x in np.linspace(0.35, 0.85, 6):  # finger holes are holes in the mask too
        d.ellipse(((x - 0.02) * s, 0.48 * s, (x + 0.02) * s, 0.52 * s), fill=(0, 0, 0, 0))
    d.rectangle((0.12 * s, 0.5 * s - half, 0.16 * s, 0.5 * s + half), fill=k)


def _xylophone(d, s, c, k, w):
    d.polygon([(0.05 * s, 0.3 * s), (0.95 * s, 0.38 * s), (0.95 * s, 0.72 * s), (0.05 * s, 0.85 * s)], fill=k)
    for i, x in enumerate(np.linspace(0.1, 0.84, 7)):
        top, bottom = (0.2 + 0.025 * i * w) * s, (0.92 - 0.03 * i * w) * s
        d.rectangle((x * s, top, (x + 0.07) * s, bottom), fill=c)


def _clock(d, s, c, k, w):
    d.ellipse((0.5 * s - 0.4 * s * w, 0.08 * s, 0.5 * s + 0.4 * s * w, 0.88 * s), fill=c)
    d.ellipse((0.5 * s - 0.24 * s * w, 0.24 * s, 0.5 * s + 0.24 * s * w, 0.72 * s), fill=(245, 245, 235))
    d.line((0.5 * s, 0.48 * s, 0.5 * s, 0.25 * s), fill=k, width=4)
    d.line((0.5 * s, 0.48 * s, 0.66 * s, 0.55 * s), fill=k, width=4)
    d.rectangle((0.25 * s, 0.84 * s, 0.33 * s, 0.96 * s), fill=k)
    d.rectangle((0.67 * s, 0.84 * s, 0.75 * s, 0.96 * s), fill=k)


# -- timbres: sound(t, f, rng) -> wave for times t (s), base pitch f (Hz) ---------------------------
def _decay_partials(t, onsets, freqs, amps, rate):
    """Struck sounds: each onset excites ``freqs`` decaying exponentially at ``rate`` (1/s)."""
    wave = np.zeros_like(t)
    for onset in onsets:
        local = t - onset
        on = local >= 0
        env = np.exp(-rate * local[on])
        wave[on] += env * sum(a * np.sin(2 * np.pi * f * local[on]) for f, a in zip(freqs, amps))
    return wave


def _bell_sound(t, f, rng):  # inharmonic church-bell partials, a strike every ~0.9 s
    return _decay_partials(t, np.arange(0, t[-1], 0.9), f * np.array([0.5, 1, 1.19, 1.56, 2, 2.51]),
                           [0.6, 1, 0.7, 0.4, 0.5, 0.25], 2.5)


def _drum_sound(t, f, rng):  # pitch drops after each hit, plus a noise slap
    wave = np.zeros_like(t)
    noise = rng.standard_normal(len(t))
    for onset in np.arange(0, t[-1], 0.5):
        local = t - onset
        on = local >= 0
        sweep = f * 0.25 * (1 + 1.5 * np.exp(-25 * local[on]))
        phase = 2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE
        wave[on] += np.exp(-7 * local[on]) * np.sin(phase) + 0.4 * np.exp(-40 * local[on]) * noise[on]
    return wave


def _horn_sound(t, f, rng):  # brassy harmonic stack, swelling notes of a fanfare
    notes = f * 0.5 * np.array([1, 1.25, 1.5, 1.0])[(t / 0.5).astype(int) % 4]
    phase = 2 * np.pi * np.cumsum(notes * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))) / SAMPLE_RATE
    swell = np.minimum(1, (t % 0.5) / 0.06) * np.minimum(1, (0.5 - t % 0.5) / 0.05)
    return swell * sum(np.sin(k * phase) / k for k in range(1, 11))


def _whistle_sound(t, f, rng):  # high pure tone trilling between two pitches, breathy
    pitch = f * 3 * (1 + 0.06 * (np.sin(2 * np.pi * 12 * t) > 0))
    tone = np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE)
    return tone + 0.15 * np.diff(rng.standard_normal(len(t) + 1))


def _siren_sound(t, f, rng):  # FM wail sweeping up and down
    pitch = f * (1.1 + 0.45 * np.sin(2 * np.pi * 0.6 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    return np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)


def _rattle_sound(t, f, rng):  # rapid bursts of bright noise (a shaker)
    grains = np.exp(-60 * (t % (1 / 11))) * rng.uniform(0.3, 1, int(t[-1] * 11) + 1)[(t * 11).astype(int)]
    return grains * np.diff(rng.standard_normal(len(t) + 1)) * (f / 440)


def _chime_sound(t, f, rng):  # random high tinkles from a pentatonic set
    onsets = np.sort(rng.uniform(0, t[-1] - 0.1, 7))
    wave = np.zeros_like(t)
    for onset in onsets:
        g = f * 2 * rng.choice([1, 9 / 8, 5 / 4, 3 / 2, 5 / 3])
        wave += _decay_partials(t, [onset], [g, 2.76 * g], [1, 0.4], 3.0)
    return wave


def _buzzer_sound(t, f, rng):  # gated square wave
    gate = (t % 0.4) < 0.25
    return gate * np.sign(np.sin(2 * np.pi * f * 0.4 * t)) * 0.6


def _gong_sound(t, f, rng):  # dense low inharmonic partials, slow swell and long decay
    freqs = f * 0.2 * rng.uniform(0.8, 4.5, 14)
    swell = np.minimum(1, t / 0.15)
    return swell * _decay_partials(t, [0.0], freqs, rng.uniform(0.3, 1, 14), 0.9)


def _flute_sound(t, f, rng):  # soft near-sine melody with vibrato and breath noise
    notes = f * 1.5 * np.array([1, 9 / 8, 5 / 4, 3 / 2])[(t / 0.5).astype(int) % 4]
    phase = 2 * np.pi * np.cumsum(notes * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))) / SAMPLE_RATE
    return np.sin(phase) + 0.25 * np.sin(2 * phase) + 0.05 * rng.standard_normal(len(t))


def _xylophone_sound(t, f, rng):  # short bright wooden strikes, quick melody
    wave = np.zeros_like(t)
    for i, onset in enumerate(np.arange(0, t[-1], 0.25)):
        g = f * [1, 5 / 4, 3 / 2, 2, 3 / 2, 5 / 4][i % 6]
        wave += _decay_partials(t, [onset], [g, 3.93 * g, 9.3 * g], [1, 0.3, 0.1], 12)
    return wave


def _clock_sound(t, f, rng):  # tick-tock: short resonant clicks, alternately high and low
    wave = np.zeros_like(t)
    for i, onset in enumerate(np.arange(0, t[-1], 0.5)):
        wave += _decay_partials(t, [onset], [f * (6 if i % 2 else 4.5)], [1], 250)
    return wave


# name: (draw, sound, base pitch Hz, size word, family)
CATEGORIES = {
    "bell": (_bell, _bell_sound, 520, "small", "percussion"),
    "drum": (_drum, _drum_sound, 440, "medium", "percussion"),
    "horn": (_horn, _horn_sound, 440, "medium", "brass"),
    "whistle": (_whistle, _whistle_sound, 700, "small", "wind"),
    "siren": (_siren, _siren_sound, 650, "medium", "electronic"),
    "rattle": (_rattle, _rattle_sound, 440, "small", "percussion"),
    "chime": (_chime, _chime_sound, 660, "medium", "percussion"),
    "buzzer": (_buzzer, _buzzer_sound, 440, "small", "electronic"),
    "gong": (_gong, _gong_sound, 440, "large", "percussion"),
    "flute": (_flute, _flute_sound, 440, "medium", "wind"),
    "xylophone": (_xylophone, _xylophone_sound, 520, "large", "percussion"),
    "clock": (_clock, _clock_sound, 440, "medium", "mechanical"),
}


# -- the library ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def procedural_library(seed: int = 0) -> AssetLibrary:
    """``VARIANTS`` objects for each of the 12 ``CATEGORIES`` and ``BACKGROUNDS`` textures.

    Deterministic for a seed; memoized, so treat the result as read-only.
    """
    rng = np.random.default_rng(seed)
    times = np.arange(int(SOUND_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    objects = []
    colour_names = list(PALETTE)
    for category, (draw, sound, pitch, size_word, family) in CATEGORIES.items():
        colours = rng.choice(len(colour_names), size=VARIANTS, replace=False)
        pitches = pitch * rng.permutation(np.geomspace(0.8, 1.25, VARIANTS))
        for colour_index, f0 in zip(colours, pitches):
            fill = PALETTE[colour_names[colour_index]]
            rgba = _render(draw, fill, shape=float(rng.uniform(0.85, 1.15)))
            wave = sound(times, float(f0), rng)
            wave = (0.9 * wave / np.abs(wave).max()).astype(np.float32)
            words = colour_words(rgba)
            objects.append(AssetObject(
                name=f"{words[0]} {category}", category=category, kind="shape", rgba=rgba,
                sound=wave, attributes={"color": words[0], "colors": words, "size_word": size_word,
                                        "family": family, "pitch_hz": round(float(f0), 1)},
                licence="MIT (generated by auditor-lite)", source=f"procedural seed {seed}"))
    backgrounds = [_background(rng) for _ in range(BACKGROUNDS)]
    return AssetLibrary(objects=objects, backgrounds=backgrounds, origin="procedural")


def _render(draw, fill: tuple, shape: float) -> np.ndarray:
    """Draw at twice the size, then downsample: soft edges, and alpha > 127 stays the exact mask."""
    big = 2 * SPRITE_SIDE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    dark = tuple(int(v * 0.45) for v in fill)
    draw(ImageDraw.Draw(image), big, fill + (255,), dark + (255,), shape)
    return crop_to_alpha(np.asarray(image), SPRITE_SIDE)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A vertical two-colour gradient, smooth blotches, a few soft shapes and fine grain."""
    side = BACKGROUND_SIDE
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    ramp = np.linspace(0, 1, side)[:, None, None]
    image = (1 - ramp) * top + ramp * bottom + np.zeros((side, side, 3))
    # Smooth light/shade blotches: low-resolution noise, upsampled.
    blotches = Image.fromarray(rng.uniform(0, 255, (6, 6)).astype(np.uint8)).resize(
        (side, side), Image.Resampling.BICUBIC)
    image = image + 0.35 * (np.asarray(blotches, dtype=np.float64)[..., None] - 128)
    canvas = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    overlay = ImageDraw.Draw(canvas, "RGBA")
    for _ in range(int(rng.integers(3, 7))):
        x, y = rng.uniform(0, side, 2)
        r = rng.uniform(0.05, 0.25) * side
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3)) + (int(rng.integers(40, 110)),)
        box = (x - r, y - r * rng.uniform(0.3, 1), x + r, y + r * rng.uniform(0.3, 1))
        (overlay.ellipse if rng.random() < 0.5 else overlay.rectangle)(box, fill=colour)
    grain = rng.normal(0, 6, (side, side, 3))
    return (np.asarray(canvas, dtype=np.float64) + grain).clip(0, 255).astype(np.uint8)
