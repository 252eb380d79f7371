"""Scene invariants: exact masks, occlusion, audio length and schedule, visible pulses of sounding."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from auditor_lite.data import scenes
from auditor_lite.data.scenes import REF_RMS, SceneObject, cross_audio, generate_scene
from auditor_lite.data.schema import CLIP_SAMPLES, NUM_FRAMES, SAMPLE_RATE

BACKGROUND = (20, 20, 20)
# Uniform sprite colours whose channel ratios identify them; the brightness pulse scales all
# channels by at most 1.225, which keeps them under 255.
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200),
           (40, 200, 200), (120, 60, 200), (60, 200, 120)]


@dataclass
class FakeAsset:
    name: str
    category: str
    kind: str
    rgba: np.ndarray
    sound: np.ndarray
    attributes: dict = field(default_factory=dict)


@dataclass
class FakeLibrary:
    objects: list
    backgrounds: list
    origin: str = "fake"

    def categories(self):
        return sorted({o.category for o in self.objects})

    def objects_of(self, category):
        return [o for o in self.objects if o.category == category]


def ellipse_sprite(h: int, w: int, colour) -> np.ndarray:
    """A uniform ellipse with a soft alpha ramp, so that alpha > 127 is a real threshold."""
    yy, xx = np.mgrid[:h, :w]
    r = np.sqrt(((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2)
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = np.clip((1.2 - r) / 0.4 * 255, 0, 255).astype(np.uint8)
    return rgba


def fake_library(categories: int = 4, per_category: int = 2) -> FakeLibrary:
    objects = []
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    for c in range(categories):
        for k in range(per_category):
            colour = COLOURS[(c * per_category + k) % len(COLOURS)]
            tone = (0.3 * np.sin(2 * np.pi * (220 + 60 * c + 15 * k) * t)).astype(np.float32)
            objects.append(FakeAsset(f"c{c}k{k}", f"cat{c}", "shape",
                                     ellipse_sprite(40 + 7 * k, 50 - 5 * c, colour), tone,
                                     {"color": "red"}))
    background = np.zeros((256, 256, 3), np.uint8)
    background[:] = BACKGROUND
    return FakeLibrary(objects, [background])


@pytest.fixture(scope="module")
def library():
    return fake_library()


def test_scene_shapes_and_audio(library):
    for seed in range(5):
        scene = generate_scene(library, np.random.default_rng(seed), size=48)
        assert scene.frames.shape == (NUM_FRAMES, 48, 48, 3) and scene.frames.dtype == np.uint8
        assert scene.audio.shape == (CLIP_SAMPLES,) and scene.audio.dtype == np.float32
        assert np.isfinite(scene.audio).all()
        assert abs(np.abs(scene.audio).max() - scenes.PEAK) < 1e-4
        assert 2 <= len(scene.objects) <= 4
        assert any(o.sounding.any() for o in scene.objects)
        for obj in scene.objects:
            assert obj.masks.shape == (NUM_FRAMES, 48, 48) and obj.masks.dtype == bool


def test_masks_are_exactly_the_drawn_pixels(library):
    """Outside the union of visible masks the frame is background; each visible mask is one uniform
    sprite colour (its object's, possibly brightened); visible masks never overlap."""
    for seed in range(12):
        scene = generate_scene(library, np.random.default_rng(seed), size=64)
        for t in range(NUM_FRAMES):
            frame = scene.frames[t].astype(int)
            drawn = (frame != BACKGROUND).any(axis=2)
            masks = [o.masks[t] for o in scene.objects]
            assert np.array_equal(drawn, np.logical_or.reduce(masks))
            assert (np.sum(masks, axis=0) <= 1).all()
            for obj, mask in zip(scene.objects, masks):
                if not mask.any():
                    continue
                pixels = frame[mask]
                # One colour per sprite and frame (a few levels off where resampling
                # un-premultiplies the soft edge, amplified by the brightness pulse).
                assert np.abs(pixels - np.median(pixels, axis=0)).max() <= 6
                rgba = obj.asset.rgba
                base = rgba[rgba.shape[0] // 2, rgba.shape[1] // 2, :3].astype(float)
                ratio = np.median(pixels, axis=0) / base
                assert ratio.min() >= 0.97 and ratio.max() <= 1 + scenes.PULSE_BRIGHTNESS * 1.5 + 0.03
                assert ratio.max() - ratio.min() < 0.05, "brightening keeps the hue"


def test_occlusion_follows_z_order(library):
    """Where two objects' sprites overlap, only the one in front is visible."""
    found = False
    for seed in range(40):
        scene = generate_scene(library, np.random.default_rng(seed), size=64)
        for t in range(NUM_FRAMES):
            for a in scene.objects:
                for b in scene.objects:
                    if a.z > b.z:
                        # b's visible pixels never fall where a (in front) is visible.
                        assert not (a.masks[t] & b.masks[t]).any()
                        found = found or bool(a.masks[t].any() and b.masks[t].any())
    assert found


def test_sounding_object_pulses_larger_and_brighter():
    """Render one still object sounding in second 0 only: frame 0 shows it larger and brighter."""
    colour = (100, 80, 60)
    asset = FakeAsset("a", "cat0", "shape", ellipse_sprite(40, 40, colour), np.zeros(10, np.float32))
    library = FakeLibrary([asset], [np.full((256, 256, 3), 20, np.uint8)])
    track = np.full((NUM_FRAMES, 2), 32.0)
    sounding = np.zeros(NUM_FRAMES, bool)
    sounding[0] = True
    rms = np.where(sounding, REF_RMS, 0.0)   # strength 1.0 in second 0
    obj = SceneObject(0, asset, 0.5, 0, track, sounding, 1.0, rms, np.zeros(0, bool))
    frames, masks = scenes._render(library, np.random.default_rng(0), 64, [obj])
    area_on, area_off = masks[0][0].sum(), masks[0][1].sum()
    expected = (1 + scenes.PULSE_SCALE) ** 2
    assert area_on / area_off == pytest.approx(expected, rel=0.08)
    bright_on = frames[0][masks[0][0]].mean(axis=0)
    bright_off = frames[1][masks[0][1]].mean(axis=0)
    assert bright_off == pytest.approx(colour, abs=0.5)
    assert bright_on == pytest.approx(np.array(colour) * (1 + scenes.PULSE_BRIGHTNESS), abs=1.0)
    # Silent seconds all look the same: the object is still and does not pulse.
    assert all(np.array_equal(masks[0][1], masks[0][t]) for t in range(2, NUM_FRAMES))


def test_audio_is_loud_only_where_something_sounds(library):
    for seed in range(8):
        scene = generate_scene(library, np.random.default_rng(seed), size=48)
        per_second = np.sqrt(np.mean(scene.audio.reshape(NUM_FRAMES, -1) ** 2, axis=1))
        active = np.logical_or.reduce([o.sounding for o in scene.objects])
        if active.all() or not active.any():
            continue
        assert per_second[~active].max() < 0.25 * per_second[active].min()


def test_facts_describe_the_scene(library):
    scene = generate_scene(library, np.random.default_rng(3), size=64)
    for obj, facts in zip(scene.objects, scene.facts()):
        assert facts.category == obj.category and facts.index == obj.index
        assert facts.sounding == tuple(bool(s) for s in obj.sounding)
        assert facts.onset == (int(np.argmax(obj.sounding)) if obj.sounding.any() else None)
        assert facts.duration == int(obj.sounding.sum())
        assert facts.loudness_rank == scene.loudness_rank(obj.index)
        for t in range(NUM_FRAMES):
            assert facts.areas[t] == obj.masks[t].sum()
            if facts.areas[t]:
                ys, xs = np.nonzero(obj.masks[t])
                assert facts.centers[t][0] == pytest.approx(xs.mean() / 64)
                assert facts.hpos(t) in ("left", "middle", "right")
    ranks = sorted(scene.loudness_rank(o.index) for o in scene.objects)
    assert ranks == list(range(1, len(scene.objects) + 1))


def test_same_category_pair_has_exactly_one_sounding(library):
    for seed in range(10):
        scene = generate_scene(library, np.random.default_rng(seed), size=48, same_category_pair=True)
        a, b = scene.objects[0], scene.objects[1]
        assert a.category == b.category
        assert a.sounding.any() and not b.sounding.any()


def test_category_limits_and_focus(library):
    for seed in range(10):
        scene = generate_scene(library, np.random.default_rng(seed), size=48,
                               categories=["cat0", "cat1", "cat2"], focus_category="cat3")
        cats = [o.category for o in scene.objects]
        assert "cat3" in cats and set(cats) <= {"cat0", "cat1", "cat2", "cat3"}
    with pytest.raises(ValueError, match="no library objects"):
        generate_scene(library, np.random.default_rng(0), 48, categories=["nope"])


def test_same_seed_same_scene(library):
    a = generate_scene(library, np.random.default_rng(7), size=48)
    b = generate_scene(library, np.random.default_rng(7), size=48)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)


def test_cross_audio_is_a_clip_of_other_sounds(library):
    audio = cross_audio(library, np.random.default_rng(0), exclude={"cat0", "cat1"})
    assert audio.shape == (CLIP_SAMPLES,) and np.isfinite(audio).all() and np.abs(audio).max() > 0.5
