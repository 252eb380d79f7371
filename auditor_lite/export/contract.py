"""The input/output contract of each exported graph, written into ``manifest.json``.

Names are fixed by docs/artifact.md; ``N`` (candidate masks) is the one dynamic dimension of the
auditor graphs and ``T`` (tokens) that of the text encoder. Sizes come from the checkpoint's
AuditorConfig. Torch-free: it only reads config attributes.
"""

from __future__ import annotations

from auditor_lite.graph_io import GRAPH_INPUTS as GRAPH_IO_INPUTS
from auditor_lite.graph_io import GRAPH_OUTPUTS, LEGACY, MASK_DIM, TEXT_ENCODER_INPUTS, TOKEN_DIM  # noqa: F401
from auditor_lite.preprocess import TEXT_EMBEDDING_DIM

GRAPH_INPUTS = {**GRAPH_IO_INPUTS[LEGACY], "text_encoder": TEXT_ENCODER_INPUTS}
AUDITOR_GRAPHS = tuple(GRAPH_IO_INPUTS[LEGACY])


def _tensor(name, shape, dtype="float32", value_range=None, note=None) -> dict:
    entry = {"name": name, "shape": list(shape), "dtype": dtype}
    if value_range is not None:
        entry["range"] = list(value_range)
    if note:
        entry["note"] = note
    return entry


def _auditor_tensors(config) -> dict[str, dict]:
    """Every tensor of the auditor graphs, by name, sized for ``config`` (an AuditorConfig)."""
    c = config
    return {
        "frames": _tensor("frames", (1, c.num_frames, 3, c.frame_size, c.frame_size), value_range=(0, 1),
                          note="RGB / 255, area-resized (auditor_lite.preprocess.prepare_frames)"),
        "key_frame": _tensor("key_frame", (1, 3, c.key_size, c.key_size), value_range=(0, 1),
                             note="the audited frame, RGB / 255 (prepare_key_frame)"),
        "audio": _tensor("audio", (1, c.clip_samples), value_range=(-1, 1),
                         note=f"mono waveform at {c.sample_rate} Hz (prepare_audio)"),
        "text_embedding": _tensor("text_embedding", (1, c.text_dim), value_range=(-1, 1),
                                  note="L2-normalised MiniLM sentence embedding"),
        "masks": _tensor("masks", (MASK_DIM, 1, c.key_size, c.key_size), value_range=(0, 1),
                         note="binary candidate masks in {0, 1} (prepare_masks)"),
        "context": _tensor("context", (1, c.context_tokens, c.d_model),
                           note="clip context tokens from the context graph"),
        "iou": _tensor("iou", (MASK_DIM,), value_range=(0, 1), note="estimated IoU per mask"),
        "type_logits": _tensor("type_logits", (MASK_DIM, len(c.mask_types)),
                               note="logits over " + ", ".join(c.mask_types)),
        "action_logits": _tensor("action_logits", (MASK_DIM, len(c.actions)),
                                 note="logits over " + ", ".join(c.actions)),
    }


def auditor_contract(config, graph: str) -> dict:
    """``{"inputs": [...], "outputs": [...]}`` of ``auditor``, ``context`` or ``masks``."""
    if graph not in AUDITOR_GRAPHS:
        raise ValueError(f"unknown auditor graph {graph!r}; known: {', '.join(AUDITOR_GRAPHS)}")
    tensors = _auditor_tensors(config)
    return {"inputs": [tensors[n] for n in GRAPH_INPUTS[graph]],
            "outputs": [tensors[n] for n in GRAPH_OUTPUTS[graph]]}


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
