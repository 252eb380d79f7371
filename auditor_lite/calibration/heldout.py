"""Which expressions the score calibration is fitted on: never ones the network trained on.

Preferred: the training run's ``heldout_uids.txt`` (train-split uids held out from training, in
the checkpoint directory; ``--heldout FILE`` points at it when the model directory lacks it).
Without it, ``--calib-split test_s`` fits on half of that split's uids (seeded) and the other half
stays for the test-coverage report: the coverage is then measured on uids the fit never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor_lite.data.reader import TEST_SPLITS, Benchmark
from auditor_lite.data.schema import DataError, ExpressionRecord

HELDOUT_FILE = "heldout_uids.txt"  # written by auditor_lite.training.train


@dataclass
class HeldOut:
    records: list[ExpressionRecord]
    description: str
    fit_uids: set[str] = field(default_factory=set)  # to leave out of the test-coverage report


def read_uid_file(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "held-out uid file not found")
    uids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not uids:
        raise DataError(path, "no uids in the held-out uid file")
    return uids


def half_of_split(benchmark: Benchmark, split: str, seed: int) -> HeldOut:
    """Image-mode records of a seeded half of ``split``'s uids."""
    if split not in TEST_SPLITS:
        raise ValueError(f"--calib-split {split!r}: choose one of {', '.join(TEST_SPLITS)}")
    records = list(benchmark.records(split, "image"))
    uids = sorted({r.uid for r in records})
    if len(uids) < 4:
        raise DataError(benchmark.json_path(split, "image"), f"only {len(uids)} expressions; the score "
                        "calibration needs at least 4 to fit on half of them")
    chosen = set(np.random.default_rng(seed).permutation(uids)[: len(uids) // 2].tolist())
    fit = [r for r in records if r.uid in chosen]
    return HeldOut(fit, f"half of {split}/image by uid ({len(chosen)} of {len(uids)} uids)", chosen)


def score_calibration_records(benchmark: Benchmark, model_dir, heldout=None, calib_split=None,
                              seed: int = 0) -> HeldOut:
    """The fitting records (see the module docstring); a clear error when there are none."""
    if calib_split is not None:
        return half_of_split(benchmark, calib_split, seed)
    path = Path(heldout) if heldout is not None else Path(model_dir) / HELDOUT_FILE
    if not path.is_file():
        raise DataError(path, f"no {HELDOUT_FILE}: pass --heldout FILE (the training run writes it next "
                        "to the checkpoint) or --calib-split test_s to fit on half of a test split")
    wanted = set(read_uid_file(path))
    records = [r for r in benchmark.records("train", "train") if r.uid in wanted]
    if not records:
        raise DataError(path, f"none of its {len(wanted)} uids is a train expression of {benchmark.root}")
    return HeldOut(records, f"held-out train uids ({path.name}, {len(records)} of {len(wanted)} found)")
