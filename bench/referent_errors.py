"""What kind of wrong object stage A picks: an error taxonomy on held-out training clips.

    python bench/referent_errors.py --bench runs/bench18k [--model auditor_lite/assets/grounded_checkpoint]

For every held-out expression (the clips in the model's ``heldout_vids.txt``, the benchmark's own
expressions) the grounder's referent pick (the object with the largest share of the key-frame map,
as ``diagnose grounding`` scores it) is compared with the scene sidecar. A wrong pick of a
referring expression is one of:

* ``twin``: an object of the target's category (a same-category twin);
  ``twin, target sounds``: ... and the target is the one sounding (the audio should have decided);
* ``anchor``: the relational expression's anchor instead of its target;
* ``other category``: an object of another category (recognition or position);

and a null expression is wrong when its null logit is <= 0. Per cue bucket (an expression counts
in each bucket of its label), with counts; a pointer for the next stage-A design, not a score.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from auditor_lite.model.checkpoint import default_checkpoint_dir
from auditor_lite.training.grounding_data import grounding_set
from auditor_lite.training.grounding_train import CUE_BUCKETS, load_grounder, referent_predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", required=True, type=Path)
    parser.add_argument("--model", type=Path, default=default_checkpoint_dir())
    parser.add_argument("--extra-per-clip", type=int, default=4, help="selects the cached set, as in training")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    held = set((args.model / "heldout_vids.txt").read_text().split())
    data = grounding_set(args.bench, "train", "train", extra_per_clip=args.extra_per_clip)
    in_held = np.array([v in held for v in data.meta["vids"]])
    extra = np.array(data.meta.get("extra", [False] * len(data)), bool)
    rows = np.nonzero(in_held[data.clip[:]] & ~extra)[0]
    pred = referent_predictions(load_grounder(args.model), data, rows)
    kinds: dict[str, Counter] = defaultdict(Counter)
    for j, e in enumerate(rows):
        clip, target, cue = int(data.clip[e]), int(data.target[e]), data.meta["cues"][e]
        buckets = ["overall"] + [c for c in CUE_BUCKETS if c in cue.split("+")]
        if data.anchor[e] >= 0:
            buckets.append("relational")
        if data.meta["needs_audio"][e] and cue != "null":
            buckets.append("needs_audio")
        if target < 0:
            kind = "right" if pred["correct"][j] else "null missed"
            buckets.append("null")
        else:
            pick = int(pred["pick"][j])
            category = data.category[clip]
            if pick == target:
                kind = "right" if pred["null_logit"][j] <= 0 else "right, but null logit > 0"
            elif pick == int(data.anchor[e]):
                kind = "anchor"
            elif category[pick] == category[target]:
                sounds = np.asarray(data.sounding[clip][target]).clip(min=0).mean() > \
                    np.asarray(data.sounding[clip][pick]).clip(min=0).mean()
                kind = "twin, target sounds" if sounds else "twin"
            else:
                kind = "other category"
        for b in buckets:
            kinds[b][kind] += 1
    order = ["right", "right, but null logit > 0", "twin, target sounds", "twin", "anchor", "other category",
             "null missed"]
    print(f"{len(rows)} held-out expressions of {len(held)} clips ({args.model})")
    print(f"{'bucket':<12} {'n':>5}  " + "  ".join(f"{k:>10.10}" for k in order))
    for bucket, counts in sorted(kinds.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(counts.values())
        print(f"{bucket:<12} {n:>5}  " + "  ".join(f"{100 * counts[k] / n:9.1f}%" for k in order))


if __name__ == "__main__":
    main()
