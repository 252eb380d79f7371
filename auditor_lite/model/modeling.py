"""AuditorModel: a miniature MQ-Auditor that scores N candidate masks of one clip in one pass.

Inputs (what :mod:`auditor_lite.preprocess` produces; B = clips, N = candidate masks)::

    frames          float32 (B, 10, 3, frame_size, frame_size)  the clip's frames, RGB in [0, 1]
    key_frame       float32 (B, 3, key_size, key_size)           the audited frame, RGB in [0, 1]
    audio           float32 (B, clip_samples)                    16 kHz mono waveform
    text_embedding  float32 (B, 384)                             MiniLM sentence embedding
    masks           float32 (N, 1, key_size, key_size)           candidate masks in {0, 1}

Outputs: ``iou`` (N,) in [0, 1], ``type_logits`` (N, 7) over MASK_TYPES, ``action_logits`` (N, 4)
over ACTIONS, and ``iou_logits`` (N,) (pre-sigmoid, for training losses).

Two stages, so that a clip's context is encoded once and shared by any number of masks:

* :meth:`AuditorModel.encode_context` turns frames, key frame, audio and text into context tokens
  (a transformer trunk over all modality tokens), ``(B, context_tokens, d_model)``;
* :meth:`AuditorModel.audit_masks` encodes each mask (the binary mask and the masked key frame, as
  MQ-Auditor does) into a small grid of tokens, prepends learned IoU / type / action query tokens
  (MQ-Auditor's ``<iou>`` token), and lets them attend to themselves and to the context.

Grounding (:mod:`auditor_lite.model.grounding`): the trunk also carries a learned grounding token;
from it and the key-frame tokens, ``audit_masks`` predicts a soft map of the referred object on the
key frame (once per clip; supervised by the ground-truth mask in training, ``grounding_logits``),
and each mask's overlap statistics with that map are added to the query tokens and read by the
heads. This is what makes the text and the audio matter to a model this small.

At export B is 1 and N is the only dynamic dimension: the context is shared through broadcasting
MatMuls (never repeated per mask), and there is no data-dependent control flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from auditor_lite.model.audio import LogMelSpectrogram
from auditor_lite.model.configuration import AuditorConfig
from auditor_lite.model.grounding import (NUM_MASK_FEATURES, EdgeMap, GroundingHead,
                                          agreement_features, boundary_features)
from auditor_lite.model.layers import (ConvStem, DecoderBlock, EncoderBlock, LearnedTokens,
                                       conv_geometry, grid_to_tokens)

MOTION_CHANNELS = 3 + 10  # key frame minus the mean frame (RGB), each frame's grey minus the mean grey
IOU_QUERY, TYPE_QUERY, ACTION_QUERY = 0, 1, 2  # positions of the learned query tokens
NUM_QUERIES = 3


@dataclass
class AuditorOutput(ModelOutput):
    iou: torch.Tensor | None = None
    type_logits: torch.Tensor | None = None
    action_logits: torch.Tensor | None = None
    iou_logits: torch.Tensor | None = None
    grounding_logits: torch.Tensor | None = None


def _check_shape(name: str, tensor: torch.Tensor, expected: tuple) -> None:
    """Raise ValueError naming the input when its shape differs; ``None`` matches any size."""
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        pretty = tuple("*" if e is None else e for e in expected)
        raise ValueError(f"AuditorModel input {name!r}: expected shape {pretty}, got {shape}")


class AudioEncoder(nn.Module):
    """Waveform -> log-mel (in-graph) -> strided Conv1d over time -> ``audio_tokens`` tokens."""

    def __init__(self, config: AuditorConfig):
        super().__init__()
        self.frontend = LogMelSpectrogram(config.sample_rate, config.n_fft, config.hop, config.n_mels,
                                          config.fmin, config.fmax, config.center, config.pad_mode,
                                          config.amin)
        self.num_frames = config.spectrogram_frames
        # Per-mel-band standardisation of the dB values, learned (BatchNorm) rather than hard-coded.
        self.input_norm = nn.BatchNorm1d(config.n_mels)
        layers, channels = [], config.n_mels
        for stride in config.audio_strides:
            layers += [nn.Conv1d(channels, config.audio_channels, stride, stride, bias=False),
                       nn.BatchNorm1d(config.audio_channels), nn.GELU()]
            channels = config.audio_channels
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, config.d_model)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        log_mel = self.frontend(waveform)[:, :, : self.num_frames]  # (B, n_mels, frames)
        return self.proj(self.convs(self.input_norm(log_mel)).transpose(1, 2))


class AuditorPreTrainedModel(PreTrainedModel):
    config_class = AuditorConfig
    base_model_prefix = "auditor"
    main_input_name = "masks"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, LearnedTokens):
            nn.init.trunc_normal_(module.weight, std=0.02)


class AuditorModel(AuditorPreTrainedModel):
    def __init__(self, config: AuditorConfig):
        super().__init__(config)
        d = config.d_model
        # --- context encoders: each modality becomes a few d_model tokens ---
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, d), nn.GELU(),
                                       nn.Linear(d, d * config.text_tokens))
        self.audio_encoder = AudioEncoder(config)
        self.frame_stem = ConvStem(3, config.frame_stages)
        self.frame_proj = nn.Linear(self.frame_stem.out_channels, d)
        self.key_stem = ConvStem(3 + (MOTION_CHANNELS if config.key_motion else 0), config.key_stages)
        self.key_proj = nn.Linear(self.key_stem.out_channels, d)
        # Learned positions double as modality embeddings (each modality has its own table);
        # frame positions are factorised into time (which of the 10 frames) and space.
        self.text_pos = LearnedTokens(config.text_tokens, d)
        self.audio_pos = LearnedTokens(config.audio_tokens, d)
        self.frame_time_pos = LearnedTokens(config.num_frames, d)
        self.frame_space_pos = LearnedTokens(config.frame_grid ** 2, d)
        self.key_pos = LearnedTokens(config.key_grid ** 2, d)
        self.grounding_token = LearnedTokens(1, d)
        self.context_blocks = nn.ModuleList(
            EncoderBlock(d, config.num_heads, config.mlp_ratio, config.dropout)
            for _ in range(config.context_depth))
        self.context_norm = nn.LayerNorm(d)
        # --- mask branch: one pass per candidate ---
        first_channels, first_stride = config.mask_stages[0]
        kernel, padding = conv_geometry(first_stride)
        # The first layer is a conv over [mask, masked key frame, key frame] (7 channels) split in
        # two: the key-frame part is identical for every mask, so it runs once per call and is
        # broadcast-added. It lets the mask branch compare the mask's edges with the image's.
        self.mask_in = nn.Conv2d(4, first_channels, kernel, first_stride, padding, bias=False)
        self.mask_key_in = nn.Conv2d(3, first_channels, kernel, first_stride, padding, bias=False)
        self.mask_in_act = nn.Sequential(nn.BatchNorm2d(first_channels), nn.GELU())
        self.mask_stem = ConvStem(first_channels, config.mask_stages[1:])
        self.mask_proj = nn.Linear(self.mask_stem.out_channels, d)
        self.mask_pos = LearnedTokens(config.mask_grid ** 2, d)
        self.queries = LearnedTokens(NUM_QUERIES, d)
        self.decoder_blocks = nn.ModuleList(
            DecoderBlock(d, config.num_heads, config.mlp_ratio, config.dropout)
            for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d)
        # --- grounding: where the referred object is; each mask is compared with it ---
        self.grounding = GroundingHead(d, config.grounding_channels, config.grounding_stages,
                                       config.key_grid, config.key_size)
        self.edges = EdgeMap()
        self.agreement_embed = nn.Sequential(nn.Linear(NUM_MASK_FEATURES, d), nn.GELU(),
                                             nn.Linear(d, d))
        # --- heads, each reading its own query token and (directly) the agreement features ---
        f = NUM_MASK_FEATURES
        self.iou_head = nn.Sequential(nn.Linear(d + f, d), nn.GELU(), nn.Linear(d, 1))
        self.type_head = nn.Sequential(nn.Linear(d + f, d), nn.GELU(), nn.Linear(d, len(config.mask_types)))
        self.action_head = nn.Sequential(nn.Linear(d + f, d), nn.GELU(), nn.Linear(d, len(config.actions)))
        self.post_init()

    # ------------------------------------------------------------------ context
    def encode_context(self, frames: torch.Tensor, key_frame: torch.Tensor, audio: torch.Tensor,
                       text_embedding: torch.Tensor) -> torch.Tensor:
        """Clip context tokens ``(B, context_tokens, d_model)``: grounding token, text, audio,
        frames, key frame."""
        c = self.config
        _check_shape("frames", frames, (None, c.num_frames, 3, c.frame_size, c.frame_size))
        batch = frames.shape[0]
        _check_shape("key_frame", key_frame, (batch, 3, c.key_size, c.key_size))
        _check_shape("audio", audio, (batch, c.clip_samples))
        _check_shape("text_embedding", text_embedding, (batch, c.text_dim))

        # Explicit reshapes (not unflatten with -1): the TorchScript exporter turns those into Mod
        # ops, which older onnx-tensorrt releases reject.
        text = self.text_proj(text_embedding).reshape(batch, c.text_tokens, c.d_model)
        text = text + self.text_pos()
        sound = self.audio_encoder(audio) + self.audio_pos()
        per_frame = grid_to_tokens(self.frame_stem(frames.flatten(0, 1)))  # (B*T, g*g, C)
        per_frame = self.frame_proj(per_frame).reshape(batch, c.num_frames, c.frame_grid ** 2, c.d_model)
        per_frame = per_frame + self.frame_time_pos().unsqueeze(1) + self.frame_space_pos()
        key = self.key_proj(grid_to_tokens(self.key_stem(self._key_input(frames, key_frame)))) + self.key_pos()

        ground = self.grounding_token().unsqueeze(0).expand(batch, 1, c.d_model)
        x = torch.cat([ground, text, sound, per_frame.flatten(1, 2), key], dim=1)
        for block in self.context_blocks:
            x = block(x)
        return self.context_norm(x)

    def _key_input(self, frames: torch.Tensor, key_frame: torch.Tensor) -> torch.Tensor:
        """The key-frame stem's input: the key frame, plus (``key_motion``) what moves in the clip.

        Background pixels equal the clip's mean frame; moving and pulsing (sounding) objects do
        not, so these channels make objectness and "which one makes the sound" cheap to learn.
        """
        c = self.config
        if not c.key_motion:
            return key_frame
        mean = frames.mean(dim=1)                                   # (B, 3, S, S)
        grey = frames.mean(dim=2)                                   # (B, T, S, S)
        motion = torch.cat([mean, grey - grey.mean(dim=1, keepdim=True)], dim=1)
        motion = F.interpolate(motion, scale_factor=float(c.key_size // c.frame_size), mode="bilinear",
                               align_corners=False)
        return torch.cat([key_frame, key_frame - motion[:, :3], motion[:, 3:]], dim=1)

    # ------------------------------------------------------------------ masks
    def audit_masks(self, context: torch.Tensor, masks: torch.Tensor, key_frame: torch.Tensor,
                    clip_index: torch.Tensor | None = None, return_dict: bool | None = None):
        """Score N masks against context from :meth:`encode_context`.

        ``context`` (B, L, D) and ``key_frame`` (B, 3, H, W) have B = 1 (one clip, shared by all
        masks: the export case) or B = N (one row per mask). For training batches that mix clips,
        pass ``clip_index`` (N,) int64: mask i then belongs to clip ``clip_index[i]``.
        """
        c = self.config
        _check_shape("masks", masks, (None, 1, c.key_size, c.key_size))
        _check_shape("context", context, (None, c.context_tokens, c.d_model))
        _check_shape("key_frame", key_frame, (context.shape[0], 3, c.key_size, c.key_size))
        num_masks = masks.shape[0]
        if clip_index is None and context.shape[0] != 1 and context.shape[0] != num_masks:
            raise ValueError(f"AuditorModel.audit_masks: context has {context.shape[0]} clips for "
                             f"{num_masks} masks; pass clip_index to say which clip each mask is of")

        # Once per clip, not per mask: the key frame's share of the mask stem's first conv, and the
        # grounding map (read from the grounding token and the key-frame tokens of the context).
        key_features = self.mask_key_in(key_frame)
        grounding_logits = self.grounding(key_frame, context[:, 0], context[:, c.context_tokens - c.key_grid ** 2:],
                                          context[:, 1:1 + c.text_tokens])
        grounding = self.grounding.probabilities(grounding_logits)
        edges = self.edges(key_frame)
        if clip_index is not None:
            key_frame, key_features = key_frame[clip_index], key_features[clip_index]
            grounding, edges = grounding[clip_index], edges[clip_index]
        agreement = torch.cat([agreement_features(masks, grounding),
                               boundary_features(masks, key_frame, edges)], dim=1)  # (N, F)
        mask_input = torch.cat([masks, masks * key_frame], dim=1)  # (N, 4, H, W), MQ-Auditor's pair
        x = self.mask_in_act(self.mask_in(mask_input) + key_features)
        tokens = self.mask_proj(grid_to_tokens(self.mask_stem(x))) + self.mask_pos()
        queries = self.queries().unsqueeze(0) + self.agreement_embed(agreement).unsqueeze(1)
        x = torch.cat([queries, tokens], dim=1)
        for block in self.decoder_blocks:
            x = block(x, context, clip_index)
        x = self.decoder_norm(x)

        iou_logits = self.iou_head(torch.cat([x[:, IOU_QUERY], agreement], dim=1)).squeeze(-1)
        iou = torch.sigmoid(iou_logits)
        type_logits = self.type_head(torch.cat([x[:, TYPE_QUERY], agreement], dim=1))
        action_logits = self.action_head(torch.cat([x[:, ACTION_QUERY], agreement], dim=1))
        if return_dict is False:
            return iou, type_logits, action_logits
        return AuditorOutput(iou=iou, type_logits=type_logits, action_logits=action_logits,
                             iou_logits=iou_logits, grounding_logits=grounding_logits)

    # ------------------------------------------------------------------ fused
    def forward(self, frames: torch.Tensor, key_frame: torch.Tensor, audio: torch.Tensor,
                text_embedding: torch.Tensor, masks: torch.Tensor, clip_index: torch.Tensor | None = None,
                return_dict: bool | None = None):
        """Context encoding + mask audit in one call (the fused graph).

        ``return_dict=False`` returns the export tuple ``(iou, type_logits, action_logits)``.
        """
        context = self.encode_context(frames, key_frame, audio, text_embedding)
        return self.audit_masks(context, masks, key_frame, clip_index, return_dict)

    def example_inputs(self, num_masks: int = 3, num_clips: int = 1, seed: int = 0) -> dict:
        """Random inputs of the right shapes and ranges (for export, tests and benchmarks)."""
        c = self.config
        g = torch.Generator().manual_seed(seed)
        text = torch.randn(num_clips, c.text_dim, generator=g)
        return {
            "frames": torch.rand(num_clips, c.num_frames, 3, c.frame_size, c.frame_size, generator=g),
            "key_frame": torch.rand(num_clips, 3, c.key_size, c.key_size, generator=g),
            "audio": 0.1 * torch.randn(num_clips, c.clip_samples, generator=g),
            "text_embedding": text / text.norm(dim=-1, keepdim=True),
            "masks": (torch.rand(num_masks, 1, c.key_size, c.key_size, generator=g) > 0.5).float(),
        }
