"""Does a grounder's motion path know which of two same-category objects is the one sounding?

On the held-out training expressions that need the audio and whose target has a same-category twin
on the key frame, compares the target's and the twin's motion-sounding logit (the grounder's
``motion_sounding`` on the tracked cell vibration, pooled under each object's key-frame mask,
max and mean over the 10 s). Needs a grounder with ``cell_motion`` and its training benchmark's
cached arrays (built by ``train-grounding``).

    python bench/sounding_pairs.py --model runs/grounder --bench runs/bench18k
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from auditor_lite.training.grounding_data import grounding_set
from auditor_lite.training.grounding_batches import batch_tensors, model_inputs
from auditor_lite.training.grounding_train import load_grounder, object_fractions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--extra-per-clip", type=int, default=4, help="the cache the grounder trained on")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = grounding_set(args.bench, "train", "train", extra_per_clip=args.extra_per_clip)
    model = load_grounder(args.model).eval()
    if not model.config.cell_motion:
        raise SystemExit(f"{args.model}: this grounder does not read the cell motion")
    held = set(open(f"{args.model}/heldout_vids.txt").read().split())
    vids, extra, needs = data.meta["vids"], np.array(data.meta["extra"]), np.array(data.meta["needs_audio"])
    rows = [e for e in range(len(data)) if not extra[e] and needs[e] and data.target[e] >= 0
            and vids[int(data.clip[e])] in held]
    wins = {"max": [], "mean": []}
    target_sounds_twin_silent = []
    with torch.no_grad():
        for i in range(0, len(rows), 16):
            r = np.array(rows[i:i + 16])
            b = batch_tensors(data, r, None, augment=False)
            out = model(*model_inputs(b))
            frac = object_fractions(b["instance"], data.sounding.shape[1], 8)[:, 1:].flatten(2)
            weights = frac / frac.sum(-1, keepdim=True).clamp(min=1e-6)
            logits = model.motion_sounding(out["moved"], out["loudness"])
            pooled = {"max": torch.einsum("bkn,bn->bk", weights, logits.amax(-1)),
                      "mean": torch.einsum("bkn,bn->bk", weights, logits.mean(-1))}
            for j, e in enumerate(r):
                clip, target = int(data.clip[e]), int(data.target[e])
                for other in range(int(data.num_objects[clip])):
                    if other == target or data.category[clip, other] != data.category[clip, target]:
                        continue
                    if frac[j, other].sum() <= 0.5 or frac[j, target].sum() <= 0.5:
                        continue
                    for key in wins:
                        wins[key].append(bool(pooled[key][j, target] > pooled[key][j, other]))
                    target_sounds_twin_silent.append(bool(data.sounding[clip, target].sum() > 0)
                                                     and data.sounding[clip, other].sum() == 0)
    split = np.array(target_sounds_twin_silent)
    print(f"{len(split)} target/twin pairs on {len(rows)} held-out expressions that need the audio")
    for key, won in wins.items():
        won = np.array(won)
        print(f"  {key:4s} logit: target above its twin {won.mean():.1%}; where the target sounds and the twin "
              f"does not ({split.sum()}): {won[split].mean():.1%}; other pairs ({(~split).sum()}): "
              f"{won[~split].mean():.1%}")


if __name__ == "__main__":
    main()
