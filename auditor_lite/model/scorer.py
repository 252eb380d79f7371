"""Stage B: score each candidate mask against the clip's referent map (per mask, no clip work).

The grounding model (stage A, :mod:`auditor_lite.model.grounder`) has already said *where* the
expression's object is: a 32 x 32 referent map on the audited frame and a null logit. What is left
per mask is cheap geometry, all computed for one mask at a time (a mask's outputs never depend on
the other candidates of its clip):

- agreement with the map: the map's mass inside the mask, the mask's mean map value, soft IoU of
  the mask with the map cut at three levels, and the map's value in rings around the mask's
  boundary (a dilated mask has low map values on its inner ring, an eroded one high values on
  its outer ring);
- the key frame's colour in the same rings (an object's boundary is where the colour changes: a
  perfect mask changes colour between its inner and outer ring, an eroded one does not);
- shape: area, bounding-box fill, boundary length per sqrt(area);
- the clip's side: the null logit, the map's peak, spread and area.

A small MLP reads these 32 numbers and predicts IoU, the error type and the action. About
0.4 MFLOP per mask at 128 x 128 (``bench/grounder_cost.py``), far under the 0.02 GFLOP budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from auditor_lite.data.schema import ACTIONS, MASK_TYPES

MAP_SIZE = 32
THRESHOLDS = (0.25, 0.5, 0.75)     # where the referent map is cut for the soft IoUs
NUM_FEATURES = 32


@dataclass
class ScorerConfig:
    key_size: int = 128
    hidden: int = 96
    num_types: int = len(MASK_TYPES)
    num_actions: int = len(ACTIONS)

    def to_dict(self) -> dict:
        return asdict(self)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask, 2 * radius + 1, 1, radius)


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return 1.0 - F.max_pool2d(1.0 - mask, 2 * radius + 1, 1, radius)


def _mean_in(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(1 or N, C, S, S) values averaged over each (N, 1, S, S) region -> (N, C)."""
    return (values * region).sum((2, 3)) / region.sum((2, 3)).clamp(min=1.0)


def mask_features(context: torch.Tensor, masks: torch.Tensor, key_frame: torch.Tensor) -> torch.Tensor:
    """(1, 1025) context [map logits, null logit], (N, 1, S, S) masks, (1, 3, S, S) key frame in
    [0, 1] -> (N, NUM_FEATURES) features; each row depends on its own mask only."""
    n, size = masks.shape[0], masks.shape[-1]
    logits = context[:, :MAP_SIZE * MAP_SIZE].reshape(1, 1, MAP_SIZE, MAP_SIZE)
    null_logit = context[:, MAP_SIZE * MAP_SIZE:MAP_SIZE * MAP_SIZE + 1]           # (1, 1)
    prob = torch.sigmoid(logits)
    m = (masks > 0.5).float()
    m32 = F.avg_pool2d(m, size // MAP_SIZE)                                         # (N, 1, 32, 32)
    area = m.mean((1, 2, 3))
    cells = m32.sum((1, 2, 3))
    mass = prob.sum()
    inside = (prob * m32).sum((1, 2, 3))
    feats = [area.sqrt(), (area <= 0).float(), inside / (mass + 1e-3), inside / (cells + 1e-3)]
    for t in THRESHOLDS:
        q = torch.sigmoid((logits - torch.logit(torch.tensor(t))) * 4.0)
        inter = torch.minimum(q, m32).sum((1, 2, 3))
        union = torch.maximum(q, m32).sum((1, 2, 3))
        feats += [inter / (union + 1e-3), inter / (q.sum() + 1e-3)]
    # rings around the boundary at full resolution
    up = F.interpolate(prob, size=(size, size), mode="bilinear", align_corners=False)
    core = _erode(m, 3)
    inner = m - core
    outer = _dilate(m, 2) - m
    far = _dilate(m, 5) - _dilate(m, 2)
    regions = (core, inner, outer, far)
    feats += [_mean_in(up, r)[:, 0] for r in regions]
    colours = [_mean_in(key_frame, r) for r in regions]                            # (N, 3) each
    for a, b in ((0, 1), (1, 2), (2, 3), (0, 2), (1, 3)):
        feats.append((colours[a] - colours[b]).abs().sum(1))
    spread = [(_mean_in(key_frame ** 2, r) - c ** 2).clamp(min=0).sum(1).sqrt() for r, c in zip(regions, colours)]
    feats += spread
    # shape
    rows = m.amax(3)[:, 0]                                                        # (N, S)
    cols = m.amax(2)[:, 0]
    box = rows.sum(1) * cols.sum(1) / (size * size)
    boundary = (_dilate(m, 1) - _erode(m, 1)).mean((1, 2, 3))
    feats += [area / (box + 1e-4), boundary / (area.sqrt() + 1e-3), inner.mean((1, 2, 3)) / (area + 1e-4),
              cells.clamp(max=1.0)]
    # the clip's side, the same for every mask
    clip = torch.cat([null_logit / 4.0, prob.amax().reshape(1, 1), (mass / (MAP_SIZE * MAP_SIZE)).reshape(1, 1),
                      prob.flatten().topk(16).values.mean().reshape(1, 1),
                      (prob > 0.5).float().mean().reshape(1, 1)], 1)                 # (1, 5)
    per_mask = torch.stack(feats, 1)                                              # (N, 27)
    return torch.cat([per_mask, clip.expand(n, -1)], 1)


class MaskScorer(nn.Module):
    """features -> (iou, type_logits, action_logits); the features are standardised with
    statistics fitted on the training set and stored as buffers (so they travel with the graph)."""

    def __init__(self, config: ScorerConfig | None = None):
        super().__init__()
        self.config = c = config or ScorerConfig()
        self.register_buffer("feature_mean", torch.zeros(NUM_FEATURES))
        self.register_buffer("feature_std", torch.ones(NUM_FEATURES))
        self.mlp = nn.Sequential(nn.Linear(NUM_FEATURES, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden),
                                 nn.GELU())
        self.iou_head = nn.Linear(c.hidden, 1)
        self.type_head = nn.Linear(c.hidden, c.num_types)
        self.action_head = nn.Linear(c.hidden, c.num_actions)

    def heads(self, features: torch.Tensor):
        h = self.mlp((features - self.feature_mean) / self.feature_std)
        return torch.sigmoid(self.iou_head(h)[:, 0]), self.type_head(h), self.action_head(h)

    def forward(self, context: torch.Tensor, masks: torch.Tensor, key_frame: torch.Tensor):
        return self.heads(mask_features(context, masks, key_frame))
