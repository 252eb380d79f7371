"""``auditor-lite data synth``: a synthetic benchmark in the MQ-RAVSBench layout.

Per clip (all random choices from ``SeedSequence([seed, clip index])``, so the output is the same
for any number of worker processes):

1. split: test_u with probability ``TEST_U_SHARE``; else train 3/4, test_s 1/4. Train and test_s
   scenes use only *seen* categories; a test_u scene contains an *unseen* one (a fixed ~20% of the
   library's categories, chosen by name hash so that every seed agrees) and only that kind is
   referred to, as in Ref-AVS's unseen split.
2. scene (``scenes.generate_scene``); in ``NEED_AUDIO_SHARE`` of the clips it holds two objects of
   one category, only one sounding, and the expression is asked to need audio.
3. one expression (a second one in ``SECOND_EXPRESSION_PROB`` of the clips), and in
   ``NULL_EXPRESSION_PROB`` of the clips a null expression heard with cross audio.
4. candidates: key frame only for train, every frame where the target is visible for test splits.

Workers render clips and return arrays; the parent process writes them in clip order.
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from auditor_lite.data import candidates as cand
from auditor_lite.data.assets import AssetLibrary, load_library
from auditor_lite.data.expressions import (SOUND_RANKS, Expression, make_expression,
                                           make_null_expression)
from auditor_lite.data.scenes import cross_audio, generate_scene
from auditor_lite.data.schema import META_DIR, NULL_UID_PREFIX, NUM_FRAMES
from auditor_lite.data.sidecar import SIDECAR_DIR, ClipSidecar, build_sidecar, write_sidecar
from auditor_lite.data.writer import BenchmarkWriter, MaskSpec

UNSEEN_SHARE = 0.2              # share of categories held out for test_u
TEST_U_SHARE = 0.12             # share of clips in test_u
TEST_S_OF_SEEN = 0.25           # share of seen-category clips in test_s (the rest is train)
NEED_AUDIO_SHARE = 0.3          # clips whose expression should need audio
SECOND_EXPRESSION_PROB = 0.05   # with the null ones: MQ-RAVSBench has 2,046 expressions on 1,840 clips
NULL_EXPRESSION_PROB = 0.06     # ~5% of all expressions are null
MIN_TARGET_AREA = 0.004         # a target must cover this share of the frame in some frame
MAX_SCENE_TRIES = 20
LIBRARY_SEED = 0                # every benchmark seed uses the same objects (a fixed vocabulary)
# Sidecar with each expression's cue and whether it needs audio to resolve. Not part of the
# upstream layout (readers ignore it); `auditor-lite eval --uids` uses it for audio ablations.
CUES_CSV = "synth_cues.csv"


@dataclass
class ExpressionOut:
    split: str
    uid: str
    fid: int
    exp: str
    kfid: int
    gt_masks: dict
    candidates: list[MaskSpec]
    cue: str
    needs_audio: bool
    null: bool


@dataclass
class ClipOut:
    vid: str
    split: str
    frames: np.ndarray
    audio: np.ndarray
    cross_audio: np.ndarray | None
    expressions: list[ExpressionOut] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    sidecar: ClipSidecar | None = None


def unseen_categories(categories: list[str]) -> list[str]:
    """A fixed ~20% of the categories (at least one when there are two or more), by name hash."""
    ordered = sorted(categories, key=lambda c: hashlib.sha1(c.encode()).hexdigest())
    count = max(1, round(UNSEEN_SHARE * len(ordered))) if len(ordered) >= 2 else 0
    return sorted(ordered[:count])


def uid_token(category: str) -> str:
    """A category as it may appear in a uid: ``uid.rsplit('_', 2)`` must give back the vid."""
    token = re.sub(r"[^A-Za-z0-9-]+", "-", category).strip("-")
    return token or "object"


def clip_vid(seed: int, index: int) -> str:
    return f"syn{seed:04d}_{index:05d}_0_10000"


def synthesize(out, *, clips: int, seed: int, size: int = 128, asset_dir=None, procedural=False,
               overwrite=False, progress=True, workers: int | None = None) -> str:
    """Write ``clips`` clips to ``out`` and return a printable summary."""
    if clips < 1:
        raise ValueError(f"synthesize: clips must be >= 1, got {clips}")
    if size < 32:
        raise ValueError(f"synthesize: size must be >= 32 pixels, got {size}")
    started = time.perf_counter()
    library = load_library(asset_dir, procedural=procedural, seed=LIBRARY_SEED)
    unseen = unseen_categories(library.categories())
    if not unseen:
        raise ValueError(f"synthesize: the asset library ({library.origin}) has fewer than two "
                         "categories; unseen-category clips need at least two")
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    jobs = [(seed, i, size) for i in range(clips)]
    stats = _Stats()
    bar = tqdm(total=clips, desc="synth", unit="clip", file=sys.stderr, disable=not progress)
    with BenchmarkWriter(out, overwrite=overwrite) as writer:
        if (Path(out) / SIDECAR_DIR).exists():     # the writer only clears the official layout
            shutil.rmtree(Path(out) / SIDECAR_DIR)
        if workers == 1:
            _init_worker(asset_dir, procedural)
            results = map(_make_clip_job, jobs)
            _write_all(writer, results, stats, bar)
        else:
            # Not "fork": forking a process whose other threads hold locks (ONNX Runtime's or torch's
            # thread pools, after an audit or a training in the same process) can deadlock the
            # children; the fork server forks from a clean single-threaded process instead.
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                              else "spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(asset_dir, procedural)) as pool:
                _write_all(writer, pool.imap(_make_clip_job, jobs, chunksize=2), stats, bar)
    bar.close()
    _write_cues(Path(out) / META_DIR / CUES_CSV, stats.rows)
    return stats.summary(out, library, unseen, time.perf_counter() - started, workers)


def _write_cues(path: Path, rows: list[tuple]) -> None:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["uid", "split", "cue", "needs_audio"])
        out.writerows(rows)


def _write_all(writer: BenchmarkWriter, results, stats, bar) -> None:
    for clip in results:
        writer.add_clip(clip.vid, clip.frames, clip.audio, cross_audio=clip.cross_audio)
        if clip.sidecar is not None:
            write_sidecar(writer.root, clip.sidecar)
        for e in clip.expressions:
            writer.add_expression(split=e.split, uid=e.uid, vid=clip.vid, fid=e.fid, exp=e.exp,
                                  kfid=e.kfid, gt_masks=e.gt_masks, candidates=e.candidates)
        stats.add(clip)
        bar.update(1)


_LIBRARY: AssetLibrary | None = None


def _init_worker(asset_dir, procedural) -> None:
    global _LIBRARY
    _LIBRARY = load_library(asset_dir, procedural=procedural, seed=LIBRARY_SEED)


def _make_clip_job(job) -> ClipOut:
    seed, index, size = job
    return make_clip(_LIBRARY, seed, index, size)


def make_clip(library: AssetLibrary, seed: int, index: int, size: int) -> ClipOut:
    """Everything for clip ``index``: scene, expressions and candidates (no file is written)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    cand.pop_skip_counts()          # count only this clip's skipped candidates
    categories = library.categories()
    unseen = unseen_categories(categories)
    seen = [c for c in categories if c not in unseen]
    draw = rng.random()
    split = "test_u" if draw < TEST_U_SHARE or not seen else (
        "test_s" if draw < TEST_U_SHARE + (1 - TEST_U_SHARE) * TEST_S_OF_SEEN else "train")
    want_audio = bool(rng.random() < NEED_AUDIO_SHARE)
    focus = unseen[int(rng.integers(len(unseen)))] if split == "test_u" else None
    allowed = categories if split == "test_u" else seen
    referable = set(unseen) if split == "test_u" else set(seen)

    for _ in range(MAX_SCENE_TRIES):
        scene = generate_scene(library, rng, size, categories=allowed, focus_category=focus,
                               same_category_pair=want_audio)
        facts = scene.facts()
        min_area = MIN_TARGET_AREA * size * size
        targets = [f.index for f in facts if f.category in referable and max(f.areas) >= min_area]
        if want_audio:   # the pair (objects 0 and 1) is what only audio tells apart
            targets = [t for t in targets if t in (0, 1)] or targets
        first = make_expression(facts, rng, targets=targets, need_audio=want_audio) if targets else None
        if first is not None:
            break
    else:
        raise RuntimeError(f"synthesize: no referable scene for clip {index} after "
                           f"{MAX_SCENE_TRIES} tries (library {library.origin})")

    expressions = [first]
    if rng.random() < SECOND_EXPRESSION_PROB:
        others = [t for t in targets if t != first.target] or targets
        second = make_expression(facts, rng, targets=others, need_audio=bool(rng.random() < NEED_AUDIO_SHARE),
                                 exclude={first.text})
        if second is not None:
            expressions.append(second)
    null = None
    if rng.random() < NULL_EXPRESSION_PROB:
        present = {f.category for f in facts}
        null = make_null_expression(facts, rng, [c for c in allowed if c not in present])

    vid = clip_vid(seed, index)
    # Cross audio: sounds of categories not in the scene (and, outside test_u, not unseen ones,
    # so that train never hears an unseen category).
    silent_here = {f.category for f in facts} | (set(unseen) if split != "test_u" else set())
    clip = ClipOut(vid, split, scene.frames, scene.audio,
                   cross_audio(library, rng, silent_here) if null else None)
    counters: Counter = Counter()
    named = []
    for expr in expressions:
        token = uid_token(facts[expr.target].category)
        counters[token] += 1
        uid = f"{vid}_{token}_{counters[token]}"
        named.append((uid, expr))
        clip.expressions.append(_referring(scene, facts, expr, split, uid, rng))
    if null is not None and any(o.masks.any() for o in scene.objects):
        uid = f"{NULL_UID_PREFIX}{vid}_null_1"
        named.append((uid, null))
        clip.expressions.append(_null(scene, null, split, uid, rng))
    clip.skipped = cand.pop_skip_counts()
    # After every random draw, so that the sidecar changes nothing else in the benchmark.
    clip.sidecar = build_sidecar(vid, scene, facts, named)
    return clip


def _subject_sounds(expr: Expression) -> bool:
    q = expr.query
    return q is not None and (q.sound in ("sounding", "always", "begin", "end") or q.rank in SOUND_RANKS
                              or q.relation == "louder")


def _key_frame(facts, expr: Expression, rng, size: int) -> int:
    """A frame where the target is clearly visible and, for a sound cue, sounding."""
    tgt = facts[expr.target]
    min_area = MIN_TARGET_AREA * size * size
    visible = [t for t in range(NUM_FRAMES) if tgt.areas[t] >= min_area] or \
              [t for t in range(NUM_FRAMES) if tgt.areas[t] > 0]
    if _subject_sounds(expr):
        visible = [t for t in visible if tgt.sounding[t]] or visible
    return int(visible[int(rng.integers(len(visible)))])


def _referring(scene, facts, expr: Expression, split: str, uid: str, rng) -> ExpressionOut:
    target = scene.objects[expr.target]
    kfid = _key_frame(facts, expr, rng, scene.size)
    gt = {t: target.masks[t] for t in range(NUM_FRAMES) if target.masks[t].any()}
    frames = [kfid] if split == "train" else sorted(gt)
    specs = []
    for t in frames:
        specs += cand.make_candidates(gt[t], scene.others(expr.target, t), rng, t)
    return ExpressionOut(split, uid, expr.target, expr.text, kfid, gt, specs, expr.cue,
                         expr.needs_audio, null=False)


def _null(scene, expr: Expression, split: str, uid: str, rng) -> ExpressionOut:
    shown = [t for t in range(NUM_FRAMES) if any(o.masks[t].any() for o in scene.objects)]
    kfid = int(shown[int(rng.integers(len(shown)))])
    frames = [kfid] if split == "train" else shown
    specs = []
    for t in frames:
        specs += cand.make_null_expression_candidates([o.masks[t] for o in scene.objects], rng, t)
    return ExpressionOut(split, uid, 0, expr.text, kfid, {}, specs, expr.cue, expr.needs_audio,
                         null=True)


class _Stats:
    def __init__(self):
        self.clips: Counter = Counter()
        self.expressions: Counter = Counter()
        self.nulls = 0
        self.types: Counter = Counter()
        self.cues: Counter = Counter()
        self.audio: Counter = Counter()
        self.skipped: Counter = Counter()
        self.rows: list[tuple] = []

    def add(self, clip: ClipOut) -> None:
        self.clips[clip.split] += 1
        self.skipped += clip.skipped
        for e in clip.expressions:
            self.expressions[e.split] += 1
            self.nulls += e.null
            self.types.update(s.mask_type for s in e.candidates)
            self.rows.append((e.uid, e.split, "null" if e.null else e.cue, int(e.needs_audio)))
            if not e.null:
                self.cues[e.cue] += 1
                self.audio[e.needs_audio] += 1

    def summary(self, out, library, unseen, seconds: float, workers: int) -> str:
        total_clips = sum(self.clips.values())
        total_exp = sum(self.expressions.values())
        referring = sum(self.audio.values())
        lines = [
            f"wrote {out}: {total_clips} clips, {total_exp} expressions "
            f"({self.nulls} null), {sum(self.types.values())} candidates "
            f"in {seconds:.1f} s with {workers} worker(s)",
            f"assets: {library.origin} ({len(library.objects)} objects, "
            f"{len(library.categories())} categories; unseen in test_u: {', '.join(unseen)})",
            "clips per split: " + ", ".join(f"{s} {self.clips[s]}" for s in ("train", "test_s", "test_u")),
            "expressions per split: " + ", ".join(
                f"{s} {self.expressions[s]}" for s in ("train", "test_s", "test_u")),
            "candidates per type: " + ", ".join(f"{t} {n}" for t, n in sorted(self.types.items())),
            f"audio need: {self.audio[True]} of {referring} referring expressions need audio "
            f"({100 * self.audio[True] / max(referring, 1):.0f}%), {self.audio[False]} text+vision",
            "cues: " + ", ".join(f"{c} {n}" for c, n in self.cues.most_common()),
        ]
        if self.skipped:
            lines.append("candidates skipped (band unreachable): " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.skipped.items())))
        return "\n".join(lines)
