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
    crop_dim: int = 32           # 0: no crop CNN (hand features only)

    def to_dict(self) -> dict:
        return asdict(self)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    # a square window's max is its rows' max of its columns' max: two 1-D pools, the same numbers
    # at 2k instead of k^2 comparisons a pixel (ONNX Runtime's MaxPool does not separate them)
    k = 2 * radius + 1
    return F.max_pool2d(F.max_pool2d(mask, (k, 1), 1, (radius, 0)), (1, k), 1, (0, radius))


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return 1.0 - _dilate(1.0 - mask, radius)


def _means_in(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(1, C, S, S) values averaged over each (N, 1, S, S) region -> (N, C): one matrix product
    (N x S^2 by S^2 x C) instead of C masked sums over N x S x S."""
    flat = region.flatten(1)                                                      # (N, S^2)
    sums = flat @ values.reshape(values.shape[1], -1).transpose(0, 1)              # (N, C)
    return sums / flat.sum(1, keepdim=True).clamp(min=1.0)


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
    # radii 1 -> 2 -> 5 and 1 -> 3 by growing the smaller ones: the same windows, smaller pools
    dilated1, eroded1 = _dilate(m, 1), _erode(m, 1)
    core = _erode(eroded1, 2)                                                      # = _erode(m, 3)
    near = _dilate(dilated1, 1)                                                    # = _dilate(m, 2)
    inner = m - core
    outer = near - m
    far = _dilate(near, 3) - near                                                  # _dilate(m, 5) - near
    values = torch.cat([up, key_frame, key_frame ** 2], 1)                          # (1, 7, S, S)
    means = [_means_in(values, r) for r in (core, inner, outer, far)]             # (N, 7) each
    feats += [mean[:, 0] for mean in means]
    colours = [mean[:, 1:4] for mean in means]                                     # (N, 3) each
    for a, b in ((0, 1), (1, 2), (2, 3), (0, 2), (1, 3)):
        feats.append((colours[a] - colours[b]).abs().sum(1))
    feats += [(mean[:, 4:7] - c ** 2).clamp(min=0).sum(1).sqrt() for mean, c in zip(means, colours)]
    # shape
    rows = m.amax(3)[:, 0]                                                        # (N, S)
    cols = m.amax(2)[:, 0]
    box = rows.sum(1) * cols.sum(1) / (size * size)
    boundary = (dilated1 - eroded1).mean((1, 2, 3))
    feats += [area / (box + 1e-4), boundary / (area.sqrt() + 1e-3), inner.mean((1, 2, 3)) / (area + 1e-4),
              cells.clamp(max=1.0)]
    # the clip's side, the same for every mask
    clip = torch.cat([null_logit / 4.0, prob.amax().reshape(1, 1), (mass / (MAP_SIZE * MAP_SIZE)).reshape(1, 1),
                      prob.flatten().topk(16).values.mean().reshape(1, 1),
                      (prob > 0.5).float().mean().reshape(1, 1)], 1)                 # (1, 5)
    per_mask = torch.stack(feats, 1)                                              # (N, 27)
    return torch.cat([per_mask, clip.expand(n, -1)], 1)


CROP = 32                 # side of the per-mask crop the CNN reads
CROP_MARGIN = 1.3         # crop = the mask's box, 30 % larger (and 3 px), so both sides of its boundary show
SHAPE_CLASSES = ("clean", "cutout", "erode", "dilate", "merge", "empty")   # what a crop alone can tell


def mask_crops(masks: torch.Tensor, key_frame: torch.Tensor, crop: int = CROP) -> torch.Tensor:
    """(N, 1, S, S) masks, (1, 3, S, S) frame -> (N, 4, crop, crop): each mask and the frame under it,
    resampled from a square around the mask's box (the whole frame for an empty mask), so that a
    20-pixel object is seen at the same scale as a 100-pixel one."""
    n, size = masks.shape[0], masks.shape[-1]
    m = (masks > 0.5).float()
    idx = torch.arange(size, dtype=m.dtype)
    rows, cols = m.amax(3)[:, 0], m.amax(2)[:, 0]                              # (N, S)
    empty = (rows.sum(1) <= 0)
    y0 = (idx + (1 - rows) * size).amin(1)
    y1 = (idx - (1 - rows) * size).amax(1)
    x0 = (idx + (1 - cols) * size).amin(1)
    x1 = (idx - (1 - cols) * size).amax(1)
    half = torch.maximum(y1 - y0, x1 - x0) * (CROP_MARGIN / 2) + 3.0
    cy = torch.where(empty, torch.full_like(y0, (size - 1) / 2), (y0 + y1) / 2)
    cx = torch.where(empty, torch.full_like(x0, (size - 1) / 2), (x0 + x1) / 2)
    half = torch.where(empty, torch.full_like(half, size / 2), half)
    lin = torch.linspace(-1.0, 1.0, crop, dtype=m.dtype)
    py = cy[:, None] + lin[None] * half[:, None]                               # (N, crop) pixel rows
    px = cx[:, None] + lin[None] * half[:, None]
    gy = ((2 * py + 1) / size - 1)[:, :, None].expand(-1, -1, crop)
    gx = ((2 * px + 1) / size - 1)[:, None, :].expand(-1, crop, -1)
    grid = torch.stack([gx, gy], -1)                                          # (N, crop, crop, 2)
    sample = dict(mode="bilinear", padding_mode="zeros", align_corners=False)
    mask_crop = F.grid_sample(m, grid, **sample)                                  # (N, 1, crop, crop)
    # the frame once, all masks' grids stacked as one tall grid: no N copies of the frame
    frame_crop = F.grid_sample(key_frame - 0.5, grid.reshape(1, n * crop, crop, 2), **sample)
    frame_crop = frame_crop.reshape(3, n, crop, crop).transpose(0, 1)              # (N, 3, crop, crop)
    return torch.cat([mask_crop, frame_crop], 1)


class CropCNN(nn.Module):
    """A crop -> an embedding of how the mask sits on the picture (does its boundary follow the
    object's edge, is a bite missing, is a second object attached). It never sees the referent
    map, so it is trained on every training mask (``shape_logits`` over SHAPE_CLASSES and the
    mask's IoU with its own object), before stage B reads its embedding. ~3 M MACs per mask."""

    def __init__(self, dim: int = 32):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GELU())

        self.body = nn.Sequential(block(4, 16, 1), block(16, 32, 2), block(32, 48, 2), block(48, 64, 2))
        self.embed = nn.Linear(64 * 2, dim)
        self.shape_head = nn.Linear(dim, len(SHAPE_CLASSES))
        self.iou_head = nn.Linear(dim, 1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        h = self.body(crops)
        return F.gelu(self.embed(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)))


class MaskScorer(nn.Module):
    """features -> (iou, type_logits, action_logits); the features are standardised with
    statistics fitted on the training set and stored as buffers (so they travel with the graph)."""

    def __init__(self, config: ScorerConfig | None = None):
        super().__init__()
        self.config = c = config or ScorerConfig()
        width = NUM_FEATURES + (c.crop_dim if c.crop_dim else 0)
        self.crop_cnn = CropCNN(c.crop_dim) if c.crop_dim else None
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        self.mlp = nn.Sequential(nn.Linear(width, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden),
                                 nn.GELU())
        self.iou_head = nn.Linear(c.hidden, 1)
        self.type_head = nn.Linear(c.hidden, c.num_types)
        self.action_head = nn.Linear(c.hidden, c.num_actions)

    def heads(self, features: torch.Tensor):
        h = self.mlp((features - self.feature_mean) / self.feature_std)
        return torch.sigmoid(self.iou_head(h)[:, 0]), self.type_head(h), self.action_head(h)

    def features(self, context: torch.Tensor, masks: torch.Tensor, key_frame: torch.Tensor) -> torch.Tensor:
        feats = mask_features(context, masks, key_frame)
        if self.crop_cnn is not None:
            feats = torch.cat([feats, self.crop_cnn(mask_crops(masks, key_frame))], 1)
        return feats

    def forward(self, context: torch.Tensor, masks: torch.Tensor, key_frame: torch.Tensor):
        return self.heads(self.features(context, masks, key_frame))
