"""Conformal interval coverage and width per split and per true mask type, and full_neg recall, of a
predictions file on runs/eval-nosc: python conformal_report.py PRED.jsonl"""
import json, sys, collections, numpy as np
from auditor_lite.data.reader import Benchmark
b = Benchmark('runs/eval-nosc')
truth = {}
for split in ('test_s', 'test_u'):
    for r in b.records(split, 'image'):
        for c in r.candidates:
            truth[(r.uid, c.frame, c.cand_id)] = (c.iou_to_gt, c.mask_type, split)
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = json.loads(line)
    t = truth[(p['uid'], p['frame'], p['cand_id'])]
    rows[t[2]].append((t[0], t[1], p['iou_low'], p['iou_high'], p['mask_type']))
for split, rs in rows.items():
    y = np.array([r[0] for r in rs]); lo = np.array([r[2] for r in rs]); hi = np.array([r[3] for r in rs])
    cov = (y >= lo) & (y <= hi)
    print(f"{split}: coverage {cov.mean():.3f} mean width {np.mean(hi - lo):.3f} (n={len(rs)})")
    for t in sorted(set(r[1] for r in rs)):
        m = np.array([r[1] == t for r in rs])
        print(f"   {t:9s} coverage {cov[m].mean():.3f} width {np.mean((hi - lo)[m]):.3f} n={m.sum()}")
    fn = np.array([r[1] == 'full_neg' for r in rs]); pfn = np.array([r[4] == 'full_neg' for r in rs])
    print(f"   full_neg recall {np.mean(pfn[fn]):.3f}")
