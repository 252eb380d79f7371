"""Train the object-centric head (model.py) on clip features cached by cache_feats.py (see README.md)."""
import sys, time, json, math, argparse, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
sys.path[:0] = [str(Path(__file__).resolve().parents[3]), str(Path(__file__).resolve().parent)]
from scipy.optimize import linear_sum_assignment
from auditor_lite.training.grounding_train import name_vectors, referent_report
from auditor_lite.training.grounding_batches import silenced_positives
from model import ObjectHead, ObjectHeadConfig
from cached import load_cached

ap = argparse.ArgumentParser()
ap.add_argument('--data', default='runs/.grounding_cache/bench18k-train-train-547a50d10c0912fa')
ap.add_argument('--feats', default='runs/objproto/train')
ap.add_argument('--heldout', default='runs/grounder-cm2/heldout_vids.txt')
ap.add_argument('--out', default='runs/objproto/run1')
ap.add_argument('--minutes', type=float, default=20)
ap.add_argument('--batch', type=int, default=32)
ap.add_argument('--lr', type=float, default=1e-3)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--val-every', type=float, default=4)
ap.add_argument('--limit-jobs', type=int, default=0)
ap.add_argument('--prior', action='store_true')
ap.add_argument('--init', default='')
args = ap.parse_args()
torch.set_num_threads(args.threads); torch.manual_seed(0); rng = np.random.default_rng(0)
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
C = load_cached(args.data, args.feats, args.heldout, args.limit_jobs)
data, VT, ML, FR, ej, es = C.data, C.VT, C.ML, C.FR, C.ej, C.es
needs_audio, target, anchor, train_rows, val_rows = C.needs_audio, C.target, C.anchor, C.train_rows, C.val_rows
nulls, rep, n_done = C.nulls, C.null_repeat, len(C.jobs)
tok_all = data.tokens; tmask_all = data.token_mask
print('train', len(train_rows), 'val', len(val_rows), 'jobs', n_done, flush=True)
from collections import defaultdict
_g = defaultdict(list)
for e in train_rows: _g[int(ej[e])].append(int(e))
groups = [np.array(v) for v in _g.values()]
gpool = groups + [np.array([e]) for e in nulls] * (rep - 1)
pool = gpool
names = name_vectors(data.categories)
cfg = ObjectHeadConfig(prior_dim=96 if args.prior else 0)
from auditor_lite.training.grounding_train import load_grounder
OLD = load_grounder('runs/grounder-cm2').eval()
for _p in OLD.parameters(): _p.requires_grad_(False)
def prior_of(objs_vt, objs_ml, tk, tm):
    if not args.prior: return None
    with torch.no_grad():
        f = OLD.fuse({'visual_tokens': objs_vt, 'motion_logits': objs_ml}, tk, tm)
    return {'h2': f['h2'], 'coarse': f['coarse']}
model = ObjectHead(cfg)
if args.init:
    print('init', model.load_state_dict(torch.load(args.init), strict=False), flush=True)
print('params', sum(p.numel() for n, p in model.named_parameters() if not n.startswith('aux_')), flush=True)
opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.02, betas=(0.9, 0.98))
K = cfg.queries

def batch(rows, jidx):
    vt = VT[jidx].float(); ml = ML[jidx].float(); fr = FR[jidx].float()
    srt = np.argsort(rows); tk = np.empty((len(rows),) + tok_all.shape[1:], np.float16); tk[srt] = tok_all[rows[srt]]
    tk = torch.from_numpy(tk.astype(np.float32)); tm = torch.from_numpy(tmask_all[rows].astype(np.float32))
    return vt, ml, fr, tk, tm

def match(mask_logits, objness, fr):
    """per sample: dict gt object g -> query k"""
    ml = mask_logits.detach(); p = torch.sigmoid(ml); ob = torch.sigmoid(objness.detach())
    res = []
    for i in range(ml.shape[0]):
        gts = [g for g in range(6) if fr[i, g + 1].sum() >= 0.5]
        if not gts:
            res.append({}); continue
        t = fr[i, [g + 1 for g in gts]]                     # (G, N)
        bce = (F.softplus(ml[i])[:, None] - ml[i][:, None] * t[None]).mean(-1)   # (K, G)
        dice = 1 - (2 * p[i] @ t.T + 1) / (p[i].sum(-1)[:, None] + t.sum(-1)[None] + 1)
        cost = (bce + dice - 0.5 * ob[i][:, None]).numpy()
        r, c = linear_sum_assignment(cost)
        res.append({gts[cc]: int(rr) for rr, cc in zip(r, c)})
    return res

def losses(model, rows, jobs_u, inv, silent_mask):
    """jobs_u: unique job ids of the step; inv: each row's index into jobs_u"""
    vt, ml, fr_u, tk, tm = batch(rows, jobs_u)
    objs_u = model.objects(vt, ml)
    m_u = match(objs_u['mask_logits'], objs_u['objectness'], fr_u)
    ti = torch.from_numpy(inv)
    objs = {k: v.index_select(0, ti) for k, v in objs_u.items()}
    fr = fr_u.index_select(0, ti); m = [m_u[j] for j in inv]
    ti_ = torch.from_numpy(inv)
    ch = model.choose(objs, tk, tm, prior_of(vt.index_select(0, ti_), ml.index_select(0, ti_), tk, tm))
    B = len(rows); L = {}
    qi, gi, bi = [], [], []
    for i, d in enumerate(m):
        for g, k in d.items():
            bi.append(i); qi.append(k); gi.append(g)
    bi, qi, gi = map(torch.tensor, (bi, qi, gi))
    ub, uq, ug = [], [], []
    for j, d in enumerate(m_u):
        for g, k in d.items():
            ub.append(j); uq.append(k); ug.append(g)
    ub, uq, ug = map(torch.tensor, (ub, uq, ug))
    lg = objs_u['mask_logits'][ub, uq]; tg = fr_u[ub, ug + 1]
    pr = torch.sigmoid(lg)
    L['mask'] = F.binary_cross_entropy_with_logits(lg, tg) * 4 + \
        (1 - (2 * (pr * tg).sum(-1) + 1) / (pr.sum(-1) + tg.sum(-1) + 1)).mean()
    obj_t = torch.zeros(len(m_u), K); obj_t[ub, uq] = 1
    L['objectness'] = F.binary_cross_entropy_with_logits(objs_u['objectness'], obj_t)
    # target over K + null, multi-positive for silenced needs_audio rows
    pos = torch.zeros(B, K + 1, dtype=torch.bool); ok = torch.zeros(B, dtype=torch.bool)
    unheard = silent_mask & needs_audio[rows]
    sp = silenced_positives(data, rows, unheard, 6).numpy() if unheard.any() else None
    for i, e in enumerate(rows):
        t = target[e]
        if t < 0:
            pos[i, K] = True; ok[i] = True; continue
        gs = [t] if sp is None or not unheard[i] else [g for g in range(6) if sp[i, g + 1] > 0]
        for g in gs:
            if g in m[i]:
                pos[i, m[i][g]] = True; ok[i] = True
    tl = ch['target']
    ce = torch.logsumexp(tl, -1) - torch.logsumexp(tl.masked_fill(~pos, -1e9), -1)
    L['target'] = (ce * ok).sum() / ok.sum().clamp(min=1) * 2
    apos = torch.full((B,), -1, dtype=torch.long)
    for i, e in enumerate(rows):
        a = anchor[e]
        if a >= 0 and a in m[i]:
            apos[i] = m[i][a]
    if (apos >= 0).any():
        L['anchor'] = F.cross_entropy(ch['anchor'][apos >= 0], apos[apos >= 0])
    desc = objs['descriptor'][bi, qi]
    cats = torch.from_numpy(data.category[data.clip[rows[bi.numpy()]], gi.numpy()].astype(np.int64))
    okc = cats >= 0
    if okc.any():
        emb = F.normalize(model.aux_category(desc[okc]), dim=-1)
        L['category'] = 0.5 * F.cross_entropy(emb @ names.T / 0.1, cats[okc])
    snd = torch.from_numpy(data.sounding[data.clip[rows[bi.numpy()]], gi.numpy()].astype(np.float32))
    oks = (snd[:, 0] >= 0) & ~torch.from_numpy(silent_mask[bi.numpy()]) & torch.from_numpy(target[rows[bi.numpy()]] >= 0)
    if oks.any():
        L['sounding'] = 0.5 * F.binary_cross_entropy_with_logits(model.aux_sounding(desc[oks]), snd[oks].clamp(min=0))
    return L

@torch.no_grad()
def validate(rows, jsel):
    model.eval(); correct = []; picks = []
    for i in range(0, len(rows), 128):
        r = rows[i:i + 128]; j = jsel[i:i + 128]
        vt, ml, fr, tk, tm = batch(r, j)
        objs = model.objects(vt, ml); ch = model.choose(objs, tk, tm, prior_of(vt, ml, tk, tm))
        prob, null = model.referent_map(objs, ch)
        mass = torch.einsum('bn,bkn->bk', prob.flatten(1), fr[:, 1:])
        vis = fr[:, 1:].sum(-1) > 0
        pick = mass.masked_fill(~vis, -1).argmax(1).numpy()
        t = target[r]
        correct.append(np.where(t >= 0, pick == t, null.numpy() > 0)); picks.append(pick)
    model.train()
    c = np.concatenate(correct)
    pred = {'correct': c, 'chance': np.zeros(len(c))}
    return referent_report(data, rows, pred)

t0 = time.time(); budget = args.minutes * 60; step = 0; best = -1; last = t0; order = rng.permutation(len(pool)); p = 0
log = open(out / 'log.jsonl', 'a')
while time.time() - t0 < budget:
    frac = (time.time() - t0) / budget
    for g in opt.param_groups:
        g['lr'] = args.lr * min(1, (step + 1) / 200) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
    if p + args.batch > len(order):
        order = rng.permutation(len(pool)); p = 0
    gsel = [gpool[i] for i in order[p:p + args.batch]]; p += args.batch
    rows_l, jl, sl = [], [], []
    for g in gsel:
        pick = g if len(g) <= 4 else rng.choice(g, 4, replace=False)
        s_ = es[pick[0]] >= 0 and target[pick[0]] >= 0 and rng.random() < 0.5
        rows_l.append(pick); jl.append(es[pick[0]] if s_ else ej[pick[0]]); sl.append(np.full(len(pick), s_))
    rows = np.concatenate(rows_l); sil = np.concatenate(sl)
    inv = np.repeat(np.arange(len(gsel)), [len(x) for x in rows_l])
    L = losses(model, rows, np.array(jl), inv, sil)
    tot = sum(L.values()); opt.zero_grad(); tot.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); step += 1
    if step % 50 == 0:
        print(f'step {step} {(time.time()-t0)/60:.1f}m ' + ' '.join(f'{k} {v.item():.3f}' for k, v in L.items()), flush=True)
    if time.time() - last > args.val_every * 60 or time.time() - t0 >= budget:
        last = time.time()
        rep_ = validate(val_rows, ej[val_rows])
        print('VAL', step, {k: round(v['accuracy'], 3) for k, v in rep_.items()}, flush=True)
        log.write(json.dumps({'step': step, 'min': (time.time() - t0) / 60, 'val': rep_}) + '\n'); log.flush()
        if rep_['overall']['accuracy'] > best:
            best = rep_['overall']['accuracy']; torch.save(model.state_dict(), out / 'head.pt')
rep_ = validate(val_rows, ej[val_rows])
print('FINAL', step, {k: round(v['accuracy'], 3) for k, v in rep_.items()}, flush=True)
if rep_['overall']['accuracy'] > best: torch.save(model.state_dict(), out / 'head.pt')
