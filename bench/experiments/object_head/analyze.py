"""Referent accuracy on the held-out expressions: the head, the frozen grounder alone (its coarse map), and the best query for the target (an oracle choice): is object discovery or the choice the limit?"""
import sys, json, numpy as np, torch
from pathlib import Path
HEAD = sys.argv[1] if len(sys.argv) > 1 else 'runs/objproto/run2/head.pt'
sys.argv = ['x', '--prior', '--minutes', '0', '--out', 'runs/objproto/an', '--threads', '1']
src = open(Path(__file__).with_name('train_obj.py')).read().split("t0 = time.time(); budget")[0]
exec(src)
model.load_state_dict(torch.load(HEAD)); model.eval()
rows = val_rows; j = ej[rows]
res = {'oracle': [], 'prior': [], 'model': [], 'iou': []}
with torch.no_grad():
    for i in range(0, len(rows), 128):
        r = rows[i:i+128]; jj = j[i:i+128]
        vt, ml, fr, tk, tm = batch(r, jj)
        objs = model.objects(vt, ml); pr = prior_of(vt, ml, tk, tm); ch = model.choose(objs, tk, tm, pr)
        w = objs['weights']
        # old model's own pick by coarse mass over GT objects
        oldp = pr['coarse'].softmax(-1)
        mass_old = torch.einsum('bn,bkn->bk', oldp, fr[:, 1:])
        vis = fr[:, 1:].sum(-1) > 0
        t = torch.from_numpy(target[r])
        pick_old = mass_old.masked_fill(~vis, -1).argmax(1)
        # oracle: the query best matching the target object
        inter = torch.einsum('bkn,bgn->bkg', w, fr[:, 1:]); uni = w.sum(-1)[:, :, None] + fr[:, 1:].sum(-1)[:, None] - inter
        iou = inter / uni.clamp(min=1e-6)
        for b in range(len(r)):
            if t[b] < 0: continue
            best = iou[b, :, t[b]].max().item(); res['iou'].append(best)
            k = iou[b, :, t[b]].argmax()
            mass = (w[b, k][None] * fr[b, 1:]).sum(-1).masked_fill(~vis[b], -1)
            res['oracle'].append(int(mass.argmax() == t[b]))
            res['prior'].append(int(pick_old[b] == t[b]))
            prob, _ = model.referent_map({k2: v[b:b+1] for k2, v in objs.items()}, {k2: v[b:b+1] for k2, v in ch.items()})
            m2 = (prob.flatten(1) * fr[b:b+1, 1:]).sum(-1).masked_fill(~vis[b:b+1], -1)
            res['model'].append(int(m2.argmax() == t[b]))
print({k: (round(float(np.mean(v)), 3), len(v)) for k, v in res.items()})
print('iou quantiles', np.quantile(res['iou'], [0.1, 0.25, 0.5, 0.75]))
