"""Referring expressions filled from a scene's facts, in the real Ref-AVS phrasing.

Each template of ``phrasing/templates.json`` (derived from the real expressions) belongs to a *form*:
a kind of meaning, turned here into a :class:`Query` (category, sound state, superlative, relation to
an anchor object...). :func:`resolve` evaluates a query on a scene's
:class:`~auditor_lite.data.scenes.ObjectFacts` and returns the set of objects it refers to. An
expression is emitted only if that set is exactly ``{target}``; a null expression only if it is empty.

An expression *needs audio* when the same query without its sound parts (sounding/silent, loudest,
first, louder than...) no longer picks out the target alone: text plus the static look and layout of
the scene cannot resolve it. (The frames do show sounding objects pulsing, as a played instrument
moves; "needs audio" is about the text, as in Ref-AVS.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from auditor_lite.data.phrasing import load_phrasing
from auditor_lite.data.scenes import ObjectFacts

LOUD_MARGIN = 1.5       # "louder"/"loudest" only when the gain ratio is at least this (~3.5 dB)
SIZE_MARGIN = 1.25      # "biggest"/"smallest" only when the scale ratio is at least this
POS_MARGIN = 0.06       # left/right of: centre x apart by at least this fraction of the frame
MIN_COMMON_FRAMES = 3   # a spatial relation must be seen in at least this many frames
EDGE_SECONDS = 2        # "at the beginning" / "at the end": the first / last two seconds
AUTHORED_COUNT = 4      # sampling weight of authored templates, as if seen this often
SOUND_STATES = ("sounding", "silent", "always", "begin", "end")
SOUND_RANKS = ("loudest", "first", "last", "longest", "shortest")
SIZE_WORDS = ("biggest", "smallest")

# How a form's template maps onto a query: subject sound state, superlative, relation kind.
FORM_MEANING = {
    "sounding": ("sounding", None, None), "silent": ("silent", None, None),
    "always": ("always", None, None), "begin": ("begin", None, None), "end": ("end", None, None),
    "loudest": (None, "loudest", None), "first": (None, "first", None), "last": (None, "last", None),
    "longest": (None, "longest", None), "shortest": (None, "shortest", None),
    "louder_than": (None, None, "louder"),
    "sounding_rel": ("sounding", None, "dir"), "rel": (None, None, "dir"),
    "sounding_depth": ("sounding", None, "depth"), "depth": (None, None, "depth"),
    "abs_pos": (None, "dir", None), "middle": (None, "middle", None),
    "color": (None, None, None), "size": (None, "size", None), "category": (None, None, None),
    "motion": (None, None, None),
}


@dataclass(frozen=True)
class Query:
    """The meaning of an expression; every field left None does not constrain."""

    category: str | None = None
    kind: str | None = None                 # "instrument" for "the instrument that ..."
    color: str | None = None
    sound: str | None = None                # one of SOUND_STATES
    rank: str | None = None                 # SOUND_RANKS, SIZE_WORDS, leftmost/rightmost/middle
    relation: str | None = None             # left / right / front / behind / louder
    anchor: Query | None = None             # the object the relation is relative to
    moving: str | None = None               # left / right
    whole_video: bool = False               # "appearing through the entire video"

    def without_sound(self) -> Query:
        """The same query with every audio-dependent part dropped."""
        rank = None if self.rank in SOUND_RANKS else self.rank
        sound = None if self.sound in SOUND_STATES else self.sound
        if self.relation == "louder":
            return replace(self, sound=sound, rank=rank, relation=None, anchor=None)
        anchor = self.anchor.without_sound() if self.anchor is not None else None
        return replace(self, sound=sound, rank=rank, anchor=anchor)

    def cue(self) -> str:
        """Cue types the query uses, e.g. ``sound+position`` (``category`` if nothing else)."""
        parts = set()
        for q in (self, self.anchor):
            if q is None:
                continue
            if q.sound or q.rank in SOUND_RANKS or q.relation == "louder":
                parts.add("sound")
            if q.sound in ("begin", "end") or q.rank in ("first", "last"):
                parts.add("time")
            if q.relation in ("left", "right", "front", "behind") or q.rank in (
                    "leftmost", "rightmost", "middle"):
                parts.add("position")
            if q.color or q.rank in SIZE_WORDS:
                parts.add("appearance")
            if q.moving:
                parts.add("motion")
        return "+".join(sorted(parts)) or "category"


@dataclass(frozen=True)
class Expression:
    text: str
    target: int | None            # object index, None for a null expression
    cue: str
    needs_audio: bool
    form: str = ""
    query: Query | None = None


# ------------------------------------------------------------------------------------ resolver
def resolve(facts: list[ObjectFacts], query: Query) -> frozenset[int]:
    """Indices of the objects ``query`` refers to (several = ambiguous, none = refers to nothing).

    A relation whose anchor is not exactly one object refers to nothing.
    """
    base = [f for f in facts if _matches(f, query)]
    if query.relation is not None:
        anchors = resolve(facts, query.anchor) if query.anchor is not None else frozenset()
        if len(anchors) != 1:
            return frozenset()
        anchor = facts[next(iter(anchors))]
        base = [f for f in base if f.index != anchor.index and _related(f, anchor, query.relation)]
    if query.rank is not None:
        base = _superlative(base, query.rank)
    return frozenset(f.index for f in base)


def _matches(f: ObjectFacts, q: Query) -> bool:
    if q.category is not None and f.category != q.category:
        return False
    if q.kind is not None and f.kind != q.kind:
        return False
    if q.color is not None and f.color != q.color:
        return False
    if q.moving is not None and f.motion != q.moving:
        return False
    if q.whole_video and not all(f.visible):
        return False
    sound = {None: True, "sounding": f.sounds, "silent": not f.sounds, "always": all(f.sounding),
             "begin": any(f.sounding[:EDGE_SECONDS]), "end": any(f.sounding[-EDGE_SECONDS:])}
    return sound[q.sound]


def _common_frames(a: ObjectFacts, b: ObjectFacts) -> list[int]:
    return [t for t in range(len(a.centers)) if a.centers[t] is not None and b.centers[t] is not None]


def _left_of(a: ObjectFacts, b: ObjectFacts) -> bool:
    """a is left of b in every frame both are seen (and they are seen together often enough)."""
    frames = _common_frames(a, b)
    return len(frames) >= MIN_COMMON_FRAMES and all(
        a.centers[t][0] < b.centers[t][0] - POS_MARGIN for t in frames)


def _overlap_frames(a: ObjectFacts, b: ObjectFacts) -> int:
    def touching(t):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.boxes[t], b.boxes[t]
        return ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
    return sum(touching(t) for t in _common_frames(a, b))


def _related(f: ObjectFacts, anchor: ObjectFacts, relation: str) -> bool:
    if relation == "left":
        return _left_of(f, anchor)
    if relation == "right":
        return _left_of(anchor, f)
    if relation in ("front", "behind"):
        in_front = f.z > anchor.z
        return _overlap_frames(f, anchor) >= 1 and in_front == (relation == "front")
    if relation == "louder":
        return f.sounds and anchor.sounds and f.loudness >= anchor.loudness * LOUD_MARGIN
    raise ValueError(f"unknown relation {relation!r}")


def _superlative(base: list[ObjectFacts], rank: str) -> list[ObjectFacts]:
    """The extreme object(s); a tie (or a margin too small to perceive) keeps all tied ones."""
    if rank in SOUND_RANKS:
        base = [f for f in base if f.sounds]
    if not base:
        return []
    if rank in ("loudest", "biggest", "smallest"):
        value = {"loudest": lambda f: f.loudness, "biggest": lambda f: f.scale,
                 "smallest": lambda f: 1.0 / f.scale}[rank]
        margin = LOUD_MARGIN if rank == "loudest" else SIZE_MARGIN
        best = max(value(f) for f in base)
        return [f for f in base if value(f) * margin > best]
    if rank in ("first", "last", "longest", "shortest"):
        value = {"first": lambda f: -f.onset, "last": lambda f: f.onset,
                 "longest": lambda f: f.duration, "shortest": lambda f: -f.duration}[rank]
        best = max(value(f) for f in base)
        return [f for f in base if value(f) == best]
    if rank in ("leftmost", "rightmost"):
        if len(base) == 1:   # "the guitar on the left" with one guitar: it must be on the left
            side = "left" if rank == "leftmost" else "right"
            seen = [t for t, c in enumerate(base[0].centers) if c is not None]
            return base if seen and all(base[0].hpos(t) == side for t in seen) else []
        before = _left_of if rank == "leftmost" else (lambda a, b: _left_of(b, a))
        winners = [f for f in base if all(before(f, o) for o in base if o is not f)]
        return winners or base
    if rank == "middle":
        if len(base) == 1:
            seen = [t for t, c in enumerate(base[0].centers) if c is not None]
            return base if seen and all(base[0].hpos(t) == "middle" for t in seen) else []
        if len(base) != 3:
            return base
        middle = [f for f in base if sum(_left_of(o, f) for o in base) == 1
                  and sum(_left_of(f, o) for o in base) == 1]
        return middle if len(middle) == 1 else base
    raise ValueError(f"unknown rank {rank!r}")


# ----------------------------------------------------------------------------------- generator
def display_name(category: str) -> str:
    return category.replace("_", " ")


def _query_for(form: str, text: str, slots: dict) -> Query:
    """The meaning of one template of ``form`` filled with ``slots``."""
    sound, rank, relation = FORM_MEANING[form]
    if "and sounding" in text:
        sound = "sounding"
    if rank == "dir":
        rank = "leftmost" if slots["dir"] == "left" else "rightmost"
    elif rank == "size":
        rank = slots["size"]
    anchor = None
    if relation == "dir":
        relation = slots["dir"]
    elif relation == "depth":
        relation = "front" if slots["depth"] == "in front of" else "behind"
    if relation is not None:
        amod = "sounding" if "sounding {anchor}" in text else "silent" if "silent {anchor}" in text else None
        anchor = Query(category=slots["anchor"], sound=amod)
    return Query(category=slots.get("cat") if "{cat}" in text else None,
                 kind="instrument" if text.startswith("the instrument") else None,
                 color=slots.get("color") if "{color}" in text else None,
                 sound=sound, rank=rank, relation=relation, anchor=anchor,
                 moving=slots["dir"] if form == "motion" else None,
                 whole_video="appear" in text)


def _fillings(form: str, text: str, target: ObjectFacts, facts: list[ObjectFacts]):
    """Every way to fill the template's slots for this target."""
    base = {"cat": target.category, "color": target.color}
    options = [base]
    if "{color}" in text and target.color is None:
        return []
    if "{dir}" in text:
        options = [dict(o, dir=d) for o in options for d in ("left", "right")]
    if "{depth}" in text:
        options = [dict(o, depth=d) for o in options for d in ("in front of", "behind")]
    if "{size}" in text:
        options = [dict(o, size=s) for o in options for s in SIZE_WORDS]
    if "{anchor}" in text:
        anchors = sorted({f.category for f in facts if f.index != target.index})
        options = [dict(o, anchor=a) for o in options for a in anchors]
    return options


def render(text: str, slots: dict) -> str:
    names = {k: display_name(v) if k in ("cat", "anchor") else v for k, v in slots.items()
             if v is not None}
    filled = text.format(**names)
    return filled[0].upper() + filled[1:] + "."


def _weight(template: dict) -> float:
    # sqrt: keep the real frequency order without letting the top few templates crowd out the rest.
    return math.sqrt(template["count"] if template["source"] == "refavs" else AUTHORED_COUNT)


def candidate_expressions(facts: list[ObjectFacts], target: int) -> list[tuple[float, Expression]]:
    """(weight, expression) for every template filling that refers to exactly ``target``."""
    out = []
    tgt = facts[target]
    for form, spec in load_phrasing()["forms"].items():
        if form not in FORM_MEANING:
            continue
        for template in spec["templates"]:
            text = template["text"]
            valid = []
            for slots in _fillings(form, text, tgt, facts):
                query = _query_for(form, text, slots)
                if resolve(facts, query) != {target}:
                    continue
                needs_audio = resolve(facts, query.without_sound()) != {target}
                valid.append(Expression(render(text, slots), target, query.cue(), needs_audio,
                                        form, query))
            # Spread a template's weight over its fillings so slot-rich forms do not dominate.
            out += [(_weight(template) / len(valid), e) for e in valid]
    return out


def _choose(rng: np.random.Generator, weighted: list[tuple[float, Expression]]) -> Expression:
    weights = np.array([w for w, _ in weighted], dtype=float)
    return weighted[int(rng.choice(len(weighted), p=weights / weights.sum()))][1]


def make_expression(scene, rng: np.random.Generator, *,
                    targets: list[int] | None = None, need_audio: bool | None = None,
                    exclude: set[str] = frozenset()) -> Expression | None:
    """One expression referring to exactly one of ``targets`` (default: any object).

    ``scene`` is a :class:`~auditor_lite.data.scenes.Scene` or its ``facts()`` list.
    ``need_audio`` True/False asks for an expression that does / does not need audio; if none
    exists for these targets, any valid expression is returned (its ``needs_audio`` says which).
    ``exclude`` lists texts already used for this clip. None if no template fits at all.
    """
    facts = scene.facts() if hasattr(scene, "facts") else scene
    pool = []
    for t in (range(len(facts)) if targets is None else targets):
        pool += [(w, e) for w, e in candidate_expressions(facts, t) if e.text not in exclude]
    if not pool:
        return None
    if need_audio is not None:
        wanted = [(w, e) for w, e in pool if e.needs_audio == need_audio]
        pool = wanted or pool
    return _choose(rng, pool)


def make_null_expression(scene, rng: np.random.Generator,
                         absent_categories: list[str]) -> Expression | None:
    """An expression that refers to nothing, heard with cross audio (no visible object sounds).

    ``scene`` is a Scene or its ``facts()`` list; ``absent_categories`` are library categories
    not in the scene.
    Half of them name a category absent from the scene; the others use a sound cue, which under the
    cross audio matches no object (checked on the facts with every object made silent).
    """
    facts = scene.facts() if hasattr(scene, "facts") else scene
    muted = [replace(f, sounding=tuple(False for _ in f.sounding)) for f in facts]
    forms = load_phrasing()["forms"]
    pool = []
    if absent_categories and rng.random() < 0.5:
        cat = absent_categories[int(rng.integers(len(absent_categories)))]
        for form in ("category", "sounding", "silent", "always", "color", "abs_pos"):
            for template in forms[form]["templates"]:
                if "{cat}" in template["text"] and "{color}" not in template["text"]:
                    slots = {"cat": cat, "dir": str(rng.choice(["left", "right"]))}
                    pool.append((form, template, slots))
    if not pool:
        for form in ("sounding", "loudest", "first", "last", "always", "longest", "begin", "end"):
            for template in forms[form]["templates"]:
                if "{cat}" not in template["text"] and not template["text"].startswith("the instrument"):
                    pool.append((form, template, {}))
    weighted = []
    for form, template, slots in pool:
        query = _query_for(form, template["text"], slots)
        if resolve(muted, query):      # null uids are heard with the cross audio: nothing visible sounds
            continue
        needs_audio = query.category is None       # only the (cross) audio says "nothing"
        weighted.append((_weight(template), Expression(render(template["text"], slots), None,
                                                        query.cue(), needs_audio, form, query)))
    return _choose(rng, weighted) if weighted else None
