"""Count the once-per-clip cost of the grounding model (stage A) and the per-mask cost of the scorer
(stage B), against the issue's budgets.

Budget: everything done once per clip at most 0.5 GFLOP (numpy log-mel included; the expression's
MiniLM token states are cached per expression and not counted). 1 MAC = 2 FLOP.

    python bench/grounder_cost.py [--model DIR]

Graph FLOPs come from torch's FlopCounterMode (matmuls and convolutions; elementwise ops, softmax
and normalisation are not counted by it and are small here). FlopCounterMode does not see the
fused attention kernel on the CPU, so each attention's two products (Q K^T and A V) are added from
hooks: 4 x Lq x Lk x width. The block-matched cell motion (motion.py) is counted analytically by
``cell_track_flops`` (3 FLOP per window pixel per candidate per cell). The log-mel is counted analytically:
a real FFT of N = 512 points costs about 2.5 N log2 N FLOP, the mel projection 2 x 257 x 64 per frame.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from auditor_lite.model.grounder import Grounder, GrounderConfig, count_parameters
from auditor_lite.motion import CELL, NUM_MOTION_FEATURES, cell_track_flops
from auditor_lite.preprocess import HOP_LENGTH, N_FFT, N_MELS
from auditor_lite.data.schema import CLIP_SAMPLES

BUDGET_GFLOP = 0.5
MASK_BUDGET_GFLOP = 0.02
# Max-pool comparisons per pixel of stage B's boundary rings (scorer.mask_features): erode 3
# (7x7), dilate 2 (5x5), dilate 5 (11x11), dilate 1 and erode 1 (3x3 each).
RING_COMPARISONS = 49 + 25 + 121 + 9 + 9


def log_mel_flops(samples: int = CLIP_SAMPLES) -> float:
    frames = 1 + samples // HOP_LENGTH
    fft = 2.5 * N_FFT * math.log2(N_FFT)
    window_power = 3 * N_FFT
    mel = 2 * (N_FFT // 2 + 1) * N_MELS
    return frames * (fft + window_power + mel)


def mask_flops(key_size: int = 128, num_masks: int = 13) -> tuple[float, float]:
    """(per-mask FLOP, per-call FLOP) of the masks graph: the crop CNN and MLP counted by
    FlopCounterMode, the pooling and region sums of mask_features analytically."""
    from auditor_lite.model.scorer import MaskScorer

    scorer = MaskScorer().eval()
    masks = torch.zeros(num_masks, 1, key_size, key_size)
    masks[:, :, 40:80, 30:90] = 1
    with FlopCounterMode(display=False) as counter:
        scorer(torch.zeros(1, 1025), masks, torch.zeros(1, 3, key_size, key_size))
    pixels = key_size * key_size
    analytic = pixels * (RING_COMPARISONS + 4 * 7 * 2 + 2)        # rings, 4 regions x 7 channel sums
    per_call = pixels * 8                                          # the map's bilinear upsampling
    return counter.get_total_flops() / num_masks + analytic, per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a trained grounder directory (default: a fresh one)")
    args = parser.parse_args()
    if args.model:
        from auditor_lite.training.grounding_train import load_grounder
        model = load_grounder(args.model)
    else:
        model = Grounder(GrounderConfig()).eval()
    c = model.config
    inputs = (torch.zeros(1, 10, 3, c.key_size, c.key_size), torch.tensor([0]),
              torch.full((1, c.n_mels, 501), -60.0), torch.zeros(1, c.max_tokens, c.text_dim),
              torch.ones(1, c.max_tokens),
              torch.zeros(1, 10, (c.key_size // CELL) ** 2, NUM_MOTION_FEATURES) if c.cell_motion else None)
    attention = {}

    def hook(name):
        def count(module, args, _out):
            q, k = args[0], args[1]
            attention[name] = 4 * q.shape[0] * q.shape[1] * k.shape[1] * q.shape[2]
        return count
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, torch.nn.MultiheadAttention)]
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    for h in handles:
        h.remove()
    per_module = {}
    for name, counts in counter.get_flop_counts().items():
        if name.count(".") == 1:
            per_module[name.split(".", 1)[1]] = sum(counts.values())
    for name, flops in attention.items():
        per_module[f"{name} (QK, AV)"] = flops
    graph = counter.get_total_flops() + sum(attention.values())
    mel = log_mel_flops()
    motion = cell_track_flops(c.key_size) if c.cell_motion else 0.0
    total = graph + mel + motion
    print(f"grounder: {count_parameters(model):,} parameters (training-only heads excluded)")
    for name, flops in sorted(per_module.items(), key=lambda kv: -kv[1]):
        if flops:
            print(f"  {name:<16}{flops / 1e6:9.1f} MFLOP")
    per_mask, per_call = mask_flops(c.key_size)
    total += per_call
    print(f"graph {graph / 1e9:.3f} GFLOP + numpy log-mel {mel / 1e9:.3f} GFLOP + numpy cell motion "
          f"{motion / 1e9:.4f} GFLOP + masks-graph call overhead "
          f"{per_call / 1e9:.4f} GFLOP = {total / 1e9:.4f} GFLOP per clip (budget {BUDGET_GFLOP}): "
          f"{'within' if total <= BUDGET_GFLOP * 1e9 else 'OVER'}")
    print(f"stage B: {per_mask / 1e9:.4f} GFLOP per mask (budget {MASK_BUDGET_GFLOP}): "
          f"{'within' if per_mask <= MASK_BUDGET_GFLOP * 1e9 else 'OVER'}")


if __name__ == "__main__":
    main()
