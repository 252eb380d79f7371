"""AuditorConfig: every dimension of an auditor model, saved as ``config.json`` next to the weights."""

from __future__ import annotations

import math

from transformers import PretrainedConfig

from auditor_lite.data.schema import ACTIONS, CLIP_SAMPLES, MASK_TYPES, NUM_FRAMES, SAMPLE_RATE
from auditor_lite.model import audio
from auditor_lite.preprocess import TEXT_EMBEDDING_DIM
from auditor_lite.model.presets import preset


def _stage_list(field_name: str, stages) -> list[list[int]]:
    """``[[channels, stride], ...]`` as ints (JSON gives lists); a ValueError naming the field else."""
    try:
        parsed = [[int(channels), int(stride)] for channels, stride in stages]
    except (TypeError, ValueError):
        parsed = None
    if not parsed or any(c <= 0 or s not in (1, 2, 4) for c, s in parsed):
        raise ValueError(f"AuditorConfig.{field_name}: expected [[channels, stride in 1/2/4], ...], "
                         f"got {stages!r}")
    return parsed


class AuditorConfig(PretrainedConfig):
    """Dimensions of :class:`~auditor_lite.model.modeling.AuditorModel`.

    Size fields default to the named preset (``preset_name``, ``student`` by default);
    ``AuditorConfig.from_preset("teacher", dropout=0.0)`` builds a preset with overrides. The
    audio front end's parameters and the label vocabularies are stored too, so a checkpoint
    describes exactly what its graph computes.
    """

    model_type = "auditor"

    def __init__(
        self,
        preset_name: str = "student",
        d_model: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float | None = None,
        context_depth: int | None = None,
        decoder_depth: int | None = None,
        dropout: float | None = None,
        frame_size: int | None = None,
        frame_stages: list | None = None,
        key_size: int | None = None,
        key_stages: list | None = None,
        mask_stages: list | None = None,
        audio_channels: int | None = None,
        audio_strides: list | None = None,
        text_tokens: int | None = None,
        grounding_channels: int | None = None,
        grounding_stages: list | None = None,
        key_motion: bool | None = None,
        num_frames: int = NUM_FRAMES,
        text_dim: int = TEXT_EMBEDDING_DIM,
        sample_rate: int = SAMPLE_RATE,
        clip_samples: int = CLIP_SAMPLES,
        n_fft: int = audio.N_FFT,
        hop: int = audio.HOP,
        n_mels: int = audio.N_MELS,
        fmin: float = audio.FMIN,
        fmax: float = audio.FMAX,
        center: bool = audio.CENTER,
        pad_mode: str = audio.PAD_MODE,
        amin: float = audio.AMIN,
        mask_types: list | None = None,
        actions: list | None = None,
        **kwargs,
    ):
        # Size fields left as None take the value of the named preset (the registry is the single
        # source of the numbers); explicit values override it.
        sizes = preset(preset_name)
        given = dict(d_model=d_model, num_heads=num_heads, mlp_ratio=mlp_ratio,
                     context_depth=context_depth, decoder_depth=decoder_depth, dropout=dropout,
                     frame_size=frame_size, frame_stages=frame_stages, key_size=key_size,
                     key_stages=key_stages, mask_stages=mask_stages, audio_channels=audio_channels,
                     audio_strides=audio_strides, text_tokens=text_tokens,
                     grounding_channels=grounding_channels, grounding_stages=grounding_stages,
                     key_motion=key_motion)
        sizes.update({k: v for k, v in given.items() if v is not None})
        self.preset_name = preset_name
        self.d_model = int(sizes["d_model"])
        self.num_heads = int(sizes["num_heads"])
        self.mlp_ratio = float(sizes["mlp_ratio"])
        self.context_depth = int(sizes["context_depth"])
        self.decoder_depth = int(sizes["decoder_depth"])
        self.dropout = float(sizes["dropout"])
        self.frame_size = int(sizes["frame_size"])
        self.frame_stages = _stage_list("frame_stages", sizes["frame_stages"])
        self.key_size = int(sizes["key_size"])
        self.key_stages = _stage_list("key_stages", sizes["key_stages"])
        self.mask_stages = _stage_list("mask_stages", sizes["mask_stages"])
        self.audio_channels = int(sizes["audio_channels"])
        self.audio_strides = [int(s) for s in sizes["audio_strides"]]
        self.text_tokens = int(sizes["text_tokens"])
        self.grounding_channels = int(sizes["grounding_channels"])
        self.grounding_stages = _stage_list("grounding_stages", sizes["grounding_stages"])
        self.key_motion = bool(sizes["key_motion"])
        self.num_frames = num_frames
        self.text_dim = text_dim
        self.sample_rate = sample_rate
        self.clip_samples = clip_samples
        self.n_fft, self.hop, self.n_mels = n_fft, hop, n_mels
        self.fmin, self.fmax, self.center, self.pad_mode, self.amin = fmin, fmax, center, pad_mode, amin
        self.mask_types = list(mask_types or MASK_TYPES)
        self.actions = list(actions or ACTIONS)
        super().__init__(**kwargs)
        self.validate_dims()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "AuditorConfig":
        """The named preset of :data:`~auditor_lite.model.presets.PRESETS`, with ``overrides``."""
        return cls(preset_name=name, **overrides)

    # Derived sizes (not stored: they follow from the fields above).
    @staticmethod
    def _grid(size: int, stages: list) -> int:
        return size // math.prod(stride for _, stride in stages)

    @property
    def frame_grid(self) -> int:
        return self._grid(self.frame_size, self.frame_stages)

    @property
    def key_grid(self) -> int:
        return self._grid(self.key_size, self.key_stages)

    @property
    def mask_grid(self) -> int:
        return self._grid(self.key_size, self.mask_stages)

    @property
    def spectrogram_frames(self) -> int:
        # The last centred frame straddles the clip's end; the audio encoder uses the frames before it.
        return audio.num_spectrogram_frames(self.clip_samples, self.n_fft, self.hop, self.center) - 1

    @property
    def audio_tokens(self) -> int:
        return self.spectrogram_frames // math.prod(self.audio_strides)

    @property
    def grounding_grid(self) -> int:
        return self._grid(self.key_size, self.grounding_stages)

    @property
    def context_tokens(self) -> int:
        """Tokens the context trunk attends over: the grounding token, text, audio, frames and the
        key frame (in that order)."""
        return (1 + self.text_tokens + self.audio_tokens + self.num_frames * self.frame_grid ** 2
                + self.key_grid ** 2)

    def validate_dims(self) -> None:
        """Raise ``ValueError`` naming the field when the dimensions cannot build a model."""
        def need(condition: bool, field_name: str, why: str) -> None:
            if not condition:
                raise ValueError(f"AuditorConfig.{field_name}: {why}")

        need(self.d_model % self.num_heads == 0, "num_heads",
             f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        for name, size in (("frame_stages", self.frame_size), ("key_stages", self.key_size),
                           ("mask_stages", self.key_size), ("grounding_stages", self.key_size)):
            total = math.prod(s for _, s in getattr(self, name))
            need(size % total == 0, name, f"input size {size} is not divisible by the total stride {total}")
        need(self.spectrogram_frames % math.prod(self.audio_strides) == 0, "audio_strides",
             f"{self.spectrogram_frames} spectrogram frames are not divisible by "
             f"prod({self.audio_strides})")
        need(self.pad_mode in audio.PAD_MODES, "pad_mode", f"must be one of {audio.PAD_MODES}")
        need(self.text_tokens >= 1, "text_tokens", "must be >= 1")
        need(self.grounding_channels >= 1, "grounding_channels", "must be >= 1")
        need(not self.key_motion or self.key_size % self.frame_size == 0, "key_motion",
             f"key_size={self.key_size} must be a multiple of frame_size={self.frame_size}")
