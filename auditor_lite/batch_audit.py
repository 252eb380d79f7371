"""Run the runtime over a whole benchmark (``audit --bench``) and the best-of-candidates selection.

``audit_benchmark`` writes the predictions JSONL of docs/predictions.md (one line per candidate,
with ``mode`` and ``split``), which ``auditor-lite eval`` scores. Per expression one
:class:`~auditor_lite.runtime.session.ClipSession` is opened, and each audited frame's candidates go
through it in one call: one context encode per (expression, frame), as the model requires.

Benchmark media are taken as the benchmark defines them, as training read them: mask PNGs by
upstream's rule (any nonzero pixel), audio averaged to mono, resampled if needed, and zero-padded
to 10 s however short (the upstream layout has no minimum), and a silent clip is legal.

``select_groups`` is the downstream use the paper describes: among a frame's candidates, pick the
one with the highest predicted IoU and pass it only when its predicted action is good enough.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import partial

import numpy as np
from tqdm import tqdm

from auditor_lite.media import load_frames, load_mask
from auditor_lite.data.reader import TEST_SPLITS, Benchmark
from auditor_lite.data.schema import ACTIONS, SAMPLE_RATE, DataError
from auditor_lite.eval.predictions import Prediction, write_predictions
from auditor_lite.preprocess import prepare_audio
from auditor_lite.runtime.files import load_audio_file
from auditor_lite.runtime.inputs import InputError
from auditor_lite.runtime.pipeline import in_order

SILENT_SUFFIX = "-silent-audio"
# --min-action: the worst predicted action a selected mask may have.
GATES = {"accept": ACTIONS[:1], "minor": ACTIONS[:2], "major": ACTIONS[:3]}


def benchmark_pairs(benchmark: Benchmark, splits=None, modes=None) -> list[tuple[str, str]]:
    pairs = [(s, m) for s, m in benchmark.available() if s in TEST_SPLITS
             and (not splits or s in splits) and (not modes or m in modes)]
    if not pairs:
        found = ", ".join(f"{s}/{m}" for s, m in benchmark.available()) or "none"
        raise DataError(benchmark.root, f"no test split/mode to audit (wanted splits {splits or 'any'}, "
                        f"modes {modes or 'any'}; found {found})")
    return pairs


def clip_audio(record, silence: bool = False) -> np.ndarray:
    """The record's 10 s of audio as the runtime takes it (16 kHz mono, padded); silence for the
    ablation."""
    return audio_window(None if silence else load_audio_file(record.clip.audio_path))


def audio_window(wave) -> np.ndarray:
    """Samples (16 kHz mono) as the 10 s window the runtime takes (padded or cut); ``None``: silence."""
    return prepare_audio(np.zeros(0, np.float32) if wave is None else wave, SAMPLE_RATE)[0]


def frame_groups(candidates) -> list[tuple[int, list]]:
    """``[(frame, [candidate, ...])]`` by frame index: the candidates audited in one call each.
    A candidate is anything with ``frame`` and ``mask_path`` (a benchmark ``Candidate``)."""
    by_frame = defaultdict(list)
    for cand in candidates:
        by_frame[cand.frame].append(cand)
    return sorted(by_frame.items())


def load_group_masks(groups) -> list[list[np.ndarray]]:
    """The mask files of :func:`frame_groups`, read as the benchmark defines them (any nonzero pixel)."""
    return [[load_mask(c.mask_path) for c in cands] for _, cands in groups]


def audit_clip(auditor, expression: str, frames, audio, groups, masks) -> list:
    """``[(candidate, AuditResult)]``: one session over the clip, one call per frame group
    (:func:`frame_groups`, their ``masks`` from :func:`load_group_masks`)."""
    session = auditor.session(expression, frames, audio, allow_silent=True)
    out = []
    for (frame, cands), frame_masks in zip(groups, masks):
        try:
            results = session.audit(frame_masks, frame)
        except InputError as err:  # name the file, not the list position
            raise DataError(cands[err.mask_index].mask_path, str(err)) from None
        out.extend(zip(cands, results))
    return out


def audit_record(auditor, record, silence_audio: bool = False):
    """``[(candidate, AuditResult)]`` for every candidate of one benchmark record."""
    if not record.candidates:
        return []
    frames = load_frames(record.clip)
    audio = clip_audio(record, silence_audio)
    groups = frame_groups(record.candidates)
    return audit_clip(auditor, record.exp, frames, audio, groups, load_group_masks(groups))


def prediction(record, cand, result, method: str, mode: str, split: str) -> Prediction:
    return Prediction(uid=record.uid, frame=cand.frame, cand_id=cand.cand_id,
                      iou=min(1.0, max(0.0, result.iou)), mask_type=result.mask_type,
                      action=result.action, type_probs=result.type_probs,
                      action_probs=result.action_probs, iou_low=result.iou_low,
                      iou_high=result.iou_high, method=method, mode=mode, split=split)


def method_name(auditor, method: str | None = None, silence_audio: bool = False,
                shuffle_expressions: int | None = None) -> str:
    """The predictions' ``method``: ``--method`` or the model's name and precision, plus the ablations."""
    base = auditor.manifest.name       # manifest names already start with the tool's name
    base = base if base.startswith("auditor-lite") else f"auditor-lite-{base}"
    return (method or f"{base}-{auditor.precision}") + \
        (SILENT_SUFFIX if silence_audio else "") + \
        (f"-shuffled{shuffle_expressions}" if shuffle_expressions is not None else "")


def audited_records(benchmark: Benchmark, split: str, mode: str, shuffle_expressions: int | None = None) -> list:
    """The records of one (split, mode) in audit order; with ``shuffle_expressions`` (a seed) each takes
    the expression of another record (the ablation of :func:`audit_benchmark`)."""
    records = list(benchmark.records(split, mode))
    if shuffle_expressions is not None:
        # a random cycle: every expression moves to another clip (none stays where it was)
        perm = np.random.default_rng(shuffle_expressions).permutation(len(records))
        source = np.empty(len(records), int)
        source[perm] = np.roll(perm, -1)
        records = [dataclasses.replace(r, exp=records[j].exp) for r, j in zip(records, source)]
    return records


def audit_benchmark(auditor, bench, out_file, splits=None, modes=None, silence_audio: bool = False,
                    method: str | None = None, progress: bool = True,
                    shuffle_expressions: int | None = None, jobs: int = 1) -> dict:
    """Audit every candidate of the requested (split, mode) pairs; write the predictions JSONL.

    ``shuffle_expressions`` (a seed): the ablation where each expression is audited with the
    expression of another clip of the same split and mode (a fixed random permutation); a grounded
    auditor must then lose what the expression told it, down to chance. ``jobs``: records audited at
    once on that many threads (:mod:`auditor_lite.runtime.pipeline`; give the auditor
    ``pipeline.graph_threads`` ONNX Runtime threads). The predictions are the same, in the same order.

    Returns ``{"counts": {"split/mode": n}, "masks": n, "seconds": s, "masks_per_second": r}``.
    """
    benchmark = Benchmark(bench)
    name = method_name(auditor, method, silence_audio, shuffle_expressions)
    predictions, counts = [], Counter()
    started = time.perf_counter()
    for split, mode in benchmark_pairs(benchmark, splits, modes):
        records = audited_records(benchmark, split, mode, shuffle_expressions)
        audited = in_order(partial(audit_record, auditor, silence_audio=silence_audio), records, jobs)
        for record, pairs in tqdm(audited, total=len(records), desc=f"audit {split}/{mode}", unit="expr",
                                  file=sys.stderr, disable=not progress):
            for cand, result in pairs:
                predictions.append(prediction(record, cand, result, name, mode, split))
                counts[f"{split}/{mode}"] += 1
    seconds = time.perf_counter() - started
    write_predictions(out_file, predictions)
    total = sum(counts.values())
    return {"counts": dict(counts), "masks": total, "seconds": seconds,
            "masks_per_second": total / seconds if seconds > 0 else float("nan"), "method": name}


# ----------------------------------------------------------------------------- selection
@dataclass
class SelectionReport:
    groups: int            # (uid, frame) groups with at least two candidates
    picked_iou: float      # mean true IoU of the auditor's pick
    random_iou: float      # mean true IoU of a uniformly random pick (its exact expectation)
    oracle_iou: float      # mean true IoU of the best candidate
    hit_rate: float        # share of groups where the pick is a best candidate
    passed: int            # groups whose pick passed the action gate
    gate_precision: float | None   # share of passed picks whose true action is within the gate
    gate_recall: float | None      # share of groups with a truly good-enough pick that passed
    passed_iou: float | None       # mean true IoU of the passed picks

    def lines(self, gate: str) -> list[str]:
        def pct(x):
            return "-" if x is None else f"{100 * x:.1f}%"

        return [
            f"groups (uid, frame) with >= 2 candidates: {self.groups}",
            f"mean true IoU  auditor pick {self.picked_iou:.3f}   random pick {self.random_iou:.3f}   "
            f"oracle {self.oracle_iou:.3f}   (pick = oracle in {pct(self.hit_rate)})",
            f"gate (predicted action within {', '.join(GATES[gate])}): {self.passed}/{self.groups} passed, "
            f"precision {pct(self.gate_precision)}, recall {pct(self.gate_recall)}, mean true IoU of "
            f"passed {'-' if self.passed_iou is None else f'{self.passed_iou:.3f}'}",
        ]


def pick_best(predicted_iou) -> int:
    """Index of the highest predicted IoU (the first on ties)."""
    return int(np.argmax(np.asarray(predicted_iou, dtype=np.float64)))


def select_groups(groups, gate: str = "minor") -> SelectionReport:
    """``groups``: lists of ``(predicted_iou, predicted_action, true_iou, true_action)``, one list per
    (uid, frame). Groups with fewer than two candidates are left out (there is nothing to choose)."""
    allowed = set(GATES[gate])
    groups = [g for g in groups if len(g) >= 2]
    if not groups:
        raise ValueError("select: no (uid, frame) group has two or more candidates")
    picked, random_pick, oracle, passed_iou = [], [], [], []
    hits = passed = passed_good = good = 0
    for group in groups:
        true = np.array([g[2] for g in group])
        k = pick_best([g[0] for g in group])
        picked.append(true[k])
        random_pick.append(true.mean())
        oracle.append(true.max())
        hits += bool(true[k] >= true.max())
        ok_pred, ok_true = group[k][1] in allowed, group[k][3] in allowed
        good += ok_true
        if ok_pred:
            passed += 1
            passed_good += ok_true
            passed_iou.append(true[k])
    n = len(groups)
    return SelectionReport(
        groups=n, picked_iou=float(np.mean(picked)), random_iou=float(np.mean(random_pick)),
        oracle_iou=float(np.mean(oracle)), hit_rate=hits / n, passed=passed,
        gate_precision=passed_good / passed if passed else None,
        gate_recall=passed_good / good if good else None,
        passed_iou=float(np.mean(passed_iou)) if passed_iou else None)


def benchmark_groups(bench, predictions: dict, split: str, mode: str) -> list[list[tuple]]:
    """Selection groups of one (split, mode) from a predictions dict keyed (uid, frame, cand_id).

    A candidate without a prediction counts as predicted IoU 0 and no action (never passes)."""
    groups = defaultdict(list)
    for record in Benchmark(bench).records(split, mode):
        for cand in record.candidates:
            pred = predictions.get((record.uid, cand.frame, cand.cand_id))
            iou = pred.iou if pred is not None and pred.iou is not None else 0.0
            action = pred.action if pred is not None else None
            groups[(record.uid, cand.frame)].append((iou, action, cand.iou_to_gt, cand.action))
    return list(groups.values())
