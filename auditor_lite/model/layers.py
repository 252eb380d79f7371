"""Building blocks of the auditor: strided CNN stems, attention and transformer blocks.

Everything here exports to plain ONNX ops that ONNX Runtime and onnx-tensorrt both run (Conv,
BatchNormalization, Erf-based GELU, MatMul, Softmax, LayerNormalization, Reshape, Transpose) and
has no data-dependent control flow. Attention is written out with ``matmul`` rather than
``scaled_dot_product_attention`` so that the key/value side may have batch 1 while the queries
have batch N: ONNX MatMul broadcasts, so a clip's context is shared by N masks without copying.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_geometry(stride: int) -> tuple[int, int]:
    """(kernel, padding) of a stage with ``stride``: overlapping kernels so that edges between
    output cells are seen, and ``out = in / stride`` exactly for inputs divisible by the stride."""
    if stride == 1:
        return 3, 1
    return stride + 1, stride // 2


class ConvStem(nn.Module):
    """Strided CNN: ``[[channels, stride], ...]`` stages of Conv -> BatchNorm -> GELU.

    BatchNorm folds into the preceding convolution at export, so it costs nothing at inference.
    """

    def __init__(self, in_channels: int, stages: list):
        super().__init__()
        layers = []
        for channels, stride in stages:
            kernel, padding = conv_geometry(stride)
            layers += [nn.Conv2d(in_channels, channels, kernel, stride, padding, bias=False),
                       nn.BatchNorm2d(channels), nn.GELU()]
            in_channels = channels
        self.layers = nn.Sequential(*layers)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` feature map -> ``(B, H*W, C)`` tokens in row-major order."""
    return x.flatten(2).transpose(1, 2)


class LearnedTokens(nn.Module):
    """A learned ``(count, dim)`` table: positional embeddings, modality embeddings, query tokens."""

    def __init__(self, count: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(count, dim))

    def forward(self) -> torch.Tensor:
        return self.weight


class Attention(nn.Module):
    """Multi-head attention of ``x`` (B, T, D) over ``source`` (B or 1, S, D); self-attention if
    ``source`` is None. ``source_index`` (B,) optionally picks, per query row, the row of
    ``source`` to attend to (training batches that mix clips), after the key/value projections so
    that they run once per clip rather than once per mask."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, heads, T, head_dim)
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None,
                source_index: torch.Tensor | None = None) -> torch.Tensor:
        source = x if source is None else source
        q = self._heads(self.query(x) * self.scale)
        k = self._heads(self.key(source))
        v = self._heads(self.value(source))
        if source_index is not None:
            k, v = k[source_index], v[source_index]
        weights = self.dropout(torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1))
        mixed = torch.matmul(weights, v)  # (B, heads, T, head_dim)
        return self.out(mixed.transpose(1, 2).flatten(2))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: self-attention then MLP (the context trunk)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Pre-norm block of the mask decoder: self-attention among one mask's query and mask tokens,
    cross-attention to the clip's context tokens, MLP (SAM's mask decoder, one-way)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_index: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.norm1(x)))
        x = x + self.dropout(self.cross_attn(self.norm2(x), context, context_index))
        return x + self.mlp(self.norm3(x))
