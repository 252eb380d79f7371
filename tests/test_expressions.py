"""Expressions: the resolver on hand-built facts, uniqueness over random scenes, the phrasing table."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from auditor_lite.data import expressions as ex
from auditor_lite.data.assets import load_library
from auditor_lite.data.expressions import Query, candidate_expressions, resolve
from auditor_lite.data.phrasing import load_phrasing
from auditor_lite.data.scenes import ObjectFacts, generate_scene

PHRASING_DIR = Path(ex.__file__).parent / "phrasing"
REAL_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "refavs_metadata.csv"


def obj(index, category, x, *, sounding=(), loudness=0.5, scale=0.3, color="red", z=None, y=0.5,
        kind="instrument", motion="still", visible=10):
    """Facts of an object at a fixed place; ``sounding`` lists the seconds it sounds in."""
    centers = tuple((x, y) if t < visible else None for t in range(10))
    half = scale / 2
    boxes = tuple((x - half, y - half, x + half, y + half) if c else None for c in centers)
    return ObjectFacts(index=index, category=category, kind=kind, color=color, scale=scale,
                       size_word="medium", centers=centers, boxes=boxes,
                       areas=tuple(100 if c else 0 for c in centers),
                       sounding=tuple(t in sounding for t in range(10)), loudness=loudness,
                       motion=motion, z=index if z is None else z)


@pytest.fixture
def stage():
    """guitar 0 on the left sounds from 2 s, quiet; guitar 1 in the middle is silent;
    dog 2 on the right barks from 0 s, loud and large, drawn in front of guitar 1 (overlapping)."""
    return [obj(0, "guitar", 0.15, sounding=range(2, 10), loudness=0.4, color="brown"),
            obj(1, "guitar", 0.5, loudness=0.9, color="red", z=0),
            obj(2, "dog", 0.62, sounding=range(0, 5), loudness=0.9, scale=0.4, kind="animal", z=5)]


def test_resolver_on_hand_built_facts(stage):
    assert resolve(stage, Query(category="guitar")) == {0, 1}
    assert resolve(stage, Query(category="guitar", sound="sounding")) == {0}
    assert resolve(stage, Query(category="guitar", sound="silent")) == {1}
    assert resolve(stage, Query(sound="sounding")) == {0, 2}
    assert resolve(stage, Query(rank="loudest")) == {2}           # 0.9 >= 1.5 * 0.4
    assert resolve(stage, Query(rank="first")) == {2}             # onset 0 < 2
    assert resolve(stage, Query(rank="last")) == {0}
    assert resolve(stage, Query(rank="longest")) == {0}           # 8 s > 5 s
    assert resolve(stage, Query(sound="always")) == set()
    assert resolve(stage, Query(sound="begin")) == {2}
    assert resolve(stage, Query(color="brown", category="guitar")) == {0}
    assert resolve(stage, Query(rank="biggest")) == {2}           # 0.4 >= 1.25 * 0.3
    assert resolve(stage, Query(category="guitar", rank="leftmost")) == {0}
    assert resolve(stage, Query(category="dog", rank="rightmost")) == set()  # x 0.62 is mid-frame
    assert resolve(stage, Query(category="dog", rank="leftmost")) == set()  # one dog, not on the left
    assert resolve(stage, Query(kind="instrument", sound="silent")) == {1}
    # Relations: the anchor must be exactly one object.
    assert resolve(stage, Query(relation="left", anchor=Query(category="dog"))) == {0, 1}
    assert resolve(stage, Query(sound="sounding", relation="left", anchor=Query(category="dog"))) == {0}
    assert resolve(stage, Query(relation="right", anchor=Query(category="guitar"))) == set()
    assert resolve(stage, Query(relation="right",
                                anchor=Query(category="guitar", sound="silent"))) == {2}
    assert resolve(stage, Query(relation="front", anchor=Query(category="guitar", sound="silent"))) == {2}
    assert resolve(stage, Query(relation="behind", anchor=Query(category="dog"))) == {1}
    assert resolve(stage, Query(relation="louder", anchor=Query(category="guitar",
                                                                sound="sounding"))) == {2}


def test_margins_make_close_calls_ambiguous():
    close = [obj(0, "a", 0.2, sounding=[1], loudness=0.6), obj(1, "b", 0.8, sounding=[1], loudness=0.5)]
    assert resolve(close, Query(rank="loudest")) == {0, 1}        # 0.6 < 1.5 * 0.5
    assert resolve(close, Query(rank="first")) == {0, 1}          # same onset
    near = [obj(0, "a", 0.50), obj(1, "a", 0.53)]
    assert resolve(near, Query(category="a", rank="leftmost")) == {0, 1}   # 0.03 apart < margin
    hidden = [obj(0, "a", 0.2, visible=2), obj(1, "b", 0.8)]
    assert resolve(hidden, Query(relation="left", anchor=Query(category="b"))) == set()
    assert resolve(hidden, Query(category="a", whole_video=True)) == set()


def test_needs_audio_is_what_the_text_cannot_resolve_without_sound(stage):
    sounding_guitar = Query(category="guitar", sound="sounding")
    assert resolve(stage, sounding_guitar.without_sound()) == {0, 1}          # needs audio
    assert resolve(stage, Query(category="dog", sound="sounding").without_sound()) == {2}
    assert sounding_guitar.cue() == "sound"
    assert Query(rank="first").cue() == "sound+time"
    assert Query(category="dog", color="red").cue() == "appearance"
    assert Query(category="dog").cue() == "category"


def test_candidate_expressions_on_the_stage(stage):
    texts = {e.text: e for _, e in candidate_expressions(stage, 0)}
    assert texts["The sounding guitar."].needs_audio
    assert not texts["The brown guitar."].needs_audio
    assert "The guitar on the left." in texts
    assert all(e.target == 0 and resolve(stage, e.query) == {0} for e in texts.values())
    # Guitar 1 is silent: only sound-free or "silent" expressions can name it.
    for _, e in candidate_expressions(stage, 1):
        assert e.query.sound in (None, "silent") and "{" not in e.text


@pytest.fixture(scope="module")
def library():
    return load_library(procedural=True, seed=0)


def test_every_generated_expression_refers_to_exactly_its_target(library):
    forms, audio = Counter(), Counter()
    for seed in range(30):
        rng = np.random.default_rng(seed)
        scene = generate_scene(library, rng, size=48, same_category_pair=seed % 3 == 0)
        facts = scene.facts()
        for target in range(len(facts)):
            for weight, e in candidate_expressions(facts, target):
                assert weight > 0
                assert resolve(facts, e.query) == {target}, e.text
                assert e.text[0].isupper() and e.text.endswith(".") and "{" not in e.text
                if e.query.category is not None:
                    assert ex.display_name(facts[target].category) in e.text
                forms[e.form] += 1
        e = ex.make_expression(scene, rng, need_audio=seed % 3 == 0)   # a Scene or its facts
        assert resolve(facts, e.query) == {e.target}
        audio[(seed % 3 == 0, e.needs_audio)] += 1
    assert len(forms) >= 12, forms
    # Pair scenes always allow "the sounding X"; other scenes always have a text+vision option.
    assert audio[(True, False)] == 0 and audio[(False, True)] == 0


def test_null_expressions_refer_to_nothing(library):
    kinds = Counter()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        scene = generate_scene(library, rng, size=48)
        facts = scene.facts()
        absent = [c for c in library.categories() if c not in {f.category for f in facts}]
        e = ex.make_null_expression(facts, rng, absent)
        assert e is not None and e.target is None
        muted = [f.__class__(**{**f.__dict__, "sounding": (False,) * 10}) for f in facts]
        assert resolve(muted, e.query) == set()
        kinds[e.query.category is None] += 1
        assert e.needs_audio == (e.query.category is None)
    assert kinds[True] and kinds[False]


def test_phrasing_table_is_shipped_and_small():
    table = load_phrasing()
    size = (PHRASING_DIR / "templates.json").stat().st_size
    assert size < 200_000
    assert "MIT" in (PHRASING_DIR / "LICENSE.txt").read_text()
    assert set(ex.FORM_MEANING) <= set(table["forms"])
    real = {f: sum(t["count"] for t in v["templates"]) for f, v in table["forms"].items()}
    # The most common real phrasings are there, with their real counts.
    assert real["loudest"] > 500 and real["first"] > 500 and real["sounding"] > 500
    texts = {t["text"] for t in table["forms"]["sounding"]["templates"]}
    assert {"the sounding object", "the sounding {cat}"} <= texts


@pytest.mark.skipif(not REAL_CSV.is_file(), reason="needs ../shared/data/refavs_metadata.csv")
def test_phrasing_table_regenerates_from_the_real_csv():
    from auditor_lite.data.phrasing.derive import derive_phrasing

    shipped = json.loads((PHRASING_DIR / "templates.json").read_text())
    assert derive_phrasing(REAL_CSV) == shipped
