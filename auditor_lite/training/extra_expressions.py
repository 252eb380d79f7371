"""More supervised expressions per training clip, from the generator's scene sidecar.

A benchmark has about 1.1 expressions per clip, so a clip teaches the grounder one referent. The
sidecar holds every fact the generator's resolver needs (categories, colours, sizes, visible
positions per frame, sounding seconds, loudness, motion, drawing order), so the resolver can phrase
*other* valid expressions about the same scene, about other targets: several referents per
rendered clip, and the contrast between the objects of one scene is taught directly. Only training
uses this; the benchmark's own expressions are untouched.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from auditor_lite.data.expressions import _choose, candidate_expressions, resolve
from auditor_lite.data.scenes import ObjectFacts, visible_geometry
from auditor_lite.data.sidecar import ClipSidecar

NEED_AUDIO_SHARE = 0.3          # as the generator asks for
MIN_TARGET_AREA = 0.004


def facts_from_sidecar(side: ClipSidecar) -> list[ObjectFacts]:
    """The resolver's facts of the clip, rebuilt from the sidecar (what ``Scene.facts`` gave)."""
    size = side.instance.shape[-1]
    facts = []
    for k, obj in enumerate(side.objects):
        centers, boxes, areas = visible_geometry(side.instance == k + 1, size)
        facts.append(ObjectFacts(index=k, category=obj["category"], kind=obj["kind"], color=obj["color"],
                                 scale=obj["scale"], size_word=obj["size_word"], centers=centers,
                                 boxes=boxes, areas=areas,
                                 sounding=tuple(bool(s) for s in side.sounding[k]),
                                 loudness=obj["loudness"], motion=obj["motion"], z=obj["z"]))
    order = sorted(facts, key=lambda f: (not any(f.sounding), -f.loudness))
    ranks = {f.index: r + 1 for r, f in enumerate(order)}
    return [replace(f, loudness_rank=ranks[f.index]) for f in facts]


def extra_expressions(side: ClipSidecar, rng: np.random.Generator, count: int,
                      exclude: set[str] = frozenset()) -> list[dict]:
    """Up to ``count`` new expressions (text, target, anchor, cue, needs_audio) about the clip."""
    facts = facts_from_sidecar(side)
    size = side.instance.shape[-1] ** 2
    targets = [f.index for f in facts if max(f.areas) >= MIN_TARGET_AREA * size]
    pools = {}
    out, used = [], set(exclude)
    for _ in range(count):
        if not targets:
            break
        target = targets[int(rng.integers(len(targets)))]
        if target not in pools:
            pools[target] = candidate_expressions(facts, target)
        pool = [(w, e) for w, e in pools[target] if e.text not in used]
        if not pool:
            continue
        want_audio = rng.random() < NEED_AUDIO_SHARE
        pool = [(w, e) for w, e in pool if e.needs_audio == want_audio] or pool
        expr = _choose(rng, pool)
        used.add(expr.text)
        anchor = None
        if expr.query is not None and expr.query.anchor is not None:
            found = resolve(facts, expr.query.anchor)
            anchor = int(next(iter(found))) if len(found) == 1 else None
        out.append({"text": expr.text, "target": int(expr.target), "anchor": anchor, "cue": expr.cue,
                    "needs_audio": bool(expr.needs_audio)})
    return out
