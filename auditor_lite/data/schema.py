"""The MQ-RAVSBench vocabulary: mask types, actions, splits and the typed records readers yield.

Everything here follows ``docs/mq-ravsbench.md`` (a copy of the project's spec). This module is
pure Python so that the runtime, the evaluator and the data tools all share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Clip geometry fixed by the benchmark: 10 frames at 1 fps and 10 s of 16 kHz mono audio.
NUM_FRAMES = 10
SAMPLE_RATE = 16_000
CLIP_SECONDS = 10
CLIP_SAMPLES = SAMPLE_RATE * CLIP_SECONDS

# Class order is part of the model contract (head indices): never reorder, only append.
MASK_TYPES = ("perfect", "cutout", "erode", "dilate", "merge", "full_neg", "null")
ACTIONS = ("accept", "minor revision", "major revision", "reject")
SPLITS = ("train", "test_s", "test_u")
MODES = ("train", "image", "video")

# Types that carry a difficulty rank (1 = Hard, 2 = Medium); the others are evaluated over all
# ranks, written rank -1 by the protocol. A ranked type with any other rank belongs to no H/M
# setting: it is read, and scored only in the overall numbers.
RANKED_TYPES = ("cutout", "erode", "dilate")
PROTOCOL_RANKS = (1, 2)
ALL_RANKS = -1

# Upstream action thresholds for geometric types (spec section 2).
ACCEPT_ABOVE = 0.9
MINOR_ABOVE = 0.6

# Upstream file names (spec section 3).
META_DIR = "train_test_meta_files"
METADATA_CSV = "metadata.csv"
TRAIN_JSON = "train_audit_only_filtered.json"
IMAGE_JSON = "{split}_image_filtered.json"
VIDEO_JSON = "{split}_video_filtered.json"
IOU_PLACEHOLDER = "<iou_token>"
NULL_UID_PREFIX = "null_"


class DataError(ValueError):
    """Malformed benchmark input. The message always names the file and, where known, the field."""

    def __init__(self, path: str | Path, message: str, field_name: str | None = None):
        self.path = str(path)
        self.field_name = field_name
        where = f"{self.path}" + (f" [{field_name}]" if field_name else "")
        super().__init__(f"{where}: {message}")


class DataWarning(UserWarning):
    """Readable benchmark input that departs from the protocol (e.g. a cutout of rank 3)."""


def normalize_mask_type(name: str) -> str:
    """Map an upstream type name to one of MASK_TYPES by the spec's substring rules."""
    low = str(name).strip().lower()
    # Order matters: 'gt_mask_path' contains no other key, 'full_neg_masks' contains 'neg'.
    rules = (
        (("perfect", "gt"), "perfect"),
        (("cut",), "cutout"),
        (("erode",), "erode"),
        (("dilate",), "dilate"),
        (("merge",), "merge"),
        (("null", "empty"), "null"),
        (("full", "neg"), "full_neg"),
    )
    for keys, canonical in rules:
        if any(k in low for k in keys):
            return canonical
    raise ValueError(f"unknown mask type {name!r}; expected one of {', '.join(MASK_TYPES)}")


def normalize_action(text: str) -> str:
    """Map free text to one of ACTIONS by substring, as the upstream parser does."""
    low = str(text).strip().lower()
    for key, canonical in (("accept", "accept"), ("major", "major revision"),
                           ("minor", "minor revision"), ("reject", "reject")):
        if key in low:
            return canonical
    raise ValueError(f"unknown action {text!r}; expected one of {', '.join(ACTIONS)}")


def action_from_iou(iou: float, mask_type: str = "cutout") -> str:
    """Upstream labelling rule: the type fixes perfect/full_neg/null, IoU decides the rest.

    ``merge`` follows the geometric rule, so a merge whose IoU is 0 is a reject (the spec leaves
    merge rejects undefined; this is our documented choice).
    """
    if mask_type == "perfect":
        return "accept"
    if mask_type in ("full_neg", "null"):
        return "reject"
    if iou <= 0.0:
        return "reject"
    if iou <= MINOR_ABOVE:
        return "major revision"
    if iou <= ACCEPT_ABOVE:
        return "minor revision"
    return "accept"


def vid_from_uid(uid: str) -> str:
    """Upstream derives the clip id as ``uid.rsplit('_', 2)[0]`` (uid = <vid>_<category>_<k>)."""
    base = uid[len(NULL_UID_PREFIX):] if uid.startswith(NULL_UID_PREFIX) else uid
    return base.rsplit("_", 2)[0]


@dataclass(frozen=True)
class Clip:
    """One 10-second clip on disk: frames ``0.jpg .. 9.jpg`` and a 16 kHz mono ``audio.wav``."""

    vid: str
    frames_dir: Path
    audio_path: Path

    def frame_path(self, index: int) -> Path:
        return self.frames_dir / f"{index}.jpg"


@dataclass(frozen=True)
class Candidate:
    """One candidate mask: a test sample. ``(uid, frame, cand_id)`` is its key everywhere."""

    cand_id: str
    frame: int
    mask_path: Path
    mask_type: str
    rank: int
    iou_to_gt: float
    action: str
    response: str | None = None

    @property
    def setting(self) -> str:
        """The protocol setting this sample falls in, e.g. ``cutout_r1`` or ``merge``.

        A ranked type with a rank other than 1/2 gets its bare type name, which is none of the
        nine settings: such a sample counts only in the overall numbers.
        """
        if self.mask_type in RANKED_TYPES and self.rank in PROTOCOL_RANKS:
            return f"{self.mask_type}_r{self.rank}"
        return self.mask_type


@dataclass(frozen=True)
class ExpressionRecord:
    """One referring expression with its clip, ground truth and candidate masks.

    ``mode`` is ``train`` (train JSON), ``image`` (key frame only) or ``video`` (every frame).
    ``gt_masks`` maps frame index to the ground-truth mask path (empty for null expressions).
    """

    uid: str
    vid: str
    split: str
    mode: str
    exp: str
    kfid: int
    fid: int
    clip: Clip
    gt_masks: dict[int, Path] = field(default_factory=dict)
    candidates: tuple[Candidate, ...] = ()

    @property
    def is_null(self) -> bool:
        return self.uid.startswith(NULL_UID_PREFIX)
