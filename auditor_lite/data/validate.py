"""``auditor-lite data validate``: check a benchmark directory and summarise what it holds.

Every (split, mode) present is read with :class:`reader.Benchmark` (in lenient mode, so that one
pass reports every bad item rather than the first). What counts as what:

- errors (exit 1): a missing metadata.csv or JSON that does not parse; with ``lenient=False`` also
  every item the reader had to skip (bad field, unknown type, missing frame/audio/mask file), each
  message naming the file and field; with ``check_media`` also an audio file that does not decode
  or is not 16 kHz, frames of one clip that differ in size or do not decode, a mask that does not
  open or whose size differs from its clip's frames.
- warnings (printed, exit 0): with ``lenient=True`` the skipped items; audio that is not mono or
  whose duration is more than 0.5 s away from 10 s (tiny test fixtures use 0.1-s audio); labels that
  contradict the spec's table (an action a type cannot have, a geometric action that disagrees with
  the IoU rule, a ``response`` whose tags disagree); repeated uids in metadata.csv; per (split,
  mode), the counts of cutout/erode/dilate candidates whose rank is not 1/2 (0, 3, -1, missing),
  which the reader reads and the evaluation scores only in Overall.
- info: items whose uid is not in metadata.csv under their split are skipped, as upstream does.

Mask checks open the PNG header only (PIL is lazy), about 30k files in seconds.
"""

from __future__ import annotations

import collections
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from warnings import catch_warnings, simplefilter

from tqdm import tqdm

from auditor_lite import media
from auditor_lite.data.reader import Benchmark, format_unusual_ranks
from auditor_lite.data.schema import (
    ACTIONS, CLIP_SECONDS, MASK_TYPES, NUM_FRAMES, RANKED_TYPES, SAMPLE_RATE, SPLITS, DataError,
    DataWarning, ExpressionRecord, action_from_iou,
)

MAX_LISTED = 50  # messages listed per kind; the rest are counted
DURATION_TOLERANCE_S = 0.5
HIST_BINS = 10
HIST_LEVELS = " .:-=+*#%@"  # ASCII bar heights: any console prints them

# Spec section 2: the actions each type may carry.
LEGAL_ACTIONS = {
    "perfect": {"accept"}, "cutout": {"minor revision", "major revision"},
    "erode": {"minor revision", "major revision"}, "dilate": {"minor revision", "major revision"},
    "merge": {"minor revision", "major revision", "reject"}, "full_neg": {"reject"}, "null": {"reject"},
}
_TAG = {name: re.compile(rf"<{name}>\s*(.*?)\s*</{name}>") for name in ("mask_type", "action")}


class _Messages:
    """A capped list of messages with the total count, so a deleted folder is not 26k lines."""

    def __init__(self, cap: int = MAX_LISTED):
        self.cap = cap
        self.shown: list[str] = []
        self.total = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.shown) < self.cap:
            self.shown.append(message)

    def as_list(self) -> list[str]:
        hidden = self.total - len(self.shown)
        return self.shown + ([f"... and {hidden} more"] if hidden else [])


@dataclass
class SectionSummary:
    """What one (split, mode) holds."""

    split: str
    mode: str
    expressions: int = 0
    null_expressions: int = 0
    clips: set = field(default_factory=set)
    ious: dict = field(default_factory=lambda: collections.defaultdict(list))  # setting -> IoUs
    actions: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    skipped: collections.Counter = field(default_factory=collections.Counter)
    # (mask_type, rank or "missing") -> ranked candidates outside 1/2, see Benchmark.unusual_ranks
    unusual_ranks: collections.Counter = field(default_factory=collections.Counter)

    @property
    def candidates(self) -> int:
        return sum(len(v) for k, v in self.ious.items() if k in MASK_TYPES)


@dataclass
class ValidationReport:
    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sections: list[SectionSummary] = field(default_factory=list)
    metadata_counts: dict = field(default_factory=dict)  # split -> (expressions, null)
    media_counts: collections.Counter = field(default_factory=collections.Counter)

    def format(self) -> str:
        lines = [f"MQ-RAVSBench at {self.root}"]
        if self.metadata_counts:
            lines.append("metadata.csv: " + ", ".join(
                f"{split} {n} expressions ({nulls} null)" for split, (n, nulls) in self.metadata_counts.items()))
        if self.media_counts:
            lines.append("media checked: " + ", ".join(f"{v} {k}" for k, v in self.media_counts.items()))
        for section in self.sections:
            lines.extend(_format_section(section))
        for title, messages in (("warnings", self.warnings), ("errors", self.errors)):
            if messages:
                lines.append(f"{title}:")
                lines.extend(f"  - {m}" for m in messages)
        lines.append(f"result: {len(self.errors)} error(s)" if self.errors else "result: OK")
        return "\n".join(lines)


def validate_benchmark(root, lenient: bool = False, check_media: bool = True) -> ValidationReport:
    """Read every (split, mode) of ``root``; see the module docstring for what is checked."""
    root = Path(root)
    report = ValidationReport(root=root)
    # Label warnings get their own, smaller cap so they cannot hide the media warnings.
    errors, warnings, label_warnings = _Messages(), _Messages(), _Messages(cap=20)
    try:
        bench = Benchmark(root, lenient=True, check_media=check_media)
    except DataError as err:
        report.errors = [str(err)]
        return report
    for split in SPLITS:
        rows = bench.split_metadata(split)
        if rows:
            nulls = sum(uid.startswith("null_") for uid in rows)
            report.metadata_counts[split] = (len(rows), nulls)
    for split, repeats in bench.duplicates.items():
        warnings.add(f"metadata.csv: {repeats} {split} uid(s) listed more than once (the last row is used)")
    if not bench.available():
        errors.add(f"{bench.meta_dir}: no benchmark JSON file found")

    media_check = _MediaCheck(errors, warnings, report.media_counts) if check_media else None
    for split, mode in bench.available():
        section = SectionSummary(split, mode)
        before = collections.Counter(bench.skipped)
        try:
            with catch_warnings():  # the reader's rank warning: reported below, as counts
                simplefilter("ignore", DataWarning)
                records = bench.records(split, mode)
                for record in tqdm(records, desc=f"{split}/{mode}", unit=" expr", disable=None,
                                   file=sys.stderr, leave=False):
                    _add_record(section, record, label_warnings)
                    if media_check:
                        media_check.record(record)
        except DataError as err:  # the whole file is unreadable
            errors.add(str(err))
        section.skipped = bench.skipped - before
        section.unusual_ranks = bench.unusual_ranks.get((split, mode), collections.Counter())
        if section.unusual_ranks:
            warnings.add(f"{split}/{mode}: {format_unusual_ranks(section.unusual_ranks)}")
        report.sections.append(section)

    # The reader (lenient) kept the messages of what it skipped: errors unless asked to be lenient.
    malformed = sum(n for reason, n in bench.skipped.items() if reason != "not_in_metadata")
    sink = warnings if lenient else errors
    for message in bench.messages:
        sink.add(message)
    if malformed > len(bench.messages):
        sink.add(f"... {malformed - len(bench.messages)} more malformed item(s) not listed")
    if media_check:
        media_check.finish()
    report.errors = errors.as_list()
    report.warnings = warnings.as_list() + label_warnings.as_list()
    return report


def _add_record(section: SectionSummary, record: ExpressionRecord, warnings: _Messages) -> None:
    section.expressions += 1
    section.null_expressions += record.is_null
    section.clips.add(record.vid)
    for cand in record.candidates:
        section.ious[cand.mask_type].append(cand.iou_to_gt)
        if cand.mask_type in RANKED_TYPES:
            section.ious[f"{cand.mask_type} r{cand.rank}"].append(cand.iou_to_gt)
        section.actions[cand.mask_type][cand.action] += 1
        where = f"{record.split}/{record.mode} uid={record.uid} {cand.cand_id}@frame {cand.frame}"
        if cand.action not in LEGAL_ACTIONS[cand.mask_type]:
            warnings.add(f"{where}: action {cand.action!r} is not legal for {cand.mask_type}")
        elif cand.mask_type in RANKED_TYPES + ("merge",) and \
                cand.action != action_from_iou(cand.iou_to_gt, cand.mask_type):
            warnings.add(f"{where}: action {cand.action!r} disagrees with IoU {cand.iou_to_gt:.4f}")
        if cand.response:
            for tag, expected in (("mask_type", cand.mask_type), ("action", cand.action)):
                found = _TAG[tag].search(cand.response)
                if found and found.group(1).strip().lower() != expected:
                    warnings.add(f"{where}: response says <{tag}> {found.group(1)!r}, label is {expected!r}")


class _MediaCheck:
    """Decode headers of frames, audio and masks, each file once."""

    def __init__(self, errors: _Messages, warnings: _Messages, counts: collections.Counter):
        self.errors, self.warnings, self.counts = errors, warnings, counts
        self.frame_size: dict[str, tuple[int, int] | None] = {}  # vid -> (W, H), None if broken
        self.audio_seen: set[Path] = set()
        self.masks: dict[Path, str] = {}  # mask path -> vid, checked in finish()
        self.off_duration: list[str] = []

    def record(self, record: ExpressionRecord) -> None:
        if record.vid not in self.frame_size:
            self.frame_size[record.vid] = self._frames(record)
        if record.clip.audio_path not in self.audio_seen:
            self.audio_seen.add(record.clip.audio_path)
            self._audio(record.clip.audio_path)
        for cand in record.candidates:
            self.masks.setdefault(cand.mask_path, record.vid)

    def _frames(self, record: ExpressionRecord) -> tuple[int, int] | None:
        sizes = []
        for index in range(NUM_FRAMES):
            try:
                sizes.append(media.image_size(record.clip.frame_path(index)))
            except DataError as err:
                self.errors.add(str(err))
                return None
        self.counts["clips"] += 1
        self.counts["frames"] += NUM_FRAMES
        if len(set(sizes)) > 1:
            self.errors.add(f"{record.clip.frames_dir}: frames differ in size {sorted(set(sizes))}")
            return None
        return sizes[0]

    def _audio(self, path: Path) -> None:
        try:
            rate, channels, duration = media.audio_info(path)
        except DataError as err:
            self.errors.add(str(err))
            return
        self.counts["audio files"] += 1
        if rate != SAMPLE_RATE:
            self.errors.add(f"{path}: sample rate {rate} Hz, the benchmark needs {SAMPLE_RATE} Hz")
        if channels != 1:
            self.warnings.add(f"{path}: {channels} channels (read as their mean; the benchmark is mono)")
        if abs(duration - CLIP_SECONDS) > DURATION_TOLERANCE_S:
            self.off_duration.append(f"{path} ({duration:.2f} s)")

    def finish(self) -> None:
        for path, vid in tqdm(self.masks.items(), desc="masks", unit=" png", disable=None,
                              file=sys.stderr, leave=False):
            try:
                size = media.image_size(path)
            except DataError as err:
                self.errors.add(str(err))
                continue
            self.counts["masks"] += 1
            expected = self.frame_size.get(vid)
            if expected and size != expected:
                self.errors.add(f"{path}: mask is {size[0]}x{size[1]}, the frames of {vid} are "
                                f"{expected[0]}x{expected[1]}")
        if self.off_duration:
            self.warnings.add(f"{len(self.off_duration)} audio file(s) are not ~{CLIP_SECONDS} s, "
                              f"e.g. {self.off_duration[0]}")


# --------------------------------------------------------------------------- formatting
def _histogram(values: list[float]) -> list[int]:
    counts = [0] * HIST_BINS
    for value in values:  # IoU 1.0 falls in the last bin
        counts[min(int(value * HIST_BINS), HIST_BINS - 1)] += 1
    return counts


def _bar(counts: list[int]) -> str:
    top = max(counts) or 1
    return "".join(HIST_LEVELS[0 if c == 0 else max(1, round(c / top * (len(HIST_LEVELS) - 1)))]
                   for c in counts)


def _setting_order(key: str) -> tuple:
    mask_type, _, rank = key.partition(" r")
    return MASK_TYPES.index(mask_type), int(rank) if rank else -99


def _format_section(section: SectionSummary) -> list[str]:
    lines = [f"== {section.split} / {section.mode}: {section.expressions} expressions "
             f"({section.null_expressions} null), {len(section.clips)} clips, "
             f"{section.candidates} candidate masks"]
    if section.ious:
        lines.append(f"  {'setting':<12}{'n':>7}  {'min':>6} {'mean':>6} {'max':>6}  "
                     f"IoU histogram, {HIST_BINS} bins over [0, 1]")
    for key in sorted(section.ious, key=_setting_order):
        values = section.ious[key]
        counts = _histogram(values)
        label = key if " r" not in key else "  rank " + key.partition(" r")[2]
        lines.append(f"  {label:<12}{len(values):>7}  {min(values):6.3f} {sum(values) / len(values):6.3f} "
                     f"{max(values):6.3f}  |{_bar(counts)}| {' '.join(map(str, counts))}")
    for mask_type in sorted(section.actions, key=MASK_TYPES.index):
        tally = section.actions[mask_type]
        lines.append(f"  actions {mask_type:<9}" + ", ".join(
            f"{action} {tally[action]}" for action in ACTIONS if tally[action]))
    if section.skipped:
        lines.append("  skipped: " + ", ".join(f"{reason} {n}" for reason, n in sorted(section.skipped.items())))
    return lines
