"""A PNG contact sheet of one expression: its frames, ground truth and every key-frame candidate.

Layout, top to bottom: the uid, split, mode and expression; the clip's 10 frames with the ground
truth (green fill + contour; the key frame boxed in yellow); the key frame once per candidate with
the candidate in its type's colour and the ground-truth contour, captioned with id, rank, IoU and
action; a colour legend. It reads through :class:`~auditor_lite.data.reader.Benchmark`, so what it
shows is what every tool reads.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from auditor_lite import media
from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import (
    MASK_TYPES, METADATA_CSV, NUM_FRAMES, RANKED_TYPES, Candidate, DataError, ExpressionRecord,
)

COLUMNS = NUM_FRAMES
TILE = 160  # tile width in pixels; the height follows the frames' aspect ratio
GAP = 6
MARGIN = 10
LINE_H = 13  # one line of PIL's default font plus leading
HEADER_LINES = 3  # uid/split/mode line + up to two lines of expression
CAPTION_LINES = 3
FILL_ALPHA = 0.4
GT_COLOUR = (40, 230, 60)
KEY_FRAME_COLOUR = (255, 215, 0)
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
TYPE_COLOURS = {
    "perfect": (0, 200, 255), "cutout": (255, 140, 0), "erode": (255, 240, 60),
    "dilate": (255, 60, 220), "merge": (150, 90, 255), "full_neg": (255, 40, 40), "null": (150, 150, 150),
}
RANK_NAMES = {1: "r1 Hard", 2: "r2 Medium"}


def sheet_size(frame_hw: tuple[int, int], num_candidates: int) -> tuple[int, int]:
    """(width, height) of the sheet for frames of ``frame_hw`` and that many key-frame candidates."""
    tile_h = _tile_height(frame_hw)
    cell_h = tile_h + CAPTION_LINES * LINE_H
    candidate_rows = max(1, math.ceil(num_candidates / COLUMNS))
    width = 2 * MARGIN + COLUMNS * TILE + (COLUMNS - 1) * GAP
    height = (MARGIN + HEADER_LINES * LINE_H + GAP          # header
              + LINE_H + cell_h + GAP                        # frames row with its title
              + LINE_H + candidate_rows * (cell_h + GAP)     # candidate rows with their title
              + LINE_H + MARGIN)                             # legend
    return width, height


def render_preview(root, uid: str, out_png, mode: str = "auto") -> Path:
    """Write the contact sheet of ``uid`` to ``out_png`` and return its path.

    ``mode``: ``auto`` (train JSON for a train uid, else the video JSON if present, else image),
    or ``train`` / ``image`` / ``video``. Raises :class:`DataError` when the uid is unknown.
    """
    bench = Benchmark(root)
    record = _find_record(bench, uid, mode)
    frames = [media.load_frame(record.clip.frame_path(i)) for i in range(NUM_FRAMES)]
    frame_hw = frames[0].shape[:2]
    gts = {f: _load_mask(path, frame_hw) for f, path in record.gt_masks.items()}
    key_candidates = [c for c in record.candidates if c.frame == record.kfid]
    width, height = sheet_size(frame_hw, len(key_candidates))
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    tile_h = _tile_height(frame_hw)
    cell_h = tile_h + CAPTION_LINES * LINE_H

    # Header: who, where, how many, and the expression (at most two lines, ellipsised).
    others = len(record.candidates) - len(key_candidates)
    first = (f"{record.uid}   split {record.split}   mode {record.mode}   key frame {record.kfid}   "
             f"{len(key_candidates)} key-frame candidates" + (f" ({others} more on other frames)" if others else "")
             + ("   null expression: refers to no object" if record.is_null else ""))
    y = MARGIN
    draw.text((MARGIN, y), first, fill=TEXT, font=font)
    for line in _wrap(draw, font, f'"{record.exp}"', width - 2 * MARGIN, max_lines=HEADER_LINES - 1):
        y += LINE_H
        draw.text((MARGIN, y), line, fill=TEXT, font=font)
    y = MARGIN + HEADER_LINES * LINE_H + GAP

    draw.text((MARGIN, y), "frames with ground truth (key frame boxed)", fill=TEXT, font=font)
    y += LINE_H
    for index, frame in enumerate(frames):
        x = MARGIN + index * (TILE + GAP)
        gt = gts.get(index)
        overlays = [] if gt is None else [(gt, GT_COLOUR, True)]
        sheet.paste(_tile(frame, overlays, tile_h), (x, y))
        if index == record.kfid:
            draw.rectangle((x - 2, y - 2, x + TILE + 1, y + tile_h + 1), outline=KEY_FRAME_COLOUR, width=3)
        caption = [f"frame {index}" + (" (key)" if index == record.kfid else ""),
                   "no ground truth" if gt is None else f"GT {int(gt.sum())} px"]
        _caption(draw, font, x, y + tile_h, caption)
    y += cell_h + GAP

    draw.text((MARGIN, y), f"candidates on key frame {record.kfid} (ground-truth contour in green)",
              fill=TEXT, font=font)
    y += LINE_H
    key_frame, key_gt = frames[record.kfid], gts.get(record.kfid)
    for position, candidate in enumerate(key_candidates):
        row, column = divmod(position, COLUMNS)
        x, cy = MARGIN + column * (TILE + GAP), y + row * (cell_h + GAP)
        mask = _load_mask(candidate.mask_path, frame_hw)
        overlays = [(mask, TYPE_COLOURS[candidate.mask_type], True)]
        if key_gt is not None:
            overlays.append((key_gt, GT_COLOUR, False))  # contour only, drawn on top
        sheet.paste(_tile(key_frame, overlays, tile_h), (x, cy))
        _caption(draw, font, x, cy + tile_h, _candidate_caption(candidate, mask))
    if not key_candidates:
        draw.text((MARGIN, y + tile_h // 2), "no candidates on the key frame", fill=TEXT, font=font)
    y += max(1, math.ceil(len(key_candidates) / COLUMNS)) * (cell_h + GAP)

    _legend(draw, font, MARGIN, y)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png


def _find_record(bench: Benchmark, uid: str, mode: str) -> ExpressionRecord:
    metadata = bench.metadata()
    if uid not in metadata:
        known = sorted(metadata)
        close = difflib.get_close_matches(uid, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise DataError(bench.meta_dir / METADATA_CSV,
                        f"uid {uid!r} not found; {hint}{len(known)} uids available, e.g. {', '.join(known[:5])}",
                        "uid")
    split = metadata[uid].split
    available = bench.available()
    if mode == "auto":
        mode = "train" if split == "train" else ("video" if (split, "video") in available else "image")
    if mode not in ("train", "image", "video"):
        raise ValueError(f"render_preview: mode must be auto, train, image or video, got {mode!r}")
    if (mode == "train") != (split == "train"):
        raise DataError(bench.meta_dir / METADATA_CSV,
                        f"uid {uid!r} is in split {split}; mode {mode!r} reads "
                        f"{'the train JSON' if mode == 'train' else 'a test JSON'} (use mode auto)", "split")
    path = bench.json_path(split, mode)
    for record in bench.records(split, mode):
        if record.uid == uid:
            return record
    raise DataError(path, f"uid {uid!r} is in metadata.csv (split {split}) but has no item in this file", "uid")


def _load_mask(path: Path, frame_hw) -> np.ndarray:
    mask = media.load_mask(path)
    if mask.shape != tuple(frame_hw):
        raise DataError(path, f"mask is {mask.shape[1]}x{mask.shape[0]} but the frames are "
                              f"{frame_hw[1]}x{frame_hw[0]}")
    return mask


def _tile_height(frame_hw) -> int:
    return max(1, round(TILE * frame_hw[0] / frame_hw[1]))


def _tile(frame: np.ndarray, overlays, tile_h: int) -> Image.Image:
    """The frame scaled to a tile with each (mask, colour, filled) overlay: fill then contour."""
    size = (TILE, tile_h)
    rgb = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR), dtype=np.float32)
    for mask, colour, filled in overlays:
        # Nearest-neighbour keeps the mask's pixels square, so edges line up with the frame's.
        scaled = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
        colour = np.asarray(colour, dtype=np.float32)
        if filled:
            rgb[scaled] = (1 - FILL_ALPHA) * rgb[scaled] + FILL_ALPHA * colour
        contour = scaled & ~ndimage.binary_erosion(scaled, iterations=2 if filled else 1, border_value=1)
        rgb[contour] = colour
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def _candidate_caption(candidate: Candidate, mask: np.ndarray) -> list[str]:
    # Only cutout/erode/dilate ranks mean a difficulty; the protocol pools the others' ranks.
    rank = RANK_NAMES.get(candidate.rank, f"r{candidate.rank}") if candidate.mask_type in RANKED_TYPES else ""
    empty = "" if mask.any() else " (empty)"
    return [f"{candidate.cand_id}  {rank}".strip(), f"IoU {candidate.iou_to_gt:.4f}{empty}", candidate.action]


def _caption(draw: ImageDraw.ImageDraw, font, x: int, y: int, lines: list[str]) -> None:
    for i, line in enumerate(lines[:CAPTION_LINES]):
        draw.text((x + 2, y + 1 + i * LINE_H), _fit(draw, font, line, TILE - 4), fill=TEXT, font=font)


def _legend(draw: ImageDraw.ImageDraw, font, x: int, y: int) -> None:
    entries = [("ground truth", GT_COLOUR), ("key frame", KEY_FRAME_COLOUR)]
    entries += [(name, TYPE_COLOURS[name]) for name in MASK_TYPES]
    for label, colour in entries:
        draw.rectangle((x, y + 2, x + 10, y + 11), fill=colour)
        draw.text((x + 14, y), label, fill=TEXT, font=font)
        x += 14 + int(draw.textlength(label, font=font)) + 16


def _fit(draw, font, text: str, width: int) -> str:
    """``text`` cut with "..." to fit ``width`` pixels (ASCII: the bitmap fallback font is Latin-1 only)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _wrap(draw, font, text: str, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; the last allowed line is ellipsised if text remains."""
    lines, current = [], ""
    words = text.split()
    for position, word in enumerate(words):
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not current:
            current = trial
            continue
        lines.append(current)
        current = word
        if len(lines) == max_lines - 1:
            current = " ".join(words[position:])
            break
    lines.append(_fit(draw, font, current, width))
    return lines[:max_lines]
