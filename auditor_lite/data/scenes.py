"""Synthetic audio-visual scenes: a background, 2-4 moving objects, some of them sounding.

A scene is 10 frames (1 fps) and 10 s of 16 kHz mono audio. Every object follows a smooth track,
is drawn in a fixed z-order (occlusion), and sounds in some seconds. A sounding object shows it
visually the way a played instrument does: in a second where it sounds, its frame shows it a little
larger, brighter and shifted (a pulse/vibration proportional to that second's loudness).

Masks are exact by construction: an object's mask is ``alpha > 127`` of the sprite exactly as it was
drawn (same resize, same offset), objects are painted with that hard mask, and the visible mask of
an object is its mask minus the masks of the objects drawn in front of it.

``Scene.facts()`` summarises what expressions may talk about (see ``expressions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from auditor_lite.data.schema import CLIP_SAMPLES, NUM_FRAMES, SAMPLE_RATE

if TYPE_CHECKING:  # assets.py is only needed for type hints here
    from auditor_lite.data.assets import AssetLibrary, AssetObject

SCALE_RANGE = (0.15, 0.40)      # an object's longer side as a fraction of the frame side
CENTER_RANGE = (0.14, 0.86)     # track centres stay here, so objects are mostly in frame
REF_RMS = 0.1                   # every recording is normalised to this RMS before its gain
NOISE_RMS = 0.004               # light background noise under the mix
PEAK = 0.9                      # the mix is peak-normalised to this
FADE = 400                      # samples (25 ms) of linear fade where a sound starts or stops
PULSE_SCALE = 0.10              # extra sprite scale per unit of relative loudness
PULSE_BRIGHTNESS = 0.15         # extra brightness per unit of relative loudness
SOUND_PROB = 0.6                # chance that an object sounds at all
DUPLICATE_PROB = 0.3            # chance that a free scene repeats a category (position/size cues)


@dataclass(frozen=True)
class ObjectFacts:
    """What can be said about one object, without pixels: the resolver's input."""

    index: int
    category: str
    kind: str
    color: str | None
    scale: float                      # longer side / frame side, before any pulse
    size_word: str                    # small / medium / large (rendered size)
    centers: tuple                    # per frame (x, y) in [0, 1] of the visible part, or None
    boxes: tuple                      # per frame (x0, y0, x1, y1) in [0, 1] of the visible part, or None
    areas: tuple                      # per frame visible pixel count
    sounding: tuple                   # per second bool
    loudness: float                   # gain of the RMS-normalised recording
    motion: str                       # left / right / up / down / still
    z: int                            # drawing order, higher is in front
    loudness_rank: int = 0            # 1 = loudest sounding object; silent ones rank last

    @property
    def visible(self) -> tuple:
        return tuple(a > 0 for a in self.areas)

    @property
    def sounds(self) -> bool:
        return any(self.sounding)

    @property
    def onset(self) -> int | None:
        """First second in which the object sounds (None if it never does)."""
        return next((t for t, s in enumerate(self.sounding) if s), None)

    @property
    def duration(self) -> int:
        return int(sum(self.sounding))

    def hpos(self, frame: int) -> str | None:
        c = self.centers[frame]
        return None if c is None else ("left" if c[0] < 1 / 3 else "right" if c[0] > 2 / 3 else "middle")

    def vpos(self, frame: int) -> str | None:
        c = self.centers[frame]
        return None if c is None else ("top" if c[1] < 0.5 else "bottom")


@dataclass
class SceneObject:
    """One placed object with everything the renderer decided for it."""

    index: int
    asset: AssetObject
    scale: float
    z: int
    track: np.ndarray           # (10, 2) sprite centre in pixels
    sounding: np.ndarray        # (10,) bool
    loudness: float
    second_rms: np.ndarray      # (10,) RMS of this object's audio in each second
    masks: np.ndarray           # (10, H, W) bool visible mask after occlusion

    @property
    def category(self) -> str:
        return self.asset.category


@dataclass
class Scene:
    size: int
    frames: np.ndarray          # uint8 (10, H, W, 3)
    audio: np.ndarray           # float32 (160000,)
    objects: list[SceneObject]

    def facts(self) -> list[ObjectFacts]:
        return [_object_facts(o, self.size, self.loudness_rank(o.index)) for o in self.objects]

    def loudness_rank(self, index: int) -> int:
        """1 for the loudest sounding object; silent objects rank after all sounding ones."""
        def key(o):
            return (not o.sounding.any(), -o.loudness)
        order = sorted(self.objects, key=key)
        return 1 + [o.index for o in order].index(index)

    def others(self, target: int, frame: int) -> list[np.ndarray]:
        """Other objects' visible masks on a frame, most confusable first.

        Same category and silent (the distractor only audio tells apart) > same category > other.
        Objects invisible on that frame are left out.
        """
        tgt = self.objects[target]

        def confusion(o):
            same = o.category == tgt.category
            return (0 if same and not o.sounding.any() else 1 if same else 2, o.index)

        ordered = sorted((o for o in self.objects if o.index != target), key=confusion)
        return [o.masks[frame] for o in ordered if o.masks[frame].any()]


def generate_scene(library: AssetLibrary, rng: np.random.Generator, size: int = 128, *,
                   categories: list[str] | None = None, focus_category: str | None = None,
                   same_category_pair: bool = False) -> Scene:
    """Render one random scene.

    ``categories`` limits every object's category (None: all of the library's); ``focus_category``
    must appear in the scene (used for unseen-category clips); ``same_category_pair`` places two
    objects of one category (the focus one if given) of which exactly one sounds, the setting in
    which only audio tells them apart.
    """
    if size < 16:
        raise ValueError(f"generate_scene: size must be >= 16 pixels, got {size}")
    assets = _pick_assets(library, rng, categories, focus_category, same_category_pair)
    n = len(assets)
    schedules = [_sound_schedule(rng) if rng.random() < SOUND_PROB else np.zeros(NUM_FRAMES, bool)
                 for _ in range(n)]
    if same_category_pair:
        # assets[0] and assets[1] share a category: the first sounds, the second never does.
        schedules[1][:] = False
        if schedules[0].sum() < 2:
            schedules[0] = _sound_schedule(rng, min_seconds=2)
    elif not any(s.any() for s in schedules):
        schedules[int(rng.integers(n))] = _sound_schedule(rng)
    loudness = rng.uniform(0.3, 1.0, size=n)
    audio, second_rms, schedules = _mix_audio(assets, schedules, loudness, rng)

    order = rng.permutation(n)                 # order[i] = z of object i (0 is furthest back)
    scales = rng.uniform(*SCALE_RANGE, size=n)
    tracks = [_track(rng, size) for _ in range(n)]
    objects = [SceneObject(i, assets[i], float(scales[i]), int(order[i]), tracks[i], schedules[i],
                           float(loudness[i]), second_rms[i], np.zeros((0,), bool))
               for i in range(n)]
    frames, masks = _render(library, rng, size, objects)
    for obj, obj_masks in zip(objects, masks):
        obj.masks = obj_masks
    return Scene(size=size, frames=frames, audio=audio, objects=objects)


def cross_audio(library: AssetLibrary, rng: np.random.Generator, exclude: set[str]) -> np.ndarray:
    """Audio for null expressions: one or two sounds of categories not in the scene, plus noise.

    Heard with it, no visible object is the one making the sound.
    """
    pool = [o for o in library.objects if o.category not in exclude] or list(library.objects)
    n = min(len(pool), int(rng.integers(1, 3)))
    picks = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    schedules = [_sound_schedule(rng, min_seconds=3) for _ in picks]
    audio, _, _ = _mix_audio(picks, schedules, rng.uniform(0.4, 1.0, size=n), rng)
    return audio


def _pick_assets(library, rng, categories, focus, pair) -> list:
    allowed = sorted(set(categories) if categories is not None else set(library.categories()))
    allowed = [c for c in allowed if library.objects_of(c)]
    if not allowed:
        raise ValueError("generate_scene: no library objects in the allowed categories")
    if focus is not None and not library.objects_of(focus):
        raise ValueError(f"generate_scene: focus_category {focus!r} has no library objects")
    n = int(rng.integers(2, 5))
    chosen: list[str] = []
    if pair:
        cat = focus if focus is not None else allowed[int(rng.integers(len(allowed)))]
        chosen = [cat, cat]
    elif focus is not None:
        chosen = [focus]
    rest = [c for c in allowed if c not in chosen]
    take = min(n - len(chosen), len(rest))
    chosen += [rest[i] for i in rng.choice(len(rest), size=take, replace=False)] if take > 0 else []
    if not pair and len(chosen) >= 2 and len(chosen) < 4 and rng.random() < DUPLICATE_PROB:
        chosen.append(chosen[int(rng.integers(len(chosen)))])
    while len(chosen) < 2:                       # a one-category library still gives two objects
        chosen.append(chosen[0])
    picked = []
    for cat in chosen:
        options = library.objects_of(cat)
        used = [a for a in picked if a.category == cat]
        fresh = [a for a in options if all(a is not u for u in used)] or options
        picked.append(fresh[int(rng.integers(len(fresh)))])
    return picked


def _sound_schedule(rng: np.random.Generator, min_seconds: int = 1) -> np.ndarray:
    """Which seconds an object sounds in: all the time, one run, or on and off."""
    style = rng.choice(["always", "run", "intermittent"], p=[0.25, 0.5, 0.25])
    sched = np.zeros(NUM_FRAMES, bool)
    if style == "always":
        sched[:] = True
    elif style == "run":
        length = int(rng.integers(max(2, min_seconds), NUM_FRAMES))
        start = int(rng.integers(0, NUM_FRAMES - length + 1))
        sched[start:start + length] = True
    else:
        sched = rng.random(NUM_FRAMES) < 0.5
    if sched.sum() < min_seconds:
        sched[rng.choice(NUM_FRAMES, size=min_seconds, replace=False)] = True
    return sched


def _gate(schedule: np.ndarray) -> np.ndarray:
    """Per-sample on/off envelope with short linear fades at every change."""
    xs, ys = [0.0], [float(schedule[0])]
    for t in range(1, NUM_FRAMES):
        if schedule[t] != schedule[t - 1]:
            edge = t * SAMPLE_RATE
            xs += [edge - FADE / 2, edge + FADE / 2]
            ys += [float(schedule[t - 1]), float(schedule[t])]
    xs.append(float(CLIP_SAMPLES - 1))
    ys.append(float(schedule[-1]))
    return np.interp(np.arange(CLIP_SAMPLES, dtype=np.float32), xs, ys).astype(np.float32)


def _mix_audio(assets, schedules, loudness, rng):
    """Sum the sounding objects' looped recordings; returns (audio, per-second RMS, schedules).

    A second counts as sounding only if the object's recording is actually audible in it (a
    recording may contain pauses): the facts must describe what is heard.
    """
    mix = np.zeros(CLIP_SAMPLES, np.float32)
    rms = []
    final = []
    for asset, sched, gain in zip(assets, schedules, loudness):
        sched = sched.copy()
        per_second = np.zeros(NUM_FRAMES, np.float32)
        if sched.any():
            rec = np.asarray(asset.sound, dtype=np.float32)
            level = float(np.sqrt(np.mean(rec ** 2))) if rec.size else 0.0
            if level > 0:
                start = int(rng.integers(len(rec)))
                looped = rec[(start + np.arange(CLIP_SAMPLES)) % len(rec)] * (REF_RMS / level)
                signal = looped * _gate(sched) * np.float32(gain)
                per_second = np.sqrt(np.mean(signal.reshape(NUM_FRAMES, -1) ** 2, axis=1))
                sched &= per_second >= 0.25 * REF_RMS * gain
                mix += signal
            else:
                sched[:] = False
        rms.append(np.where(sched, per_second, 0.0).astype(np.float32))
        final.append(sched)
    mix += rng.normal(0.0, NOISE_RMS, CLIP_SAMPLES).astype(np.float32)
    peak = float(np.abs(mix).max())
    mix *= np.float32(PEAK / peak) if peak > 0 else np.float32(1)
    return mix.astype(np.float32), rms, final


def _track(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth path over 10 frames: eased start-to-end motion plus a gentle sway."""
    lo, hi = CENTER_RANGE
    start = rng.uniform(lo, hi, size=2)
    step = rng.uniform(0.1, 0.45) * rng.choice([-1, 1], size=2) * rng.random(2)
    end = np.clip(start + step, lo, hi)
    t = np.linspace(0.0, 1.0, NUM_FRAMES)[:, None]
    eased = t * t * (3 - 2 * t)
    sway = 0.02 * np.sin(2 * np.pi * (t * rng.uniform(0.5, 1.5) + rng.random())) * rng.choice([-1, 1])
    path = start + (end - start) * eased + sway
    return np.clip(path, 0.0, 1.0) * size


def _background(library, rng, size) -> np.ndarray:
    bg = library.backgrounds[int(rng.integers(len(library.backgrounds)))]
    h, w = bg.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(np.ascontiguousarray(bg[y:y + side, x:x + side, :3]))
    return np.asarray(crop.resize((size, size), Image.BILINEAR)).copy()


def _render(library, rng, size, objects):
    """Draw all frames back to front; return frames and each object's visible masks."""
    background = _background(library, rng, size)
    frames = np.repeat(background[None], NUM_FRAMES, axis=0)
    full = np.zeros((len(objects), NUM_FRAMES, size, size), bool)
    back_to_front = sorted(objects, key=lambda o: o.z)
    for obj in back_to_front:
        sprite = Image.fromarray(np.ascontiguousarray(obj.asset.rgba))
        angle = rng.uniform(0, 2 * np.pi)
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for t in range(NUM_FRAMES):
            strength = min(float(obj.second_rms[t]) / REF_RMS, 1.5) if obj.sounding[t] else 0.0
            side = max(2, int(round(obj.scale * size * (1 + PULSE_SCALE * strength))))
            if side not in cache:
                cache[side] = _resize_sprite(sprite, side)
            rgb, mask = cache[side]
            shift = (1 + strength) * (-1) ** t if strength > 0 else 0.0   # vibration
            cx = obj.track[t, 0] + shift * np.cos(angle)
            cy = obj.track[t, 1] + shift * np.sin(angle)
            bright = 1 + PULSE_BRIGHTNESS * strength
            _paint(frames[t], full[obj.index, t], rgb, mask, cx, cy, bright)
    # Visible = own mask minus everything drawn in front of it.
    visible = np.zeros_like(full)
    covered = np.zeros((NUM_FRAMES, size, size), bool)
    for obj in reversed(back_to_front):
        visible[obj.index] = full[obj.index] & ~covered
        covered |= full[obj.index]
    return frames, list(visible)


def _resize_sprite(sprite: Image.Image, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the longer side is ``side`` pixels; mask = alpha > 127 of the resized sprite."""
    w, h = sprite.size
    factor = side / max(w, h)
    new = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    arr = np.asarray(sprite.convert("RGBA").resize(new, Image.BILINEAR))
    return arr[..., :3], arr[..., 3] > 127


def _paint(frame, full_mask, rgb, mask, cx, cy, bright):
    """Paint the sprite's masked pixels centred at (cx, cy), clipping at the frame border."""
    h, w = mask.shape
    size = frame.shape[0]
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(size, x0 + w), min(size, y0 + h)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    sub_mask = mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    sub_rgb = rgb[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    if bright != 1:
        sub_rgb = np.minimum(sub_rgb.astype(np.float32) * bright, 255).astype(np.uint8)
    region = frame[fy0:fy1, fx0:fx1]
    region[sub_mask] = sub_rgb[sub_mask]
    full_mask[fy0:fy1, fx0:fx1] |= sub_mask


def visible_geometry(masks: np.ndarray, size: int) -> tuple[tuple, tuple, tuple]:
    """Per frame of boolean ``masks`` (T, H, W): centre (x, y) and box in [0, 1] (None where the
    mask is empty) and pixel count, as the facts describe an object's visible part."""
    centers, boxes, areas = [], [], []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        areas.append(int(xs.size))
        if xs.size:
            centers.append((float(xs.mean()) / size, float(ys.mean()) / size))
            boxes.append((float(xs.min()) / size, float(ys.min()) / size,
                          float(xs.max() + 1) / size, float(ys.max() + 1) / size))
        else:
            centers.append(None)
            boxes.append(None)
    return tuple(centers), tuple(boxes), tuple(areas)


def _object_facts(obj: SceneObject, size: int, loudness_rank: int) -> ObjectFacts:
    centers, boxes, areas = visible_geometry(obj.masks[:NUM_FRAMES], size)
    dx, dy = (obj.track[-1] - obj.track[0]) / size
    if max(abs(dx), abs(dy)) < 0.1:
        motion = "still"
    elif abs(dx) >= abs(dy):
        motion = "right" if dx > 0 else "left"
    else:
        motion = "down" if dy > 0 else "up"
    size_word = "small" if obj.scale < 0.22 else "large" if obj.scale > 0.32 else "medium"
    return ObjectFacts(index=obj.index, category=obj.category, kind=obj.asset.kind,
                       color=obj.asset.attributes.get("color"), scale=obj.scale, size_word=size_word,
                       centers=centers, boxes=boxes, areas=areas,
                       sounding=tuple(bool(s) for s in obj.sounding), loudness=obj.loudness,
                       motion=motion, z=obj.z, loudness_rank=loudness_rank)
