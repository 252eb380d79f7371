"""Compare grounding models (stage A) on the training clips that every one of them held out.

    python bench/compare_grounders.py --bench runs/bench18k runs/grounder runs/grounder-v3

Each ``train-grounding`` run lists the clips it held out in ``heldout_vids.txt`` (those whose stable
hash is below its ``--val-fraction``, so the sets are nested); the expressions of the clips in every
list are scored. Referent accuracy per cue bucket on them is how a stage A is chosen (never on an
evaluation benchmark).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from auditor_lite.training.grounding_data import grounding_set
from auditor_lite.training.grounding_train import load_grounder, referent_predictions, referent_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="train-grounding output directories")
    parser.add_argument("--bench", required=True, type=Path, help="the benchmark they were trained on")
    parser.add_argument("--extra-per-clip", type=int, default=4, help="selects the cached set, as in training")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    held = set.intersection(*[set((m / "heldout_vids.txt").read_text().split()) for m in args.models])
    data = grounding_set(args.bench, "train", "train", extra_per_clip=args.extra_per_clip)
    in_held = np.array([v in held for v in data.meta["vids"]])
    extra = np.array(data.meta.get("extra", [False] * len(data)), bool)
    rows = np.nonzero(in_held[data.clip[:]] & ~extra)[0]
    print(f"{len(rows)} expressions of the {len(held)} clips every run held out")
    for model_dir in args.models:
        report = referent_report(data, rows, referent_predictions(load_grounder(model_dir), data, rows))
        print(f"{model_dir}: " + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in report.items()))


if __name__ == "__main__":
    main()
