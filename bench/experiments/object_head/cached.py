"""The training set's decoded arrays joined with the clip-feature cache of cache_feats.py, and the
rows that train_obj.py, train_fusion.py and analyze.py train and validate on: one definition, so
that their held-out numbers compare."""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from auditor_lite.training.grounding_data import GroundingSet

VISIBLE_TOKENS = 0.3     # a target counts as visible on the key frame from this much token coverage


def load_cached(data_dir, feats_dir, heldout_file, limit_jobs=0):
    root, feats = Path(data_dir), Path(feats_dir)
    data = GroundingSet(root, {p.stem: np.load(p, mmap_mode='r') for p in root.glob('*.npy')},
                        json.loads((root / 'meta.json').read_text()))
    jobs = np.load(feats / 'jobs.npy')
    if limit_jobs:
        jobs = jobs[:limit_jobs]

    def cached(name):
        return torch.from_numpy(np.load(feats / name, mmap_mode='r')[:len(jobs)].copy())

    job_of, silent_of = {}, {}
    for j, (c, k, m, s) in enumerate(jobs.tolist()):
        (silent_of if s else job_of)[(c, k, m)] = j
    clip, kfid, mel = data.clip[:], data.kfid[:], data.mel_row[:]
    keys = [(int(clip[e]), int(kfid[e]), int(mel[e])) for e in range(len(clip))]
    ej = np.array([job_of.get(k, -1) for k in keys])       # the entry of each expression's clip features
    es = np.array([silent_of.get(k, -1) for k in keys])    # ... and of its silenced copy, if cached
    held_v = set(Path(heldout_file).read_text().split())
    held = np.array([v in held_v for v in data.meta['vids']])[clip]
    extra = np.array(data.meta.get('extra', [False] * len(clip)), bool)
    target = data.target[:].astype(np.int64)
    FR = cached('frac16.npy')
    area = FR[np.maximum(ej, 0)].float().sum(-1).numpy()   # (E, 1 + objects): token coverage
    vis_t = np.where(target >= 0, area[np.arange(len(clip)), np.clip(target + 1, 0, 6)] >= VISIBLE_TOKENS, True)
    train_rows = np.nonzero(~held & (ej >= 0) & vis_t)[0]
    own = (~extra[train_rows]).sum()
    return SimpleNamespace(
        data=data, jobs=jobs, VT=cached('tokens.npy'), ML=cached('motion_logits.npy'), FR=FR, ej=ej, es=es,
        held=held, extra=extra, needs_audio=np.array(data.meta['needs_audio'], bool), target=target,
        anchor=data.anchor[:].astype(np.int64), train_rows=train_rows,
        val_rows=np.nonzero(held & ~extra & (ej >= 0))[0],
        # the benchmark's null share: null rows repeat as often as a clip has expressions
        null_repeat=max(1, round(len(train_rows) / max(own, 1))), nulls=train_rows[target[train_rows] < 0])
