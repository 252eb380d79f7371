"""Object-centric grounding head: find the scene's objects first, then choose among them.

The first stage A (:class:`auditor_lite.model.grounder.Grounder`) reads the expression into 256
pixel tokens and must learn "the one on the left" or "left of the dog" as a pattern over a 16 x 16
grid. It recognises categories (97% of the expressions that name one) but picks an object of
another category for a fifth of the position and relational expressions, and the silent twin for a
fifth of those that need the audio. This head reasons over objects instead:

1. **Objects** (no expression): K learned object queries attend to the clip's visual tokens (a small
   DETR/MaskFormer decoder) and each returns a mask over the tokens and an objectness logit. Trained
   against the generator's instance maps by Hungarian matching.
2. **Object descriptors**: each query's state plus what its mask pools: the tokens' features, the
   per-second sounding logits of the block-matched motion, its centroid, spread and area. Position
   and sounding become explicit numbers per object, not patterns to learn over pixels.
3. **Choice** (reads the expression): the K object tokens and a null token attend to each other with
   a learned bias from their relative positions (left of, above, next to) and to the words; a
   softmax over them picks the referent (or null), another the anchor.

The referent map is the chosen objects' masks weighted by their probabilities; its null logit is
that of the null token. Everything before the choice is per clip, so many expressions of one clip
reuse it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

NUM_SECONDS = 10


@dataclass
class ObjectHeadConfig:
    token_dim: int = 96          # the clip encoder's visual tokens
    text_dim: int = 384
    width: int = 96
    heads: int = 4
    queries: int = 8             # at most six objects per generated scene
    decoder_layers: int = 2
    choice_layers: int = 2
    grid: int = 16
    category_dim: int = 384
    # > 0: the choice also reads the clip encoder's own grounder as a prior: its fused token states
    # (this many features) pooled under each object, and the log of its coarse map's mass on it
    prior_dim: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class PairBiasAttention(nn.Module):
    """Multi-head attention among objects whose logits get a learned bias per head from the pair's
    relative position (dx, dy, distance): "left of", "above", "next to" are then one lookup."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.bias = nn.Sequential(nn.Linear(3, 32), nn.GELU(), nn.Linear(32, heads))

    def forward(self, x: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(w // self.heads)
        logits = logits + self.bias(rel).permute(0, 3, 1, 2)
        return self.out((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w))


class DecoderLayer(nn.Module):
    """Queries: self-attention, cross-attention to a memory, MLP (pre-norm)."""

    def __init__(self, width: int, heads: int, pair_bias: bool = False):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = PairBiasAttention(width, heads) if pair_bias else \
            nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x, memory, memory_pad=None, rel=None):
        h = self.n1(x)
        x = x + (self.self_attn(h, rel) if rel is not None else self.self_attn(h, h, h, need_weights=False)[0])
        x = x + self.cross(self.n2(x), memory, memory, key_padding_mask=memory_pad, need_weights=False)[0]
        return x + self.mlp(self.n3(x))


def coord_grid(grid: int) -> torch.Tensor:
    axis = torch.linspace(-1.0, 1.0, grid)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], -1)          # (grid * grid, 2)


class ObjectHead(nn.Module):
    def __init__(self, config: ObjectHeadConfig | None = None):
        super().__init__()
        self.config = c = config or ObjectHeadConfig()
        w = c.width
        self.register_buffer("pos", coord_grid(c.grid), persistent=False)
        self.token_in = nn.Sequential(nn.LayerNorm(c.token_dim + NUM_SECONDS + 2 + 2),
                                      nn.Linear(c.token_dim + NUM_SECONDS + 2 + 2, w))
        self.token_layer = nn.TransformerEncoderLayer(w, c.heads, 2 * w, dropout=0.0, activation="gelu",
                                                      batch_first=True, norm_first=True)
        self.queries = nn.Parameter(torch.randn(c.queries, w) * 0.1)
        self.decoder = nn.ModuleList(DecoderLayer(w, c.heads) for _ in range(c.decoder_layers))
        self.mask_query = nn.Linear(w, w)
        self.mask_key = nn.Linear(w, w)
        self.objectness = nn.Linear(w, 1)
        # descriptor: query state + pooled tokens + pooled sounding (10 + mean + max) + geometry (5)
        self.describe = nn.Sequential(nn.Linear(2 * w + NUM_SECONDS + 2 + 5, w), nn.GELU(), nn.Linear(w, w))
        self.word_in = nn.Linear(c.text_dim, w)
        self.null_token = nn.Parameter(torch.zeros(1, w))
        self.choice = nn.ModuleList(DecoderLayer(w, c.heads, pair_bias=True) for _ in range(c.choice_layers))
        if c.prior_dim:
            self.prior_in = nn.Linear(c.prior_dim + 1, w)
            self.prior_scale = nn.Parameter(torch.tensor(1.0))
        self.target_out = nn.Linear(w, 1)
        self.anchor_out = nn.Linear(w, 1)
        # training-only auxiliaries
        self.aux_category = nn.Linear(w, c.category_dim)
        self.aux_sounding = nn.Linear(w, NUM_SECONDS)

    # ----------------------------------------------------------------- once per clip
    def objects(self, visual_tokens: torch.Tensor, motion_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, N, token_dim) visual tokens, (B, N, 10) per-token sounding logits -> per query: mask
        logits (B, K, N), objectness (B, K), descriptor (B, K, w), geometry (B, K, 5)."""
        b = visual_tokens.shape[0]
        pos = self.pos.expand(b, -1, -1)
        ml = motion_logits
        t = self.token_in(torch.cat([visual_tokens, ml, ml.mean(-1, keepdim=True), ml.amax(-1, keepdim=True),
                                     pos], -1))
        t = self.token_layer(t)
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        for layer in self.decoder:
            q = layer(q, t)
        mask_logits = torch.einsum("bkd,bnd->bkn", self.mask_query(q), self.mask_key(t)) / math.sqrt(q.shape[-1])
        weights = torch.sigmoid(mask_logits)
        area = weights.sum(-1, keepdim=True)
        share = weights / (area + 1e-3)
        centroid = share @ self.pos                                          # (B, K, 2)
        spread = (share @ self.pos.square() - centroid.square()).clamp(min=0).sqrt()
        geometry = torch.cat([centroid, spread, area / self.pos.shape[0]], -1)
        pooled = share @ t
        sound = share @ ml                                                   # (B, K, 10)
        desc = q + self.describe(torch.cat([q, pooled, sound, sound.mean(-1, keepdim=True),
                                            sound.amax(-1, keepdim=True), geometry], -1))
        return {"mask_logits": mask_logits, "objectness": self.objectness(q)[..., 0], "descriptor": desc,
                "geometry": geometry, "weights": weights}

    # ----------------------------------------------------------------- per expression
    def choose(self, objects: dict[str, torch.Tensor], tokens: torch.Tensor, token_mask: torch.Tensor,
               prior: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Objects of each expression's clip + MiniLM token states (B, T, 384) -> logits over the K
        objects and null (B, K + 1; null last) for the target, over the K objects for the anchor.
        ``prior`` (when the config has ``prior_dim``): the encoder grounder's ``h2`` (B, N, d) and
        ``coarse`` (B, N) for the same expressions (:meth:`Grounder.fuse`)."""
        desc, geo = objects["descriptor"], objects["geometry"]
        b = desc.shape[0]
        prior_logit = None
        if self.config.prior_dim:
            w = objects["weights"]
            share = w / (w.sum(-1, keepdim=True) + 1e-3)
            mass = torch.einsum("bn,bkn->bk", prior["coarse"].softmax(-1), w)
            prior_logit = torch.log(mass + 1e-4)
            desc = desc + self.prior_in(torch.cat([share @ prior["h2"], prior_logit.unsqueeze(-1)], -1))
        words = self.word_in(tokens)
        pad = token_mask <= 0
        x = torch.cat([desc, self.null_token.unsqueeze(0).expand(b, -1, -1)], 1)
        centre = torch.cat([geo[..., :2], torch.zeros_like(geo[:, :1, :2])], 1)
        delta = centre.unsqueeze(2) - centre.unsqueeze(1)                   # (B, K+1, K+1, 2)
        rel = torch.cat([delta, delta.norm(dim=-1, keepdim=True)], -1)
        for layer in self.choice:
            x = layer(x, words, pad, rel)
        objectness = F.logsigmoid(objects["objectness"])
        target = self.target_out(x)[..., 0] + torch.cat([objectness, torch.zeros_like(objectness[:, :1])], 1)
        if prior_logit is not None:
            target = target + self.prior_scale * torch.cat([prior_logit, torch.zeros_like(prior_logit[:, :1])], 1)
        anchor = self.anchor_out(x[:, :-1])[..., 0] + objectness
        return {"target": target, "anchor": anchor, "state": x}

    def referent_map(self, objects: dict[str, torch.Tensor], choice: dict[str, torch.Tensor]) -> tuple:
        """(B, grid, grid) probability that a token belongs to the referent, and the null logit."""
        p = choice["target"].softmax(-1)
        prob = torch.einsum("bk,bkn->bn", p[:, :-1], torch.sigmoid(objects["mask_logits"]))
        g = self.config.grid
        null_logit = torch.logit(p[:, -1].clamp(1e-6, 1 - 1e-6))
        return prob.reshape(-1, g, g), null_logit

