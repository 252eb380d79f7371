"""Expression -> 384-d sentence embedding, with the ``tokenizers`` library and the text graph.

The embedding is what training used (MiniLM mean-pooled, L2-normalised; see
``auditor_lite/model/text.py``); the text graph computes it from ``input_ids`` and
``attention_mask``. Text longer than :data:`MAX_TOKENS` tokens is cut there, as sentence-transformers
does, with a warning. A clip is usually audited many times with one expression (13 masks per
frame, 10 frames in video mode), so embeddings are cached per expression string (LRU, thread-safe).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from auditor_lite.preprocess import TEXT_EMBEDDING_DIM, prepare_text_embedding
from auditor_lite.runtime.inputs import check_expression

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


class LRUCache:
    """A small thread-safe least-recently-used map; ``hits`` / ``misses`` count lookups."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"LRUCache: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class TextEmbedder:
    """``embed(expression)`` -> float32 ``(384,)``; ``graph`` is a runner of the text_encoder graph."""

    def __init__(self, tokenizer, graph, cache_size: int = 1024):
        """``tokenizer``: a loaded ``tokenizers.Tokenizer`` (:func:`model_dir.load_tokenizer`) or the
        path of a ``tokenizer.json``."""
        if not hasattr(tokenizer, "encode"):
            from auditor_lite.runtime.model_dir import load_tokenizer

            tokenizer = load_tokenizer(Path(tokenizer))
        self.tokenizer = tokenizer
        self.graph = graph
        self.cache = LRUCache(cache_size)
        self.encoder_calls = 0

    def embed(self, expression: str) -> np.ndarray:
        text = check_expression(expression)
        cached = self.cache.get(text)
        if cached is not None:
            return cached
        encoding = self.tokenizer.encode(text)
        if encoding.overflowing:
            warnings.warn(f"expression: longer than {MAX_TOKENS} tokens, cut to the first {MAX_TOKENS} "
                          "(as the text encoder was trained)", stacklevel=2)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        (embedding,) = self.graph.run({"input_ids": ids, "attention_mask": mask}, ["text_embedding"])
        self.encoder_calls += 1
        vector = prepare_text_embedding(embedding)[0]  # checks the 384 finite values
        vector.setflags(write=False)  # shared by every caller through the cache
        self.cache.put(text, vector)
        return vector

    def token_states(self, expression: str, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens (1, max_tokens, 384), token_mask (1, max_tokens))`` float32 for the grounded
        model: MiniLM's last hidden state per token, zero-padded. Longer text keeps its first
        ``max_tokens - 2`` word pieces between [CLS] and [SEP], as the training cache cut it."""
        text = check_expression(expression)
        key = ("tokens", text, max_tokens)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        encoding = self.tokenizer.encode(text)
        ids = list(encoding.ids)
        if len(ids) > max_tokens:
            ids = ids[:max_tokens - 1] + ids[-1:]        # keep [SEP]
        feed = {"input_ids": np.asarray([ids], dtype=np.int64),
                "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
        (states,) = self.graph.run(feed, ["token_states"])
        self.encoder_calls += 1
        if states.shape != (1, len(ids), TEXT_EMBEDDING_DIM) or not np.all(np.isfinite(states)):
            raise ValueError(f"text encoder: token_states of shape {states.shape}, expected "
                             f"(1, {len(ids)}, {TEXT_EMBEDDING_DIM}) and finite")
        tokens = np.zeros((1, max_tokens, TEXT_EMBEDDING_DIM), np.float32)
        tokens[0, :len(ids)] = states[0]
        mask = np.zeros((1, max_tokens), np.float32)
        mask[0, :len(ids)] = 1.0
        tokens.setflags(write=False)
        mask.setflags(write=False)
        self.cache.put(key, (tokens, mask))
        return tokens, mask
