"""Stage B: fit the per-mask scorer on the grounding model's maps of clips it never trained on.

The scorer must learn what the *trained* grounding model's maps look like, errors included (a map
on the wrong twin, a map spread over two objects), so it is fitted on the clips that
``train-grounding`` held out (``heldout_vids.txt``), never on maps of clips the grounder saw.
Those clips are split once more by a stable hash of the clip id:

- ``fit`` (70 %): the scorer's MLP;
- ``calibration`` (30 %): the IoU recalibration and the split-conformal interval
  (:mod:`auditor_lite.calibration.score`), and the held-out numbers quoted in the summary.

Phase 1 trains the crop CNN (:mod:`auditor_lite.training.crop_train`, on masks of the clips the
grounder trained on: it never reads the map); phase 2 computes every held-out mask's features once
(the crop CNN frozen) and fits the MLP on them in about a minute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from auditor_lite.calibration.score import coverage_report, fit_score_calibration
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import ACTIONS, MASK_TYPES
from auditor_lite.model.grounded import GroundedAuditor, save_scorer
from auditor_lite.model.scorer import CropCNN, MaskScorer, ScorerConfig
from auditor_lite.training.crop_train import candidate_masks_by_frame, crop_accuracy, crop_table, train_crop_cnn
from auditor_lite.training.grounding_data import GroundingSet
from auditor_lite.training.grounding_train import hash_unit

FIT_FRACTION = 0.7


@torch.no_grad()
def scorer_features(model: GroundedAuditor, data: GroundingSet, records: dict, rows: np.ndarray,
                    scorer: MaskScorer, log=print) -> dict[str, np.ndarray]:
    """Per candidate mask of expressions ``rows``: features, labels and the clip it belongs to."""
    feats, iou, types, actions, groups, uids = [], [], [], [], [], []
    size = model.key_size
    started = time.perf_counter()
    for j, e in enumerate(rows):
        record = records[data.meta["uids"][e]]
        clip = int(data.clip[e])
        frames = torch.from_numpy(np.ascontiguousarray(data.frames[clip])).permute(0, 3, 1, 2).float()[None] / 255
        motion = None
        if model.reads_cell_motion:
            motion = torch.from_numpy(data.motion[clip][None].astype(np.float32))
        for frame, cands, masks in candidate_masks_by_frame(record, size):
            context = model.encode_context(
                frames, torch.tensor([frame]), torch.from_numpy(data.log_mel[data.mel_row[e]][None].astype(np.float32)),
                torch.from_numpy(data.tokens[e][None].astype(np.float32)),
                torch.from_numpy(data.token_mask[e][None].astype(np.float32)), motion)
            feats.append(scorer.features(context, masks, frames[:, frame]).numpy())
            iou += [c.iou_to_gt for c in cands]
            types += [MASK_TYPES.index(c.mask_type) for c in cands]
            actions += [ACTIONS.index(c.action) for c in cands]
            groups += [record.vid] * len(cands)
            uids += [record.uid] * len(cands)
        if (j + 1) % 200 == 0:
            log(f"  stage-B features: {j + 1}/{len(rows)} expressions, {time.perf_counter() - started:.0f} s")
    return {"features": np.concatenate(feats).astype(np.float32), "iou": np.array(iou, np.float32),
            "type": np.array(types, np.int64), "action": np.array(actions, np.int64),
            "group": np.array(groups), "uid": np.array(uids)}


def heldout_rows(data: GroundingSet, grounder_dir) -> np.ndarray:
    """The non-extra expressions of the clips ``train-grounding`` held out."""
    path = Path(grounder_dir) / "heldout_vids.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; stage B needs the clips the grounding model held out "
                                "(written by `auditor-lite train-grounding`)")
    held = set(path.read_text().split())
    vids = data.meta["vids"]
    extra = data.meta.get("extra", [False] * len(data))
    return np.array([e for e in range(len(data)) if not extra[e] and vids[int(data.clip[e])] in held])


def benchmark_records(bench, split: str, mode: str, uids: set[str]) -> dict:
    return {r.uid: r for r in Benchmark(bench).records(split, mode) if r.uid in uids}


def _class_weights(labels: np.ndarray, count: int) -> torch.Tensor:
    freq = np.bincount(labels, minlength=count).astype(np.float64) + 1.0
    w = (freq.sum() / freq) ** 0.5           # square-root balancing: macro F2 without starving the big classes
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def fit_scorer(table: dict, crop_cnn: CropCNN | None, *, epochs: int = 60, seed: int = 0, hidden: int = 96,
               log=print) -> MaskScorer:
    """The MLP and its feature standardisation; the crop CNN (phase 1) is kept as it is."""
    torch.manual_seed(seed)
    scorer = MaskScorer(ScorerConfig(hidden=hidden, crop_dim=crop_cnn.embed.out_features if crop_cnn else 0))
    if crop_cnn is not None:
        scorer.crop_cnn.load_state_dict(crop_cnn.state_dict())
        scorer.crop_cnn.requires_grad_(False)
    x = torch.from_numpy(table["features"])
    scorer.feature_mean.copy_(x.mean(0))
    scorer.feature_std.copy_(x.std(0).clamp(min=1e-3))
    y_iou = torch.from_numpy(table["iou"])
    y_type, y_action = torch.from_numpy(table["type"]), torch.from_numpy(table["action"])
    w_type = _class_weights(table["type"], len(MASK_TYPES))
    w_action = _class_weights(table["action"], len(ACTIONS))
    opt = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=3e-3, weight_decay=1e-3)
    steps = epochs * max(1, len(x) // 256)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    scorer.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (256,), generator=g)
        iou, type_logits, action_logits = scorer.heads(x[idx])
        loss = (F.binary_cross_entropy(iou.clamp(1e-5, 1 - 1e-5), y_iou[idx]) * 4
                + F.cross_entropy(type_logits, y_type[idx], weight=w_type)
                + F.cross_entropy(action_logits, y_action[idx], weight=w_action))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0:
            log(f"  stage-B step {step + 1}/{steps} loss {loss.item():.3f}")
    return scorer.eval()


@torch.no_grad()
def predict_table(scorer: MaskScorer, table: dict) -> dict[str, np.ndarray]:
    iou, type_logits, action_logits = scorer.heads(torch.from_numpy(table["features"]))
    return {"iou": iou.numpy(), "type": type_logits.argmax(1).numpy(), "action": action_logits.argmax(1).numpy()}


def heldout_summary(pred: dict, table: dict) -> dict:
    """Quick held-out numbers (the eval command gives the protocol's)."""
    err = pred["iou"] - table["iou"]
    best = []
    for uid in np.unique(table["uid"]):
        rows = np.nonzero(table["uid"] == uid)[0]
        if table["iou"][rows].max() > 0:      # null expressions have nothing to pick
            best.append(float(table["iou"][rows[np.argmax(pred["iou"][rows])]]))
    return {"masks": int(len(err)), "iou_rmse": float(np.sqrt(np.mean(err ** 2))),
            "type_accuracy": float(np.mean(pred["type"] == table["type"])),
            "action_accuracy": float(np.mean(pred["action"] == table["action"])),
            "best_pick_mean_iou": float(np.mean(best)) if best else None}


def train_scorer(model: GroundedAuditor, data: GroundingSet, bench, grounder_dir, out_dir, *,
                 crop_dim: int = 32, crop_expressions: int = 5000, crop_minutes: float = 6.0, log=print) -> dict:
    started = time.perf_counter()
    rows = heldout_rows(data, grounder_dir)
    records = benchmark_records(bench, "train", "train", {data.meta["uids"][e] for e in rows})
    rows = np.array([e for e in rows if data.meta["uids"][e] in records])
    held_vids = {data.meta["vids"][int(data.clip[e])] for e in rows}
    summary = {}
    crop_cnn = None
    if crop_dim:
        crops = crop_table(bench, data, held_vids, crop_expressions, log=log)
        check = np.arange(len(crops["shape"])) % 10 == 0        # a tenth kept out to report accuracy
        fit_part = {k: v[~check] for k, v in crops.items()}
        log(f"stage B phase 1: crop CNN on {len(fit_part['shape'])} masks for {crop_minutes} min")
        crop_cnn = train_crop_cnn(fit_part, dim=crop_dim, minutes=crop_minutes, log=log)
        summary["crop_cnn"] = {"masks": int(len(fit_part["shape"])),
                               "shape_accuracy_kept_out": crop_accuracy(crop_cnn, {k: v[check] for k, v in crops.items()}),
                               "minutes": round((time.perf_counter() - started) / 60, 2)}
        log(f"  crop CNN: {summary['crop_cnn']}")
        del crops, fit_part
    log(f"stage B phase 2: {len(rows)} held-out expressions")
    feature_scorer = MaskScorer(ScorerConfig(crop_dim=crop_dim))
    if crop_cnn is not None:
        feature_scorer.crop_cnn.load_state_dict(crop_cnn.state_dict())
    table = scorer_features(model, data, records, rows, feature_scorer.eval(), log=log)
    np.savez_compressed(Path(out_dir) / "stage_b_features.npz", **table)   # for analysis; not shipped
    fit = np.array([hash_unit("stage-b:" + g) < FIT_FRACTION for g in table["group"]])
    part = {name: {k: v[mask] for k, v in table.items()} for name, mask in (("fit", fit), ("calibration", ~fit))}
    features_s = time.perf_counter() - started
    scorer = fit_scorer(part["fit"], crop_cnn, log=log)
    save_scorer(scorer, out_dir)
    pred = predict_table(scorer, part["calibration"])
    types = [MASK_TYPES[t] for t in pred["type"]]
    calib = fit_score_calibration(pred["iou"], part["calibration"]["iou"], part["calibration"]["uid"],
                                  fit_on="held-out train clips (stage-B calibration part)", predicted_types=types)
    calib.extra["test"] = {"calibration part (in-sample)": coverage_report(calib, pred["iou"],
                                                                           part["calibration"]["iou"], types)}
    calib.save(Path(out_dir) / "score_calibration.json")
    summary |= {"fit_masks": int(fit.sum()), "calibration_masks": int((~fit).sum()),
               "features_minutes": round(features_s / 60, 2),
               "minutes": round((time.perf_counter() - started) / 60, 2),
               "calibration_part": heldout_summary(pred, part["calibration"]),
               "conformal_q": calib.q}
    (Path(out_dir) / "scorer_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
