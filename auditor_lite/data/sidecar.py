"""Training-only scene sidecar of a generated benchmark: who is where, what sounds, what was meant.

The official MQ-RAVSBench layout only has each expression's target mask, so a model trained on it
never learns the *other* objects' categories, their sounding state or their role as an anchor.
``data synth`` knows all of that, and writes it per clip to ``ROOT/synth_sidecar/<vid>.npz``, a
path outside the files the layout defines. The benchmark reader never looks at it; only training
and the grounding diagnostics read it, and both work without it (mask-only losses, candidate
masks as the scene's objects).

One ``.npz`` per clip (compressed; about 10 KB at 128 px):

- ``instance``  uint8 (10, H, W): 0 = background, ``k + 1`` = object ``k``'s *visible* mask;
- ``sounding``  bool (K, 10): the object is audible in that second (what the facts call sounding);
- ``second_rms`` float32 (K, 10): the object's RMS in each second (relative loudness over time);
- ``centers``   float32 (K, 10, 2): centre (x, y) in [0, 1] of the visible part, NaN where hidden;
- ``info``      a JSON string: per object ``category``, ``kind``, ``color``, ``scale``,
  ``size_word``, ``loudness``, ``motion``, ``z``; per expression ``uid``, ``target`` (None for a
  null one), ``anchor`` (object index or None), ``relation``, ``form``, ``cue``, ``needs_audio``,
  ``null``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIDECAR_DIR = "synth_sidecar"
SIDECAR_VERSION = 1


@dataclass
class ClipSidecar:
    vid: str
    instance: np.ndarray        # uint8 (10, H, W)
    sounding: np.ndarray        # bool (K, 10)
    second_rms: np.ndarray      # float32 (K, 10)
    centers: np.ndarray         # float32 (K, 10, 2), NaN where hidden
    objects: list[dict]
    expressions: list[dict]

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    def expression(self, uid: str) -> dict | None:
        return next((e for e in self.expressions if e["uid"] == uid), None)


def sidecar_path(root, vid: str) -> Path:
    return Path(root) / SIDECAR_DIR / f"{vid}.npz"


def build_sidecar(vid: str, scene, facts, expressions: list[tuple[str, object]]) -> ClipSidecar:
    """``expressions``: (uid, Expression) pairs; a null expression has ``target is None``."""
    from auditor_lite.data.expressions import resolve

    objects = scene.objects
    instance = np.zeros(objects[0].masks.shape if objects else (10, scene.size, scene.size), np.uint8)
    for k, obj in enumerate(objects):       # visible masks are disjoint after occlusion
        instance[obj.masks] = k + 1
    centers = np.full((len(facts), len(facts[0].centers) if facts else 10, 2), np.nan, np.float32)
    for k, f in enumerate(facts):
        for t, c in enumerate(f.centers):
            if c is not None:
                centers[k, t] = c
    info_objects = [{"category": f.category, "kind": f.kind, "color": f.color, "scale": float(f.scale),
                     "size_word": f.size_word, "loudness": float(f.loudness), "motion": f.motion,
                     "z": int(f.z)} for f in facts]
    info_expr = []
    for uid, expr in expressions:
        query = expr.query
        anchor = None
        if query is not None and query.anchor is not None and expr.target is not None:
            found = resolve(facts, query.anchor)
            anchor = int(next(iter(found))) if len(found) == 1 else None
        info_expr.append({"uid": uid, "target": None if expr.target is None else int(expr.target),
                          "anchor": anchor, "relation": None if query is None else query.relation,
                          "form": expr.form, "cue": expr.cue, "needs_audio": bool(expr.needs_audio),
                          "null": expr.target is None})
    return ClipSidecar(vid, instance,
                       np.array([f.sounding for f in facts], bool).reshape(len(facts), -1),
                       np.array([o.second_rms for o in objects], np.float32).reshape(len(objects), -1),
                       centers, info_objects, info_expr)


def write_sidecar(root, side: ClipSidecar) -> Path:
    path = sidecar_path(root, side.vid)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = json.dumps({"version": SIDECAR_VERSION, "objects": side.objects,
                       "expressions": side.expressions})
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, instance=side.instance, sounding=side.sounding,
                        second_rms=side.second_rms, centers=side.centers, info=np.array(info))
    tmp.replace(path)
    return path


def read_sidecar(root, vid: str) -> ClipSidecar | None:
    """The clip's sidecar, or None when the benchmark has none (the official layout)."""
    path = sidecar_path(root, vid)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            side = ClipSidecar(vid, z["instance"], z["sounding"].astype(bool),
                               z["second_rms"].astype(np.float32), z["centers"].astype(np.float32),
                               info["objects"], info["expressions"])
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable scene sidecar ({exc})") from None
    if info.get("version") != SIDECAR_VERSION:
        raise ValueError(f"{path}: sidecar version {info.get('version')!r}, expected {SIDECAR_VERSION}")
    if side.instance.ndim != 3 or int(side.instance.max(initial=0)) > side.num_objects:
        raise ValueError(f"{path}: field 'instance' does not match the {side.num_objects} objects")
    return side
