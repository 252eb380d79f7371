"""Stage A of the grounded auditor: which object does the expression mean? (once per clip)

From the clip's frames, its log-mel, the expression's MiniLM token states and a key-frame index,
:class:`Grounder` returns a referent map on the key frame (32 x 32 logits, stride 4 at 128 px), an
anchor map for relational expressions (16 x 16) and a null logit (the expression refers to nothing
in the clip). The per-mask scorer (stage B) compares candidate masks with that map.

Why this shape (the previous model pooled the expression into one vector and saw 2x2 frame tokens):

- **words, not a sentence vector**: learned slots (target, anchor, relation) read MiniLM's token
  states by cross-attention, and every fusion layer attends to the tokens again, so "left of the
  dog" and "the dog on the left" stay different;
- **the key frame at full resolution**: a strided CNN (2, 4, 8, 16) with coordinate channels and
  "what changed" channels (key frame minus the clip mean, differences to its neighbours); fusion
  runs on 16 x 16 tokens, the map is decoded at 32 x 32 with the stride-4 features;
- **sound to pixels**: every frame goes through a small shared CNN (at 64 px); each key-frame token
  finds "itself" in every other frame by attention (appearance match with a distance penalty, a
  soft tracker, since objects move), so each token gets its object's appearance over the 10 seconds
  (a sounding object visibly pulses); that per-second track is multiplied with per-second audio
  features (audio-visual correlation) and read by the fusion layers;
- **two hops**: the anchor map is predicted first; its centroid gives every token its position
  relative to the anchor, and the target map is read after a second fusion layer.

Auxiliary heads (training only, from the generator's sidecar): per-object category against the
names' MiniLM embeddings, and per-object sounding per second; both read pooled token features under
the object's key-frame mask.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


NUM_SECONDS = 10
# The sound gate is two numbers per expression deciding a whole map; at the base learning rate a
# fine-tune moved it too little to matter (needs_audio stayed at 44-48% after 700 steps with the
# signal there: the target's sounding logit beats its silent twin's in 83-86% of pairs). Scaled, each
# Adam step moves it SOUND_GATE_SCALE times further.
SOUND_GATE_SCALE = 8.0


@dataclass
class GrounderConfig:
    key_size: int = 128          # key frame side (the generated resolution)
    track_size: int = 64         # every frame's side for the sound/motion track
    n_mels: int = 64
    mel_frames_per_second: int = 50
    text_dim: int = 384
    max_tokens: int = 24
    width: int = 96              # fusion token width
    heads: int = 4
    track_dim: int = 32
    audio_dim: int = 32
    decoder_dim: int = 32
    category_dim: int = 384      # the category auxiliary projects into MiniLM space
    # Options measured against the shipped first run (docs/grounding.md, "Audio"); none beat it on
    # the held-out clips, so the defaults are its architecture:
    motion_energy: bool = False  # full-resolution vibration channels into the CNNs (run 3)
    sound_tokens: bool = False   # per-token sounding probabilities feed the fusion (run 3)
    cell_motion: bool = False    # block-matched cell vibration (motion.py), tracked to the tokens (runs 4-5)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.GELU())


def coord_channels(batch: int, size: int, device) -> torch.Tensor:
    """(B, 2, size, size) x and y in [-1, 1]: where a pixel is, for left/right/top/bottom words."""
    axis = torch.linspace(-1.0, 1.0, size, device=device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx, yy]).unsqueeze(0).expand(batch, -1, -1, -1)


def vibration_energy(grey: torch.Tensor) -> torch.Tensor:
    """(B, 10, S, S) grey frames -> (B, 2, 10, S, S): per frame, the change to both neighbours and
    the change between the neighbours.

    A sounding object vibrates: its position alternates by 1-2.5 px from frame to frame, on top of
    its smooth track. Both neighbours then sit on the same side, so |f(t)-f(t-1)| + |f(t+1)-f(t)|
    is large while |f(t+1)-f(t-1)| stays small; for smooth motion the two are about equal. A
    1-pixel alternation is lost by any pooling, so this is computed at full resolution, before the
    track's 2x pooling. (On oracle masks the centroid's alternation separates sounding seconds
    with AUC 0.95; this pixel statistic pooled per 8x8 cell reaches 0.75 alone.)
    """
    step = (grey[:, 1:] - grey[:, :-1]).abs()                        # (B, 9, S, S)
    both = step[:, 1:] + step[:, :-1]                                 # frames 1..8
    skip = (grey[:, 2:] - grey[:, :-2]).abs()
    both = torch.cat([both[:, :1], both, both[:, -1:]], 1)           # edge frames copy their neighbour
    skip = torch.cat([skip[:, :1], skip, skip[:, -1:]], 1)
    return torch.stack([both, skip], 1)


class FusionLayer(nn.Module):
    """Self-attention over the 16 x 16 tokens (comparisons: loudest, leftmost, of its kind), then
    cross-attention to the expression's words and slots, then an MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x, words, word_pad):
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        x = x + self.cross_attn(self.norm2(x), words, words, key_padding_mask=word_pad,
                                need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class Grounder(nn.Module):
    def __init__(self, config: GrounderConfig | None = None):
        super().__init__()
        self.config = c = config or GrounderConfig()
        w = c.width
        # key frame: RGB + (x, y) + 3 "what changed" channels, strides 2/4/8/16
        extra = 2 if c.motion_energy else 0
        self.key_s2 = _conv(8 + extra, 24, 2)
        self.key_s4 = nn.Sequential(_conv(24, 32, 2), _conv(32, 32))
        self.key_s8 = nn.Sequential(_conv(32, 64, 2), _conv(64, 64))
        self.key_s16 = nn.Sequential(_conv(64, 96, 2), _conv(96, 96))
        # every frame at track_size -> 16 x 16 x track_dim (shared weights)
        self.track_cnn = nn.Sequential(_conv(3 + extra, 16, 2), _conv(16, c.track_dim, 2), _conv(c.track_dim, c.track_dim))
        self.track_query = nn.Conv2d(64 + 2, c.track_dim, 1)
        self.track_key = nn.Linear(c.track_dim, c.track_dim)
        if c.cell_motion:
            # per token and second, from its tracked vibration and the clip's loudness: is the
            # token's object the one sounding? (trained by the per-object sounding loss); the ten logits, their mean and max join the token. Output layers start at zero,
            # so a grounder fine-tuned from one without them starts where it was.
            self.motion_sound = nn.Sequential(nn.Linear(2, 8), nn.GELU(), nn.Linear(8, 1))
            self.motion_tokens = nn.Linear(NUM_SECONDS + 2, c.width)
            # and a direct path to the target map: the target slot (what the words ask) weighs
            # each token's loudest and mean sounding logit ("the one playing", "the silent one")
            self.sound_gate = nn.Linear(c.width, 2)
            for layer in (self.motion_sound[2], self.motion_tokens, self.sound_gate):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.track_distance = nn.Parameter(torch.tensor(4.0))
        # audio: log-mel pooled per second -> per-second features
        self.audio_mlp = nn.Sequential(nn.Linear(2 * c.n_mels, 64), nn.GELU(), nn.Linear(64, c.audio_dim))
        self.av_visual = nn.Linear(c.track_dim, c.audio_dim)
        self.track_profile = nn.Linear(NUM_SECONDS * c.track_dim, 64)
        self.audio_global = nn.Linear(c.audio_dim * NUM_SECONDS, w)
        # tokens
        self.token_in = nn.Linear(64 + 96 + 64 + c.audio_dim + 2, w)
        # is each token's object sounding, per second (trained by the per-object sounding loss too)
        if c.sound_tokens:
            self.sound_head = nn.Sequential(nn.Linear(c.track_dim + c.audio_dim, 16), nn.GELU(), nn.Linear(16, 1))
            self.sound_in = nn.Linear(NUM_SECONDS + 2, w)
        else:  # the first checkpoints: a linear sounding auxiliary, not read by the fusion
            self.sound_head = nn.Linear(c.track_dim + c.audio_dim, 1)
        self.word_in = nn.Linear(c.text_dim, w)
        self.slots = nn.Parameter(torch.randn(3, w) * 0.02)   # target, anchor, relation
        self.slot_attn = nn.MultiheadAttention(w, c.heads, batch_first=True)
        self.slot_norm = nn.LayerNorm(w)
        self.fuse1 = FusionLayer(w, c.heads)
        self.fuse2 = FusionLayer(w, c.heads)
        self.anchor_query = nn.Linear(w, w)
        self.hop_in = nn.Linear(2 + 1 + w, w)
        self.target_query = nn.Linear(w, w)
        # decoder: 16 x 16 tokens + stride-4 key features -> 32 x 32 logits
        self.dec_tokens = nn.Linear(w, c.decoder_dim)
        self.dec_mix = nn.Sequential(nn.Conv2d(c.decoder_dim + 32, c.decoder_dim, 1), nn.GELU(),
                                     nn.Conv2d(c.decoder_dim, c.decoder_dim, 3, padding=1,
                                               groups=c.decoder_dim), nn.GELU())
        self.dec_query = nn.Linear(w, c.decoder_dim)
        self.null_head = nn.Sequential(nn.Linear(3 * w, w), nn.GELU(), nn.Linear(w, 1))
        # training-only auxiliaries (not exported)
        self.aux_category = nn.Linear(w, c.category_dim)
        if c.key_size % 16 or c.key_size != 2 * c.track_size:
            raise ValueError(f"GrounderConfig: key_size {c.key_size} must be a multiple of 16 and twice "
                             f"track_size {c.track_size}")
        self.grid = c.key_size // 8                           # fusion tokens: grid x grid (16 at 128 px)
        self.register_buffer("pos", coord_channels(1, self.grid, "cpu").flatten(2).transpose(1, 2)[0],
                             persistent=False)  # (grid * grid, 2)
        # token-to-token distances, in units of half-frames: a constant of the grid
        self.register_buffer("dist", torch.cdist(self.pos, self.pos), persistent=False)

    # ------------------------------------------------------------------------------- parts
    def encode_words(self, tokens: torch.Tensor, token_mask: torch.Tensor):
        """MiniLM token states (B, T, 384) + mask -> words (B, T, w), padding mask, slots (B, 3, w)."""
        words = self.word_in(tokens)
        pad = token_mask <= 0
        q = self.slots.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        slots = self.slot_norm(q + self.slot_attn(q, words, words, key_padding_mask=pad,
                                                  need_weights=False)[0])
        return torch.cat([words, slots], 1), torch.cat([pad, torch.zeros_like(pad[:, :3])], 1), slots

    def log_mel_seconds(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel in dB -> (B, n_mels, 10, frames per second), padded with silence
        to 10 s and scaled to about zero mean and unit scale."""
        c = self.config
        frames = NUM_SECONDS * c.mel_frames_per_second
        x = log_mel[..., :frames]
        if x.shape[-1] < frames:
            x = F.pad(x, (0, frames - x.shape[-1]), value=-100.0)
        x = (x + 40.0) / 20.0
        return x.reshape(x.shape[0], c.n_mels, NUM_SECONDS, c.mel_frames_per_second)

    def encode_audio(self, seconds: torch.Tensor) -> torch.Tensor:
        """:meth:`log_mel_seconds` -> (B, 10, audio_dim) per-second features."""
        stats = torch.cat([seconds.mean(-1), seconds.amax(-1)], 1).transpose(1, 2)   # (B, 10, 2 * n_mels)
        return self.audio_mlp(stats)

    def forward(self, frames: torch.Tensor, key_index: torch.Tensor, log_mel: torch.Tensor,
                tokens: torch.Tensor, token_mask: torch.Tensor,
                cell_motion: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """frames uint8-valued float (B, 10, 3, S, S) at key_size; key_index (B,) long;
        cell_motion (B, 10, 256, 4) from :func:`auditor_lite.motion.cell_motion` when the config
        asks for it. One expression per clip; :meth:`encode_clip` + :meth:`ground` share a clip
        between several."""
        return self.ground(self.encode_clip(frames, key_index, log_mel, cell_motion), tokens, token_mask)

    def encode_clip(self, frames: torch.Tensor, key_index: torch.Tensor, log_mel: torch.Tensor,
                    cell_motion: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything that does not read the expression (about 3/4 of a training step's compute):
        per clip and key frame, the visual tokens, the stride-4 features and the sound tracks."""
        c = self.config
        if c.cell_motion and cell_motion is None:
            raise ValueError("this grounder reads cell_motion (auditor_lite.motion.cell_motion of the frames)")
        b = frames.shape[0]
        x = frames / 255.0
        key = x[torch.arange(b), key_index]                                # (B, 3, S, S)
        grey = x.mean(2)                                                   # (B, 10, S, S)
        prev = grey[torch.arange(b), (key_index - 1).clamp(min=0)]
        nxt = grey[torch.arange(b), (key_index + 1).clamp(max=NUM_SECONDS - 1)]
        kgrey = grey[torch.arange(b), key_index]
        changed = torch.stack([kgrey - grey.mean(1), (kgrey - prev).abs(), (nxt - kgrey).abs()], 1)
        key_in = torch.cat([key - 0.5, coord_channels(b, c.key_size, x.device), 4 * changed], 1)
        if c.motion_energy:
            energy = 4 * vibration_energy(grey)                            # (B, 2, 10, S, S)
            key_in = torch.cat([key_in, energy[torch.arange(b), :, key_index]], 1)
        s2 = self.key_s2(key_in)
        s4 = self.key_s4(s2)                                               # (B, 32, 32, 32)
        s8 = self.key_s8(s4)                                               # (B, 64, 16, 16)
        s16 = self.key_s16(s8)                                             # (B, 96, 8, 8)
        s16_up = F.interpolate(s16, scale_factor=2, mode="nearest")

        # every frame, tracked back to the key-frame tokens
        small = x.flatten(0, 1) - 0.5
        if c.motion_energy:
            small = torch.cat([small, energy.transpose(1, 2).flatten(0, 1)], 1)
        small = F.avg_pool2d(small, c.key_size // c.track_size)
        n, g = self.grid ** 2, self.grid
        tf = self.track_cnn(small).reshape(b, NUM_SECONDS, c.track_dim, n).transpose(2, 3)  # (B,10,n,d)
        pos = self.pos
        q = self.track_query(torch.cat([s8, coord_channels(b, g, x.device)], 1)).flatten(2).transpose(1, 2)
        k = self.track_key(tf)                                             # (B, 10, 256, d)
        # batched matmuls rather than einsum, here and below: the exported graph then runs MatMul
        # (fused with the transposes and the scale) instead of Einsum: 8.4 -> 7.1 ms a context call
        scores = q.unsqueeze(1) @ k.transpose(-1, -2) / math.sqrt(c.track_dim) \
            - F.softplus(self.track_distance) * self.dist
        attention = scores.softmax(-1)
        track = (attention @ tf).transpose(1, 2)                            # (B, 256, 10, d)
        seconds = self.log_mel_seconds(log_mel)
        audio = self.encode_audio(seconds)                                 # (B, 10, a)
        clip = {"s4": s4, "track": track, "audio": audio}
        if c.cell_motion:   # each frame's cell motion, carried to the key-frame tokens by the tracker
            moved = (attention @ cell_motion[..., :1]).transpose(1, 2)         # (B, 256, 10, 1)
            loudness = seconds.mean((1, 3))                       # (B, 10): each second's mean level
            clip.update(moved=moved, loudness=loudness, motion_logits=self.motion_sounding(moved, loudness))
        av = (self.av_visual(track) * audio.unsqueeze(1)).mean(2)         # (B, 256, a)
        profile = self.track_profile(track.flatten(2))                     # (B, 256, 64)

        visual = torch.cat([s8, s16_up], 1).flatten(2).transpose(1, 2)     # (B, 256, 160)
        tokens_v = self.token_in(torch.cat([visual, profile, av, pos.expand(b, -1, -1)], -1))
        if c.sound_tokens:
            sounding = torch.sigmoid(self.sounding_logits(track, audio))             # (B, 256, 10)
            tokens_v = tokens_v + self.sound_in(torch.cat([sounding, sounding.mean(-1, keepdim=True),
                                                           sounding.amax(-1, keepdim=True)], -1))
        if c.cell_motion:
            ml = clip["motion_logits"]
            tokens_v = tokens_v + self.motion_tokens(torch.cat(
                [ml, ml.mean(-1, keepdim=True), ml.amax(-1, keepdim=True)], -1))
        clip["visual_tokens"] = tokens_v + self.audio_global(audio.flatten(1)).unsqueeze(1)
        return clip

    def ground(self, clip: dict[str, torch.Tensor], tokens: torch.Tensor, token_mask: torch.Tensor,
               clip_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """:meth:`encode_clip`'s features + the expressions' MiniLM token states -> the maps.
        ``clip_index`` (E,) names each expression's clip (default: expression i reads clip i)."""
        c = self.config
        if clip_index is not None:
            clip = {k: v.index_select(0, clip_index) for k, v in clip.items()}
        s4 = clip["s4"]
        b, g = s4.shape[0], self.grid
        fused = self.fuse(clip, tokens, token_mask)
        h1, h2, coarse, slots = fused["h1"], fused["h2"], fused["coarse"], fused["slots"]
        anchor_logits = fused["anchor_logits"]

        dec = self.dec_tokens(h2).transpose(1, 2).reshape(b, c.decoder_dim, g, g)
        dec = self.dec_mix(torch.cat([F.interpolate(dec, scale_factor=2, mode="nearest"), s4], 1))
        fine = (self.dec_query(slots[:, 0]).unsqueeze(1) @ dec.flatten(2)).reshape(b, 2 * g, 2 * g) \
            / math.sqrt(c.decoder_dim)
        target_logits = fine + F.interpolate(coarse.reshape(b, 1, g, g), scale_factor=2,
                                             mode="bilinear", align_corners=False)[:, 0]
        attn = coarse.softmax(-1)
        null_in = torch.cat([h2.mean(1), (attn.unsqueeze(1) @ h2)[:, 0], slots[:, 0]], -1)
        extra = {k: clip[k] for k in ("moved", "loudness") if k in clip}
        return {"target_logits": target_logits, "anchor_logits": anchor_logits.reshape(b, g, g),
                "null_logit": self.null_head(null_in)[:, 0],
                # for the auxiliaries
                "tokens": h1, "track": clip["track"], "audio": clip["audio"], **extra}

    def fuse(self, clip: dict[str, torch.Tensor], tokens: torch.Tensor, token_mask: torch.Tensor
             ) -> dict[str, torch.Tensor]:
        """The expression read into the visual tokens (both fusion layers, two hops) -> the
        fused token states ``h1``, ``h2``, the anchor logits and the coarse (16 x 16) target
        logits. Needs only ``visual_tokens`` (and ``motion_logits``) of :meth:`encode_clip`."""
        c = self.config
        tokens_v = clip["visual_tokens"]
        n, pos = self.grid ** 2, self.pos
        words, pad, slots = self.encode_words(tokens, token_mask)
        h1 = self.fuse1(tokens_v, words, pad)
        anchor_logits = (h1 @ self.anchor_query(slots[:, 1]).unsqueeze(-1))[..., 0] / math.sqrt(c.width)
        p_anchor = anchor_logits.softmax(-1)
        centroid = p_anchor @ pos
        anchor_feat = (p_anchor.unsqueeze(1) @ h1)[:, 0]
        hop = torch.cat([pos.unsqueeze(0) - centroid.unsqueeze(1), p_anchor.unsqueeze(-1) * 16,
                         anchor_feat.unsqueeze(1).expand(-1, n, -1)], -1)
        h2 = self.fuse2(h1 + self.hop_in(hop), words, pad)
        coarse = (h2 @ self.target_query(slots[:, 0]).unsqueeze(-1))[..., 0] / math.sqrt(c.width)
        if c.cell_motion:
            ml = clip["motion_logits"]
            sounding_score = torch.stack([ml.amax(-1), ml.mean(-1)], -1)                         # (B, n, 2)
            gate = SOUND_GATE_SCALE * self.sound_gate(slots[:, 0])                              # (B, 2)
            coarse = coarse + (sounding_score @ gate.unsqueeze(-1))[..., 0]
        return {"h1": h1, "h2": h2, "coarse": coarse, "anchor_logits": anchor_logits, "slots": slots}

    def motion_sounding(self, moved: torch.Tensor, loudness: torch.Tensor) -> torch.Tensor:
        """(B, K, 10, 1) tracked vibration (per token, or pooled per object), (B, 10) loudness ->
        (B, K, 10) logits that the object sounds in that second, from its motion."""
        loud = loudness.unsqueeze(1).unsqueeze(-1).expand(-1, moved.shape[1], -1, -1)
        return self.motion_sound(torch.cat([moved, loud], -1))[..., 0]

    def sounding_logits(self, track: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B, K, 10, d) tracks (per token, or pooled per object), (B, 10, a) -> (B, K, 10)
        per-second logits that the track's object is heard sounding."""
        a = audio.unsqueeze(1).expand(-1, track.shape[1], -1, -1)
        return self.sound_head(torch.cat([track, a], -1))[..., 0]


def count_parameters(model: nn.Module, exclude_aux: bool = True) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not (exclude_aux and n.startswith("aux_")))
