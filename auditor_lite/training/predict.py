"""Run a trained auditor over the test splits and write the evaluation's predictions JSONL.

For each (split, mode) present: image mode audits each expression's key-frame candidates; video
mode audits every annotated frame's candidates with that frame as the key frame. The model's
context includes the key frame, so the context is encoded once per (expression, audited frame):
all of an expression's frames go through ``encode_context`` as one batch, and its masks are
audited in chunks of ``batch_masks`` with ``clip_index`` pointing at their frame's context.
Inputs are prepared with :mod:`auditor_lite.preprocess`, exactly as the edge runtime does.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from auditor_lite.media import load_frames
from auditor_lite.data.reader import TEST_SPLITS, Benchmark
from auditor_lite.eval.predictions import Prediction, write_predictions
from auditor_lite.model import AuditorModel
from auditor_lite.preprocess import prepare_frames, prepare_key_frame
from auditor_lite.training.features import encode_texts, load_candidate_masks, load_clip_audio

SILENT_SUFFIX = "-silent-audio"
PROB_DECIMALS = 5


def _probs(logits: torch.Tensor, classes) -> list[dict[str, float]]:
    probs = torch.softmax(logits, dim=-1).numpy()
    return [{c: round(float(p), PROB_DECIMALS) for c, p in zip(classes, row)} for row in probs]


@torch.inference_mode()
def audit_record(model: AuditorModel, record, text_embedding: np.ndarray, silence_audio: bool,
                 batch_masks: int) -> list[tuple]:
    """``(candidate, iou, type_logits, action_logits)`` for every candidate of one record."""
    c = model.config
    frames_uint8 = load_frames(record.clip)
    audited = sorted({cand.frame for cand in record.candidates})
    if not audited:
        return []
    audio = np.zeros((1, c.clip_samples), np.float32) if silence_audio else load_clip_audio(record)[None]
    b = len(audited)
    frames = torch.from_numpy(prepare_frames(frames_uint8, c.frame_size)).expand(b, -1, -1, -1, -1)
    key_frame = torch.from_numpy(np.concatenate([prepare_key_frame(frames_uint8[f], c.key_size)
                                                 for f in audited]))
    context = model.encode_context(frames, key_frame, torch.from_numpy(audio).expand(b, -1),
                                   torch.from_numpy(text_embedding[None]).expand(b, -1))
    position = {f: i for i, f in enumerate(audited)}
    results = []
    for start in range(0, len(record.candidates), batch_masks):
        chunk = record.candidates[start:start + batch_masks]
        masks = torch.from_numpy(load_candidate_masks(chunk, c.key_size).astype(np.float32)).unsqueeze(1)
        clip_index = torch.tensor([position[cand.frame] for cand in chunk], dtype=torch.int64)
        out = model.audit_masks(context, masks, key_frame, clip_index=clip_index)
        for i, cand in enumerate(chunk):
            results.append((cand, float(out.iou[i]), out.type_logits[i], out.action_logits[i]))
    return results


def predict(model_dir, bench, out_file, splits=None, modes=None, silence_audio: bool = False,
            batch_masks: int = 64, method: str | None = None, threads: int = 2,
            progress: bool = True) -> dict:
    """Write predictions for every requested (split, mode) present; returns counts per pair."""
    if batch_masks < 1:
        raise ValueError(f"--batch-masks must be >= 1, got {batch_masks}")
    torch.set_num_threads(threads)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a model directory (no config.json)")
    model = AuditorModel.from_pretrained(model_dir).eval()
    name = (method or f"auditor-lite-{model.config.preset_name}") + (SILENT_SUFFIX if silence_audio else "")
    benchmark = Benchmark(bench)
    pairs = [(s, m) for s, m in benchmark.available() if s in TEST_SPLITS
             and (not splits or s in splits) and (not modes or m in modes)]
    if not pairs:
        raise FileNotFoundError(f"{bench}: no test split/mode matches (available: "
                                f"{', '.join(f'{s}/{m}' for s, m in benchmark.available())})")
    predictions: list[Prediction] = []
    counts: Counter = Counter()
    records = {pair: list(benchmark.records(*pair)) for pair in pairs}
    all_texts = [r.exp for pair in pairs for r in records[pair]]
    embedding = dict(zip(all_texts, encode_texts(all_texts, progress=False)))  # MiniLM loaded once
    for split, mode in pairs:
        for record in tqdm(records[(split, mode)], desc=f"predict {split}/{mode}", unit="expr",
                           file=sys.stderr, disable=not progress):
            text = embedding[record.exp]
            for cand, iou, type_logits, action_logits in audit_record(model, record, text, silence_audio,
                                                                      batch_masks):
                type_probs = _probs(type_logits[None], model.config.mask_types)[0]
                action_probs = _probs(action_logits[None], model.config.actions)[0]
                predictions.append(Prediction(
                    uid=record.uid, frame=cand.frame, cand_id=cand.cand_id,
                    iou=min(1.0, max(0.0, iou)),
                    mask_type=model.config.mask_types[int(type_logits.argmax())],
                    action=model.config.actions[int(action_logits.argmax())],
                    type_probs=type_probs, action_probs=action_probs,
                    method=name, mode=mode, split=split))
                counts[f"{split}/{mode}"] += 1
    write_predictions(out_file, predictions)
    return dict(counts)
