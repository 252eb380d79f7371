"""Training batches for the grounding model (stage A).

:func:`batch_tensors`: one clip per expression, as the runtime sees them (validation, diagnostics).

:func:`group_batch`: several expressions of the same clip and audio share one encoding of it. The
generator writes about five expressions per clip (one in the benchmark, the others about other
objects of the same scene), and three quarters of a step's compute does not read the expression
(the CNNs and the sound tracker), so a step sees two to three times the expressions for the same
time; and expressions that mean different objects of one scene, side by side in one step, leave the
model no way to guess the referent from the picture alone.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from auditor_lite.training.grounding_data import GroundingSet

MIN_TARGET_SHARE = 0.004


def batch_tensors(data: GroundingSet, rows: np.ndarray, rng: np.random.Generator | None,
                  *, augment: bool, silence_audio: bool = False, text_rows: np.ndarray | None = None,
                  key_frames: np.ndarray | None = None):
    """Tensors for expressions ``rows``; ``rng`` None means the benchmark's key frames (or
    ``key_frames``, chosen by the caller)."""
    clips = data.clip[rows].astype(np.int64)
    order = np.argsort(clips, kind="stable")                 # sorted reads from the memmap
    frames = np.empty((len(rows),) + data.frames.shape[1:], np.uint8)
    instance = np.empty((len(rows),) + data.instance.shape[1:], np.uint8)
    frames[order] = data.frames[clips[order]]
    instance[order] = data.instance[clips[order]]
    targets = data.target[rows].astype(np.int64)
    kfid = data.kfid[rows].astype(np.int64)
    if key_frames is not None:
        kfid = np.asarray(key_frames, np.int64).copy()
    elif rng is not None:
        size = instance.shape[-1] ** 2
        for i in range(len(rows)):
            if rng.random() < 0.5:
                continue
            if targets[i] >= 0:
                share = (instance[i] == targets[i] + 1).reshape(10, -1).sum(1) / size
                ok = np.nonzero(share >= MIN_TARGET_SHARE)[0]
            else:
                ok = np.arange(10)
            if len(ok):
                kfid[i] = int(ok[rng.integers(len(ok))])
    x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float()
    if augment and rng is not None:               # same photometric change for the whole clip
        gain = torch.from_numpy(rng.uniform(0.85, 1.15, (len(rows), 1, 1, 1, 1))).float()
        shift = torch.from_numpy(rng.uniform(-20, 20, (len(rows), 1, 1, 1, 1))).float()
        x = ((x - 128) * gain + 128 + shift).clamp(0, 255)
    mel = torch.from_numpy(data.log_mel[data.mel_row[rows]].astype(np.float32))
    if silence_audio:
        mel = torch.full_like(mel, -100.0)
    elif augment and rng is not None:
        mel = mel + torch.from_numpy(rng.uniform(-4, 4, (len(rows), 1, 1))).float()
    trow = rows if text_rows is None else text_rows
    extra = {}
    if "motion" in data.arrays:               # the same for every key frame of a clip
        motion = np.empty((len(rows),) + data.motion.shape[1:], np.float16)
        motion[order] = data.motion[clips[order]]
        motion = torch.from_numpy(motion.astype(np.float32))
        if augment and rng is not None:       # the match residual scales with the contrast
            motion[..., 1] *= gain.view(-1, 1, 1)
        extra["cell_motion"] = motion
    inst_key = torch.from_numpy(instance[np.arange(len(rows)), kfid].astype(np.int64))
    return {"frames": x, "key_index": torch.from_numpy(kfid), "log_mel": mel,
            "tokens": torch.from_numpy(data.tokens[trow].astype(np.float32)),
            "token_mask": torch.from_numpy(data.token_mask[trow].astype(np.float32)),
            "instance": inst_key, "target": torch.from_numpy(targets),
            "anchor": torch.from_numpy(data.anchor[rows].astype(np.int64)),
            "sounding": torch.from_numpy(data.sounding[clips].astype(np.float32)),
            "category": torch.from_numpy(data.category[clips].astype(np.int64)),
            "num_objects": torch.from_numpy(data.num_objects[clips].astype(np.int64)), **extra}


def model_inputs(batch: dict) -> tuple:
    """The grounder's positional inputs from a batch_tensors dict."""
    return (batch["frames"], batch["key_index"], batch["log_mel"], batch["tokens"], batch["token_mask"],
            batch.get("cell_motion"))


def clip_groups(data: GroundingSet, rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` grouped by (clip, audio): the expressions that one encoding of a clip serves. Null
    expressions are heard with another clip's audio, so they mostly form groups of one."""
    by_key = defaultdict(list)
    for r in rows:
        by_key[(int(data.clip[r]), int(data.mel_row[r]))].append(int(r))
    return [np.array(v) for v in by_key.values()]


def group_batch(data: GroundingSet, groups: list[np.ndarray], rng: np.random.Generator, *,
                per_group: int, augment: bool = True, audio_dropout: float = 0.0,
                needs_audio: np.ndarray | None = None, max_objects: int = 6) -> tuple[dict, np.ndarray]:
    """A training batch of up to ``per_group`` expressions from each group, one key frame per
    group (half the time the benchmark's, otherwise a frame where every chosen target covers at
    least MIN_TARGET_SHARE; expressions whose target is not on the chosen frame are left out).
    Returns the batch (per-clip tensors plus ``clip_index``, per-expression ones gathered) and the
    expression rows, in batch order. A group muted by ``audio_dropout`` hears silence."""
    size = data.instance.shape[-1] ** 2
    chosen, keys = [], []
    for g in groups:
        pick = g if len(g) <= per_group else rng.choice(g, per_group, replace=False)
        clip = int(data.clip[pick[0]])
        share = (data.instance[clip][None] == (data.target[pick][:, None, None, None] + 1)
                 ).reshape(len(pick), 10, -1).sum(-1) / size                    # (E, 10)
        share[data.target[pick] < 0] = 1.0                                      # null: any frame
        kfid = int(data.kfid[pick[0]])
        if rng.random() >= 0.5:
            ok = np.nonzero((share >= MIN_TARGET_SHARE).all(0))[0]
            if len(ok):
                kfid = int(ok[rng.integers(len(ok))])
        keep = (share[:, kfid] > 0) | (data.target[pick] < 0)
        chosen.append(pick[keep] if keep.any() else pick[:1])
        keys.append(kfid)
    reps = np.array([c[0] for c in chosen])
    batch = batch_tensors(data, reps, rng, augment=augment, key_frames=np.array(keys))
    rows = np.concatenate(chosen)
    index = torch.from_numpy(np.repeat(np.arange(len(chosen)), [len(c) for c in chosen]))
    mute = (rng.random(len(chosen)) < audio_dropout) & (data.target[reps] >= 0)
    if mute.any():
        batch["log_mel"][torch.from_numpy(mute)] = -100.0
    for name in ("instance", "sounding", "category", "num_objects"):
        batch[name] = batch[name].index_select(0, index)
    muted = mute[index.numpy()]
    batch["sounding"][torch.from_numpy(muted)] = 0.0                 # silence: nothing is heard sounding
    unheard = muted & (needs_audio[rows] if needs_audio is not None else False)
    batch["positives"] = silenced_positives(data, rows, np.asarray(unheard, bool), max_objects)
    batch["tokens"] = torch.from_numpy(data.tokens[rows].astype(np.float32))
    batch["token_mask"] = torch.from_numpy(data.token_mask[rows].astype(np.float32))
    batch["target"] = torch.from_numpy(data.target[rows].astype(np.int64))
    batch["anchor"] = torch.from_numpy(data.anchor[rows].astype(np.int64))
    batch["clip_index"] = index
    return batch, rows


def silenced_positives(data: GroundingSet, rows: np.ndarray, unheard: np.ndarray,
                       max_objects: int) -> torch.Tensor:
    """(B, K + 1) referent sets; for an expression that needs the audio but hears silence, every
    object it could still mean: those of the target's category if the expression names it, else
    all of the scene's objects. Trained so, the model cannot pick "the one that is playing" from
    the picture alone, and silencing the audio costs it exactly the expressions that need it."""
    positives = np.zeros((len(rows), max_objects + 1), np.float32)
    for i, e in enumerate(rows):
        target = int(data.target[e])
        positives[i, target + 1] = 1.0
        if not unheard[i]:
            continue
        clip = int(data.clip[e])
        cats = data.category[clip, :max_objects]
        count = int(data.num_objects[clip])
        name = data.categories[cats[target]].replace("_", " ") if cats[target] >= 0 else None
        text = data.meta["expressions"][e].lower()
        for k in range(min(count, max_objects)):
            if name is None or name not in text or cats[k] == cats[target]:
                positives[i, k + 1] = 1.0
    return torch.from_numpy(positives)
