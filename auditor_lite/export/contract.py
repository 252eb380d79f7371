"""The input/output contract of each exported graph, written into ``manifest.json``.

Names are fixed by docs/artifact.md and :mod:`auditor_lite.graph_io`; ``N`` (candidate masks) is
the one dynamic dimension of the auditor graphs and ``T`` (tokens) that of the text encoder. The
grounded graphs' contract is :func:`auditor_lite.export.grounded.grounded_contract`; this module
holds the tensor entry and the text encoder's. Torch-free.
"""

from __future__ import annotations

from auditor_lite.graph_io import MASK_DIM, TOKEN_DIM  # noqa: F401  (re-exported)
from auditor_lite.preprocess import TEXT_EMBEDDING_DIM


def _tensor(name, shape, dtype="float32", value_range=None, note=None) -> dict:
    entry = {"name": name, "shape": list(shape), "dtype": dtype}
    if value_range is not None:
        entry["range"] = list(value_range)
    if note:
        entry["note"] = note
    return entry


def text_encoder_contract(vocab_size: int, text_dim: int = TEXT_EMBEDDING_DIM) -> dict:
    """The MiniLM graph's contract: token ids and mask (1, T) int64 -> embedding (1, text_dim)."""
    return {
        "inputs": [_tensor("input_ids", (1, TOKEN_DIM), dtype="int64", value_range=(0, vocab_size - 1),
                           note="ids from tokenizer.json: [CLS] ... [SEP], at most 256 tokens"),
                   _tensor("attention_mask", (1, TOKEN_DIM), dtype="int64", value_range=(0, 1))],
        "outputs": [_tensor("text_embedding", (1, text_dim), value_range=(-1, 1),
                            note="L2-normalised sentence embedding (mean-pooled MiniLM)"),
                    _tensor("token_states", (1, TOKEN_DIM, text_dim),
                            note="MiniLM's last hidden state per token (what the grounding model reads)")],
    }
