"""Training the grounding model (stage A) within a wall-clock budget, and its referent metrics.

Losses per expression (``B`` expressions per step, each with a freshly chosen key frame):

- referent share: the sigmoid map's mass on the target's pixels over its total mass, ``-log``
  (exactly what "the object holding the largest share of the map's mass" asks for);
- BCE + soft Dice of the map against the target's coverage of each 4 x 4 cell;
- anchor (relational expressions): ``-log`` of the anchor map's softmax mass on the anchor;
- null: BCE of the null logit; a null expression's map is pushed to zero everywhere;
- with the generator's sidecar: per-object category (InfoNCE against the names' MiniLM vectors)
  and per-object sounding per second (BCE), read from features pooled under each object's mask.

Key frames: half the time the benchmark's key frame, otherwise any frame where the target covers
at least 0.4% of the frame: the referent is a property of the clip, not of one frame, and video
mode audits every frame.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from auditor_lite.model.grounder import Grounder, GrounderConfig, count_parameters
from auditor_lite.training.grounding_batches import batch_tensors, clip_groups, group_batch, model_inputs
from auditor_lite.training.grounding_data import GroundingSet

NULL_WEIGHT = 4.0
# Share of text+vision expressions heard as silence in training: an edge box may get a clip with a
# dead microphone, and the expressions that do not need audio must survive it. (The second run
# without it lost 20 points on every expression when silenced: silence was out of distribution.)
# Expressions that need the audio are silenced as often, with every object they could still mean
# as the referent (grounding_batches.silenced_positives).
AUDIO_DROPOUT = 0.1
CUE_BUCKETS = ("sound", "time", "position", "appearance", "motion", "category")


def object_fractions(instance: torch.Tensor, num_slots: int, cell: int) -> torch.Tensor:
    """(B, S, S) ids -> (B, num_slots + 1, S/cell, S/cell) coverage; channel 0 is background."""
    onehot = F.one_hot(instance.clamp(max=num_slots), num_slots + 1).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, cell)


def object_masses(target_logits: torch.Tensor, frac32: torch.Tensor) -> torch.Tensor:
    """Mass of the sigmoid map on each object (and background, index 0): (B, K + 1)."""
    return torch.einsum("bhw,bkhw->bk", torch.sigmoid(target_logits), frac32)


def grounding_losses(model: Grounder, out: dict, batch: dict, name_vectors: torch.Tensor | None,
                     max_objects: int) -> dict[str, torch.Tensor]:
    frac32 = object_fractions(batch["instance"], max_objects, 4)      # the map's grid (stride 4)
    frac16 = object_fractions(batch["instance"], max_objects, 8)      # the tokens' grid (stride 8)
    n32, n16 = frac32.shape[-1], frac16.shape[-1]
    target = batch["target"]
    has = target >= 0
    logits = out["target_logits"]
    losses = {}
    mass = object_masses(logits, frac32)
    tgt_idx = (target + 1).clamp(min=0)
    positives = batch.get("positives")          # (B, K + 1): objects that count as the referent
    if positives is None:
        positives = F.one_hot(tgt_idx, frac32.shape[1]).float()
    positives = positives[:, :frac32.shape[1]] * has[:, None]
    share = (mass * positives).sum(1) / (mass.sum(1) + 1e-6)
    losses["referent"] = -(torch.log(share + 1e-4) * has).sum() / has.sum().clamp(min=1)
    gt = torch.einsum("bk,bkhw->bhw", positives, frac32).clamp(max=1)
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none").mean((1, 2))
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * gt).sum((1, 2)) + 1) / (prob.sum((1, 2)) + gt.sum((1, 2)) + 1)
    losses["map"] = 2 * bce.mean() + (dice * has).sum() / has.sum().clamp(min=1)
    anchor = batch["anchor"]
    has_a = anchor >= 0
    if has_a.any():
        p_a = out["anchor_logits"].flatten(1).softmax(-1)
        fa = frac16.gather(1, (anchor + 1).clamp(min=0)[:, None, None, None].expand(-1, 1, n16, n16))
        losses["anchor"] = -(torch.log((p_a * fa.flatten(1)).sum(1) + 1e-4) * has_a).sum() / has_a.sum()
    # null expressions are ~5% of the data: weighted so that the null logit learns to fire
    losses["null"] = F.binary_cross_entropy_with_logits(out["null_logit"], (~has).float(),
                                                        pos_weight=torch.tensor(NULL_WEIGHT))
    # per-object auxiliaries, objects present on the key frame
    weights = frac16[:, 1:].flatten(2)                                       # (B, K, 256)
    area = weights.sum(-1)
    present = (area > 0.5) & (batch["category"][:, :max_objects] >= 0)
    pooled_w = weights / area.clamp(min=1e-6)[..., None]
    if name_vectors is not None and present.any():
        feats = torch.einsum("bkn,bnd->bkd", pooled_w, out["tokens"])
        emb = F.normalize(model.aux_category(feats), dim=-1)
        logit = emb @ name_vectors.T / 0.1
        cat = batch["category"][:, :max_objects].clamp(min=0)
        ce = F.cross_entropy(logit.flatten(0, 1), cat.flatten(), reduction="none").view_as(cat)
        losses["category"] = 0.5 * (ce * present).sum() / present.sum()
    sounding = batch["sounding"][:, :max_objects]
    known = present & (sounding[..., 0] >= 0) & has[:, None]       # null uids hear cross audio
    if known.any():
        track = torch.einsum("bkn,bntd->bktd", pooled_w, out["track"])
        sl = model.sounding_logits(track, out["audio"])
        bce_s = F.binary_cross_entropy_with_logits(sl, sounding.clamp(min=0), reduction="none").mean(-1)
        losses["sounding"] = 0.5 * (bce_s * known).sum() / known.sum()
        if "moved" in out:   # the same question from the block-matched motion alone
            moved = torch.einsum("bkn,bntf->bktf", pooled_w, out["moved"])
            ml = model.motion_sounding(moved, out["loudness"])
            bce_m = F.binary_cross_entropy_with_logits(ml, sounding.clamp(min=0), reduction="none").mean(-1)
            losses["motion_sounding"] = 0.5 * (bce_m * known).sum() / known.sum()
    return losses


@torch.no_grad()
def referent_predictions(model: Grounder, data: GroundingSet, rows: np.ndarray, batch_size: int = 32,
                         **batch_kwargs) -> dict[str, np.ndarray]:
    """Per expression: the object with the largest share of the key-frame map's mass (-1: none
    visible), the null logit, and whether the prediction is correct."""
    if len(rows) == 0:
        empty = np.zeros(0)
        return {"pick": empty.astype(int), "null_logit": empty, "correct": empty.astype(bool), "chance": empty}
    model.eval()
    picked, nulls, correct, chance = [], [], [], []
    text_rows = batch_kwargs.pop("text_rows", None)
    for i in range(0, len(rows), batch_size):
        r = rows[i:i + batch_size]
        tr = None if text_rows is None else text_rows[i:i + batch_size]
        b = batch_tensors(data, r, None, augment=False, text_rows=tr, **batch_kwargs)
        out = model(*model_inputs(b))
        k = int(data.num_objects[data.clip[r]].max())
        mass = object_masses(out["target_logits"], object_fractions(b["instance"], k, 4))[:, 1:]
        visible = object_fractions(b["instance"], k, 4)[:, 1:].sum((2, 3)) > 0
        mass = mass.masked_fill(~visible, -1.0)
        pick = mass.argmax(1)
        null = out["null_logit"]
        tgt = b["target"]
        ok = torch.where(tgt >= 0, pick == tgt, null > 0)
        picked.append(pick.numpy())
        nulls.append(null.numpy())
        correct.append(ok.numpy())
        chance.append((1.0 / visible.sum(1).clamp(min=1)).numpy())
    model.train()
    return {"pick": np.concatenate(picked), "null_logit": np.concatenate(nulls),
            "correct": np.concatenate(correct), "chance": np.concatenate(chance)}


def referent_report(data: GroundingSet, rows: np.ndarray, pred: dict) -> dict:
    """Accuracy overall, per cue bucket (an expression counts in each bucket of its cue label),
    relational, null, and the chance level (mean of 1 / visible objects) of the same rows."""
    groups = defaultdict(list)
    for j, e in enumerate(rows):
        cue = data.meta["cues"][e]
        names = ["overall"] + [c for c in CUE_BUCKETS if c in cue.split("+")]
        if cue == "null":
            names.append("null")
        if data.anchor[e] >= 0:
            names.append("relational")
        if data.meta["needs_audio"][e] and cue != "null":
            names.append("needs_audio")
        for n in names:
            groups[n].append(j)
    report = {}
    for name, idx in groups.items():
        idx = np.array(idx)
        report[name] = {"n": int(len(idx)), "accuracy": float(pred["correct"][idx].mean()),
                        "chance": float(pred["chance"][idx].mean())}
    return report


def train_grounder(data: GroundingSet, out_dir, *, minutes: float, batch_size: int = 16, lr: float = 2e-3,
                   per_clip: int = 1,
                   seed: int = 0, val_fraction: float = 0.05, val_every_minutes: float = 10.0,
                   config: GrounderConfig | None = None, audio_dropout: float = AUDIO_DROPOUT,
                   init_dir=None, log=print) -> dict:
    """Train (or, with ``init_dir``, fine-tune: its weights, its held-out clips, and the modules this
    config adds start at zero) a grounder within ``minutes``. A step encodes ``batch_size`` clips
    and reads up to ``per_clip`` of each clip's expressions (:func:`group_batch`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vids = np.array(data.meta["vids"])
    units = np.array([hash_unit(v) for v in vids])
    held = units < val_fraction
    if not held.any() and len(vids) > 1:       # tiny sets still validate on one clip
        held[int(units.argmin())] = True
    if init_dir is not None:                   # the same held-out clips as the model it starts from
        kept = set((Path(init_dir) / "heldout_vids.txt").read_text().split())
        held = np.array([v in kept for v in vids])
    is_val = held[data.clip[:]]
    extra = np.array(data.meta.get("extra", [False] * len(data)), bool)
    # validation on the benchmark's own expressions only, so numbers compare across runs
    train_rows, val_rows = np.nonzero(~is_val)[0], np.nonzero(is_val & ~extra)[0]
    (out_dir / "heldout_vids.txt").write_text("\n".join(vids[held]) + "\n")
    if init_dir is not None:
        model = fine_tune_start(init_dir, config).train()
    else:
        model = Grounder(config or GrounderConfig(key_size=data.meta["size"], max_tokens=data.meta["max_tokens"]))
    if model.config.cell_motion and "motion" not in data.arrays:
        raise ValueError(f"{data.root}: no cell motion cached (grounding_set adds it)")
    names = name_vectors(data.categories)
    max_objects = data.sounding.shape[1]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.02}, {"params": other, "weight_decay": 0}],
                            lr=lr, betas=(0.9, 0.98))
    budget = minutes * 60
    step, best, last_val = 0, -1.0, time.perf_counter()
    log(f"grounder: {count_parameters(model):,} parameters, {len(train_rows)} train / {len(val_rows)} "
        f"held-out expressions, budget {minutes} min")
    # Extra expressions are never null: repeat the null ones so that they keep the benchmark's
    # share (the second run, without this, learnt never to say null).
    own = int((~extra[train_rows]).sum())
    repeat = max(1, round(len(train_rows) / max(own, 1)))
    groups = clip_groups(data, train_rows)
    null_groups = [g for g in groups if data.target[g[0]] < 0]
    epoch_pool = groups + null_groups * (repeat - 1)       # a null group is one expression
    needs_audio = np.array(data.meta["needs_audio"], bool)
    epoch_order = rng.permutation(len(epoch_pool))
    pos = 0
    reserve = 30 + 0.03 * len(val_rows)            # seconds kept for the final validation

    def validate():
        report = referent_report(data, val_rows, referent_predictions(model, data, val_rows))
        log(f"val step {step}: " + ", ".join(f"{k} {v['accuracy']:.3f} (n={v['n']})"
                                             for k, v in report.items()))
        with open(out_dir / "train_log.jsonl", "a") as fh:
            fh.write(json.dumps({"step": step, "time_s": round(time.perf_counter() - started, 1),
                                 "val": report}) + "\n")
        return report["overall"]["accuracy"]

    while time.perf_counter() - started < budget - reserve:
        elapsed = time.perf_counter() - started
        frac = min(elapsed / (budget - reserve), 1.0)
        warm = min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        if pos + batch_size > len(epoch_order):
            epoch_order, pos = rng.permutation(len(epoch_pool)), 0
        step_groups = [epoch_pool[i] for i in epoch_order[pos:pos + batch_size]]
        pos += batch_size
        b, rows = group_batch(data, step_groups, rng, per_group=per_clip, audio_dropout=audio_dropout,
                              needs_audio=needs_audio, max_objects=max_objects)
        clip = model.encode_clip(b["frames"], b["key_index"], b["log_mel"], b.get("cell_motion"))
        out = model.ground(clip, b["tokens"], b["token_mask"], b["clip_index"])
        losses = grounding_losses(model, out, b, names, max_objects)
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log(f"step {step} {elapsed / 60:.1f} min lr {opt.param_groups[0]['lr']:.2e} " +
                " ".join(f"{k} {v.item():.3f}" for k, v in losses.items()))
        if time.perf_counter() - last_val > val_every_minutes * 60:
            last_val = time.perf_counter()
            acc = validate()
            if acc > best:
                best = acc
                save_grounder(model, out_dir)
    acc = validate()
    if acc >= best:
        best = acc
        save_grounder(model, out_dir)
    summary = {"steps": step, "minutes": round((time.perf_counter() - started) / 60, 2), "best_val": best,
               "parameters": count_parameters(model), "batch_size": batch_size, "lr": lr, "seed": seed,
               "per_clip": per_clip, "audio_dropout": audio_dropout, "null_repeat": repeat,
               "train_expressions": int(len(train_rows)), "heldout_expressions": int(len(val_rows)),
               "data": Path(data.meta["bench"]).name}
    (out_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def hash_unit(text: str) -> float:
    """A stable number in [0, 1] per text (held-out clips must not depend on Python's hash seed)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def name_vectors(categories: list[str]) -> torch.Tensor | None:
    if not categories:
        return None
    from auditor_lite.model.text import MiniLMTextEncoder
    return F.normalize(MiniLMTextEncoder().encode([c.replace("_", " ") for c in categories]), dim=-1)


def save_grounder(model: Grounder, out_dir) -> None:
    from safetensors.torch import save_file
    out_dir = Path(out_dir)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "grounder.safetensors"))
    (out_dir / "grounder_config.json").write_text(json.dumps(model.config.to_dict(), indent=2))


def fine_tune_start(init_dir, config: GrounderConfig | None = None) -> Grounder:
    """A grounder with ``init_dir``'s configuration (plus ``cell_motion``, or ``config``) and
    weights; modules the old one lacked keep their zero initialisation."""
    from safetensors.torch import load_file
    fields = _config_fields(init_dir)
    fields["cell_motion"] = True
    model = Grounder(config or GrounderConfig(**fields))
    state = _renamed(load_file(str(Path(init_dir) / "grounder.safetensors")))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(("motion_sound.", "motion_tokens.", "sound_gate.")) for k in missing):
        raise ValueError(f"{init_dir}: cannot start from it (missing {missing}, unexpected {unexpected})")
    return model


def _config_fields(model_dir) -> dict:
    config_path = Path(model_dir) / "grounder_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no grounder_config.json (not a grounding model directory)")
    fields = json.loads(config_path.read_text())
    fields.setdefault("motion_energy", False)        # written before the vibration channels existed
    fields.setdefault("sound_tokens", False)         # ... and before the sounding tokens
    fields.setdefault("cell_motion", False)          # ... and before the block-matched cell motion
    return fields


def _renamed(state: dict) -> dict:
    return {k.replace("aux_sounding.", "sound_head.", 1): v for k, v in state.items()}


def load_grounder(model_dir) -> Grounder:
    from safetensors.torch import load_file
    model = Grounder(GrounderConfig(**_config_fields(model_dir)))
    model.load_state_dict(_renamed(load_file(str(Path(model_dir) / "grounder.safetensors"))))
    return model.eval()
