"""An overlay sheet: each candidate mask drawn over its frame, captioned with the audit.

One tile per candidate (a grid of :data:`COLUMNS`): the frame, the mask tinted in the colour of the
predicted action (green accept, yellow minor, orange major, red reject) with its outline, and a
caption ``#index IoU type action``; a second caption line shows the truth when it is known. A
legend strip at the bottom names the colours.
PIL only (no matplotlib in the edge install).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ACTION_COLOURS = {"accept": (40, 180, 70), "minor revision": (235, 200, 40),
                  "major revision": (245, 130, 30), "reject": (220, 40, 40)}
COLUMNS = 5
TILE = 192          # frames are drawn at this side (nearest-neighbour: masks stay crisp)
CAPTION = 34        # pixels of caption below each tile
TINT = 0.45         # opacity of the mask tint
LEGEND = 20         # pixels of the colour legend below the tiles


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask that touch a background pixel (4-neighbourhood)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _tile(frame: np.ndarray, mask: np.ndarray, colour) -> Image.Image:
    image = np.asarray(Image.fromarray(frame).resize((TILE, TILE), Image.Resampling.BILINEAR), np.float32)
    big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((TILE, TILE),
                                                                         Image.Resampling.NEAREST)) > 0
    tint = np.asarray(colour, np.float32)
    image[big] = (1 - TINT) * image[big] + TINT * tint
    image[_outline(big)] = tint
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


def _legend(draw: ImageDraw.ImageDraw, font, top: int, with_truth: bool) -> None:
    """The tint colours by predicted action, and what the caption lines say."""
    x = 6
    for action, colour in ACTION_COLOURS.items():
        draw.rectangle((x, top + 5, x + 10, top + 15), fill=colour, outline=(0, 0, 0))
        draw.text((x + 14, top + 4), action, fill=(0, 0, 0), font=font)
        x += 24 + int(draw.textlength(action, font=font))
    caption = "caption: predicted IoU, type, action" + ("; grey: the truth" if with_truth else "")
    draw.text((x + 6, top + 4), caption, fill=(90, 90, 90), font=font)


def draw_overlay(path, frame: np.ndarray, masks, results, names=None, truth=None,
                 title: str | None = None) -> Path:
    """Write the overlay PNG of ``masks`` (bool (H, W) each) on ``frame`` (uint8 (H, W, 3)).

    ``results`` are the AuditResults of the masks; ``names`` optional labels; ``truth`` optional
    dicts with ``mask_type``, ``iou`` and ``action`` per mask.
    """
    count = len(results)
    columns = min(COLUMNS, count)
    rows = -(-count // columns)
    header = 22 if title else 0
    sheet = Image.new("RGB", (columns * TILE, header + rows * (TILE + CAPTION) + LEGEND), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if title:
        draw.text((6, 4), title, fill=(0, 0, 0), font=font)
    for i, result in enumerate(results):
        x, y = (i % columns) * TILE, header + (i // columns) * (TILE + CAPTION)
        sheet.paste(_tile(frame, np.asarray(masks[i], bool), ACTION_COLOURS.get(result.action, (0, 0, 255))),
                    (x, y))
        label = names[i] if names else f"#{result.index}"
        draw.text((x + 3, y + TILE + 2), f"{label} IoU {result.iou:.2f} {result.mask_type} "
                  f"{result.action.replace(' revision', '')}", fill=(0, 0, 0), font=font)
        if truth is not None and truth[i] is not None:
            t = truth[i]
            draw.text((x + 3, y + TILE + 17), f"true {t['iou']:.2f} {t['mask_type']} "
                      f"{t['action'].replace(' revision', '')}", fill=(90, 90, 90), font=font)
    _legend(draw, font, header + rows * (TILE + CAPTION), truth is not None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path
