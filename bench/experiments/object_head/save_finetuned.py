"""Write train_fusion.py's fine-tuned weights as a grounding model directory (the base grounder's
config and held-out clips), so that bench/compare_grounders.py and the rest of the pipeline read it:

    python bench/experiments/object_head/save_finetuned.py runs/objproto/fusion1/grounder_finetuned.pt \
        --base runs/grounder-cm2 --out runs/grounder-fusion1
"""
import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[3])]
from auditor_lite.training.grounding_train import load_grounder, save_grounder  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("weights", type=Path)
ap.add_argument("--base", type=Path, default=Path("runs/grounder-cm2"))
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()
model = load_grounder(args.base)
model.load_state_dict(torch.load(args.weights))
args.out.mkdir(parents=True, exist_ok=True)
save_grounder(model, args.out)
shutil.copy(args.base / "heldout_vids.txt", args.out / "heldout_vids.txt")
print(f"wrote {args.out}")
