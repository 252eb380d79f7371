"""Stage B, phase 1: train the crop CNN on the training split's candidate masks.

The crop CNN (:class:`auditor_lite.model.scorer.CropCNN`) judges how a mask sits on the picture,
without the referent map, so every training mask can teach it, not just those of the held-out clips
the rest of stage B is fitted on (which it therefore never sees here). Labels per mask: its shape
class (a perfect mask and a wrong object's mask are both "clean"; a null candidate is "empty") and,
except for a wrong object, its IoU with the ground truth.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from auditor_lite.media import load_mask
from auditor_lite.data.reader import Benchmark
from auditor_lite.model.scorer import SHAPE_CLASSES, CropCNN, mask_crops
from auditor_lite.preprocess import prepare_masks
from auditor_lite.training.grounding_data import GroundingSet

SHAPE_OF_TYPE = {"perfect": "clean", "full_neg": "clean", "cutout": "cutout", "erode": "erode",
                 "dilate": "dilate", "merge": "merge", "null": "empty"}


def candidate_masks_by_frame(record, size: int):
    """``(frame, candidates, masks (N, 1, size, size) tensor)`` for each frame of ``record`` that has
    candidates (image mode: the key frame only), masks prepared as the runtime prepares them."""
    by_frame: dict[int, list] = {}
    for cand in record.candidates:
        by_frame.setdefault(cand.frame, []).append(cand)
    for frame, cands in by_frame.items():
        yield frame, cands, torch.from_numpy(prepare_masks([load_mask(c.mask_path) for c in cands], size))


@torch.no_grad()
def crop_table(bench, data: GroundingSet, exclude_vids: set[str], max_expressions: int, seed: int = 0,
               log=print) -> dict[str, np.ndarray]:
    """Crops (float16) and labels of the candidates of up to ``max_expressions`` train expressions."""
    clip_of = {v: i for i, v in enumerate(data.meta["vids"])}
    records = [r for r in Benchmark(bench).records("train", "train")
               if r.vid not in exclude_vids and r.vid in clip_of and r.candidates]
    rng = np.random.default_rng(seed)
    if len(records) > max_expressions:
        records = [records[i] for i in np.sort(rng.choice(len(records), max_expressions, replace=False))]
    crops, shape, iou, has_iou = [], [], [], []
    started = time.perf_counter()
    size = data.frames.shape[2]
    for j, record in enumerate(records):
        clip = clip_of[record.vid]
        for frame, cands, masks in candidate_masks_by_frame(record, size):
            key = torch.from_numpy(np.ascontiguousarray(data.frames[clip, frame])).permute(2, 0, 1)[None].float() / 255
            crops.append(mask_crops(masks, key).half().numpy())
            shape += [SHAPE_CLASSES.index(SHAPE_OF_TYPE[c.mask_type]) for c in cands]
            iou += [c.iou_to_gt for c in cands]
            has_iou += [c.mask_type != "full_neg" for c in cands]
        if (j + 1) % 1000 == 0:
            log(f"  crops: {j + 1}/{len(records)} expressions, {time.perf_counter() - started:.0f} s")
    return {"crops": np.concatenate(crops), "shape": np.array(shape, np.int64),
            "iou": np.array(iou, np.float32), "has_iou": np.array(has_iou, bool)}


def train_crop_cnn(table: dict, *, dim: int, minutes: float, seed: int = 0, batch_size: int = 128,
                   log=print) -> CropCNN:
    """Fit the crop CNN within ``minutes`` (cosine learning rate over the budget)."""
    torch.manual_seed(seed)
    cnn = CropCNN(dim)
    x = torch.from_numpy(table["crops"])
    shape = torch.from_numpy(table["shape"])
    iou, has = torch.from_numpy(table["iou"]), torch.from_numpy(table["has_iou"]).float()
    opt = torch.optim.AdamW(list(cnn.parameters()), lr=2e-3, weight_decay=1e-3)
    g = torch.Generator().manual_seed(seed)
    started, step, budget = time.perf_counter(), 0, minutes * 60
    cnn.train()
    while (elapsed := time.perf_counter() - started) < budget:
        for group in opt.param_groups:
            group["lr"] = 2e-3 * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * elapsed / budget)))
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        crops = x[idx].float()
        if torch.rand(1, generator=g).item() < 0.5:          # mirror: boundaries have no handedness
            crops = crops.flip(-1)
        h = cnn(crops)
        pred_iou = torch.sigmoid(cnn.iou_head(h)[:, 0])
        loss = F.cross_entropy(cnn.shape_head(h), shape[idx]) + \
            4 * (F.binary_cross_entropy(pred_iou.clamp(1e-5, 1 - 1e-5), iou[idx], reduction="none") * has[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            log(f"  crop CNN step {step} {elapsed / 60:.1f} min loss {loss.item():.3f}")
    return cnn.eval()


@torch.no_grad()
def crop_accuracy(cnn: CropCNN, table: dict) -> float:
    logits = torch.cat([cnn.shape_head(cnn(torch.from_numpy(table["crops"][i:i + 1024]).float()))
                        for i in range(0, len(table["crops"]), 1024)])
    return float((logits.argmax(1).numpy() == table["shape"]).mean())
