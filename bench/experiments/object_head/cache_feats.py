"""Cache frozen stage-A clip features (grounder-cm2 encode_clip) per (clip, kfid, mel_row)."""
import sys, time, numpy as np, torch
from pathlib import Path
sys.path[:0] = [str(Path(__file__).resolve().parents[3]), str(Path(__file__).resolve().parent)]
from auditor_lite.training.grounding_data import GroundingSet
from auditor_lite.training.grounding_train import load_grounder, object_fractions, hash_unit
from auditor_lite.training.grounding_batches import batch_tensors
import json
from pathlib import Path
torch.set_num_threads(2)
root = Path(sys.argv[1]); out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
silent_share = float(sys.argv[3]) if len(sys.argv) > 3 else 0.15
arrays = {p.stem: np.load(p, mmap_mode='r') for p in root.glob('*.npy')}
meta = json.loads((root / 'meta.json').read_text())
data = GroundingSet(root, arrays, meta)
model = load_grounder('runs/grounder-cm2')
clip, kfid, mel = data.clip[:], data.kfid[:], data.mel_row[:]
keys = sorted(set(zip(clip.tolist(), kfid.tolist(), mel.tolist())))
rng = np.random.default_rng(0)
silent = rng.random(len(keys)) < silent_share
# silent copies of some pairs (target expressions only are trained on them)
jobs = [(c, k, m, False) for c, k, m in keys] + [(c, k, m, True) for (c, k, m), s in zip(keys, silent) if s]
rep = {}
for e in range(len(clip)):
    rep.setdefault((int(clip[e]), int(kfid[e]), int(mel[e])), e)
N = len(jobs); print('pairs', len(keys), 'jobs', N, flush=True)
vt = np.lib.format.open_memmap(out / 'tokens.npy', 'w+', np.float16, (N, 256, 96))
ml = np.lib.format.open_memmap(out / 'motion_logits.npy', 'w+', np.float16, (N, 256, 10))
fr = np.lib.format.open_memmap(out / 'frac16.npy', 'w+', np.float16, (N, 7, 256))
t0 = time.time(); B = 32
with torch.no_grad():
    for i in range(0, N, B):
        js = jobs[i:i + B]
        for sil in (False, True):
            idx = [j for j, x in enumerate(js) if x[3] == sil]
            if not idx: continue
            rows = np.array([rep[js[j][:3]] for j in idx])
            b = batch_tensors(data, rows, None, augment=False, silence_audio=sil)
            c = model.encode_clip(b['frames'], b['key_index'], b['log_mel'], b.get('cell_motion'))
            sl = [i + j for j in idx]
            vt[sl] = c['visual_tokens'].numpy().astype(np.float16)
            ml[sl] = c['motion_logits'].numpy().astype(np.float16)
            fr[sl] = object_fractions(b['instance'], 6, 8).flatten(2).numpy().astype(np.float16)
        if i % (B * 20) == 0:
            print(i, N, f'{time.time() - t0:.0f}s', flush=True)
np.save(out / 'jobs.npy', np.array([(c, k, m, int(s)) for c, k, m, s in jobs], np.int64))
vt.flush(); ml.flush(); fr.flush()
print('done', time.time() - t0, flush=True)
