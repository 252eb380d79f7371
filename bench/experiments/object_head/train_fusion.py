"""Is stage A's fusion under-trained? Fine-tune only the expression side of the shipped grounder
(words, slots, both fusion layers, the two hops, the sound gate, the null head) on the clip
features cached by cache_feats.py, scored on the coarse 16 x 16 map, several epochs in the time a
full step-by-step training sees one. Step 0 validates the shipped weights on the same criterion."""
import sys, time, json, math, argparse, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
sys.path[:0] = [str(Path(__file__).resolve().parents[3]), str(Path(__file__).resolve().parent)]
from auditor_lite.training.grounding_train import load_grounder, referent_report, NULL_WEIGHT
from cached import load_cached

ap = argparse.ArgumentParser()
ap.add_argument('--data', default='runs/.grounding_cache/bench18k-train-train-547a50d10c0912fa')
ap.add_argument('--feats', default='runs/objproto/train')
ap.add_argument('--grounder', default='runs/grounder-cm2')
ap.add_argument('--out', default='runs/objproto/fusion1')
ap.add_argument('--minutes', type=float, default=40)
ap.add_argument('--batch', type=int, default=64)
ap.add_argument('--lr', type=float, default=5e-4)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--val-every', type=float, default=5)
ap.add_argument('--null-weight', type=float, default=NULL_WEIGHT)
args = ap.parse_args()
torch.set_num_threads(args.threads); torch.manual_seed(0); rng = np.random.default_rng(0)
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
C = load_cached(args.data, args.feats, Path(args.grounder) / 'heldout_vids.txt')
data, VT, ML, FR, ej, es = C.data, C.VT, C.ML, C.FR, C.ej, C.es
needs_audio, target, anchor, train_rows, val_rows = C.needs_audio, C.target, C.anchor, C.train_rows, C.val_rows
nulls, rep = C.nulls, C.null_repeat
pool = np.concatenate([train_rows] + [nulls] * (rep - 1))
model = load_grounder(args.grounder).train()
for p in model.parameters():
    p.requires_grad_(False)
TRAIN = ('word_in', 'slots', 'slot_attn', 'slot_norm', 'fuse1', 'fuse2', 'anchor_query', 'hop_in',
         'target_query', 'sound_gate', 'null_head')
params = [p for n, p in model.named_parameters() if n.split('.')[0] in TRAIN]
for p in params:
    p.requires_grad_(True)
print('train', len(train_rows), 'val', len(val_rows), 'trainable', sum(p.numel() for p in params), flush=True)
opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.02, betas=(0.9, 0.98))


def forward(rows, jidx):
    vt = VT[jidx].float(); ml = ML[jidx].float(); fr = FR[jidx].float()
    srt = np.argsort(rows); tk = np.empty((len(rows),) + data.tokens.shape[1:], np.float16); tk[srt] = data.tokens[rows[srt]]
    tk = torch.from_numpy(tk.astype(np.float32)); tm = torch.from_numpy(data.token_mask[rows].astype(np.float32))
    f = model.fuse({'visual_tokens': vt, 'motion_logits': ml}, tk, tm)
    attn = f['coarse'].softmax(-1)
    null_in = torch.cat([f['h2'].mean(1), torch.einsum('bn,bnd->bd', attn, f['h2']), f['slots'][:, 0]], -1)
    return f, model.null_head(null_in)[:, 0], fr


@torch.no_grad()
def validate():
    model.eval(); correct = []
    for i in range(0, len(val_rows), 128):
        r = val_rows[i:i + 128]
        f, null, fr = forward(r, ej[r])
        mass = torch.einsum('bn,bkn->bk', torch.sigmoid(f['coarse']), fr[:, 1:])
        pick = mass.masked_fill(fr[:, 1:].sum(-1) <= 0, -1).argmax(1).numpy()
        correct.append(np.where(target[r] >= 0, pick == target[r], null.numpy() > 0))
    model.train()
    c = np.concatenate(correct)
    return referent_report(data, val_rows, {'correct': c, 'chance': np.zeros(len(c))})


def log_val(step, t0, best):
    rep_ = validate()
    print('VAL', step, f'{(time.time() - t0) / 60:.1f}m', {k: round(v['accuracy'], 3) for k, v in rep_.items()}, flush=True)
    with open(out / 'log.jsonl', 'a') as fh:
        fh.write(json.dumps({'step': step, 'min': (time.time() - t0) / 60, 'val': rep_}) + '\n')
    acc = rep_['overall']['accuracy']
    if acc > best:
        torch.save({k: v for k, v in model.state_dict().items()}, out / 'grounder_finetuned.pt')
    return max(acc, best)


t0 = time.time(); budget = args.minutes * 60; step = 0; last = t0
best = log_val(0, t0, -1.0)
order = rng.permutation(len(pool)); p = 0
while time.time() - t0 < budget:
    frac = (time.time() - t0) / budget
    for g in opt.param_groups:
        g['lr'] = args.lr * min(1, (step + 1) / 100) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
    if p + args.batch > len(order):
        order = rng.permutation(len(pool)); p = 0
    rows = pool[order[p:p + args.batch]]; p += args.batch
    sil = (rng.random(len(rows)) < 0.1) & (es[rows] >= 0) & (target[rows] >= 0) & ~needs_audio[rows]
    f, null, fr = forward(rows, np.where(sil, es[rows], ej[rows]))
    t = torch.from_numpy(target[rows]); has = t >= 0
    prob = torch.sigmoid(f['coarse'])
    mass = torch.einsum('bn,bkn->bk', prob, fr)
    tm_ = mass.gather(1, (t + 1).clamp(min=0)[:, None])[:, 0]
    share = tm_ / (mass.sum(1) + 1e-6)
    L = {'referent': -(torch.log(share + 1e-4) * has).sum() / has.sum().clamp(min=1)}
    gt = fr.gather(1, (t + 1).clamp(min=0)[:, None, None].expand(-1, 1, fr.shape[-1]))[:, 0] * has[:, None]
    L['map'] = 2 * F.binary_cross_entropy_with_logits(f['coarse'], gt)
    a = torch.from_numpy(anchor[rows]); ha = a >= 0
    if ha.any():
        fa = fr.gather(1, (a + 1).clamp(min=0)[:, None, None].expand(-1, 1, fr.shape[-1]))[:, 0]
        pa = f['anchor_logits'].softmax(-1)
        L['anchor'] = -(torch.log((pa * fa).sum(1) + 1e-4) * ha).sum() / ha.sum()
    L['null'] = F.binary_cross_entropy_with_logits(null, (~has).float(), pos_weight=torch.tensor(args.null_weight))
    tot = sum(L.values()); opt.zero_grad(); tot.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); step += 1
    if step % 100 == 0:
        print(f'step {step} {(time.time() - t0) / 60:.1f}m ' + ' '.join(f'{k} {v.item():.3f}' for k, v in L.items()), flush=True)
    if time.time() - last > args.val_every * 60:
        last = time.time(); best = log_val(step, t0, best)
best = log_val(step, t0, best)
print('best', best)
