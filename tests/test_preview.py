"""Contact-sheet preview on a tiny benchmark written with BenchmarkWriter."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from auditor_lite.data import preview
from auditor_lite.data.candidates import make_candidates, make_null_expression_candidates
from auditor_lite.data.preview import render_preview
from auditor_lite.data.schema import NUM_FRAMES, SAMPLE_RATE, DataError
from auditor_lite.data.writer import BenchmarkWriter

H, W = 48, 64  # not square: the tiles must follow the aspect ratio
OBJECT_COLOUR = (200, 30, 30)


def _object_masks(frame: int) -> tuple[np.ndarray, np.ndarray]:
    """A box moving right over the frames (the referred object) and a static box (a distractor)."""
    target = np.zeros((H, W), bool)
    target[10:30, 4 + 2 * frame: 24 + 2 * frame] = True
    other = np.zeros((H, W), bool)
    other[30:44, 40:60] = True
    return target, other


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    frames = np.full((NUM_FRAMES, H, W, 3), 90, np.uint8)
    gts, others = {}, {}
    for f in range(NUM_FRAMES):
        gts[f], others[f] = _object_masks(f)
        frames[f][gts[f]] = OBJECT_COLOUR
        frames[f][others[f]] = (30, 30, 200)
    audio = np.zeros(SAMPLE_RATE * 10, np.float32)
    with BenchmarkWriter(root) as writer:
        writer.add_clip("clipA", frames, audio, cross_audio=audio)
        video_cands = [s for f in range(NUM_FRAMES) for s in make_candidates(gts[f], [others[f]], rng, f)]
        writer.add_expression(split="test_s", uid="clipA_box_0", vid="clipA", fid=0,
                              exp="the red box that moves to the right while humming " * 4, kfid=3,
                              gt_masks=gts, candidates=video_cands)
        writer.add_expression(split="train", uid="clipA_box_1", vid="clipA", fid=0, exp="the red box",
                              kfid=5, gt_masks={5: gts[5]},
                              candidates=make_candidates(gts[5], [others[5]], rng, 5))
        writer.add_expression(split="test_u", uid="null_clipA_box_2", vid="clipA", fid=1,
                              exp="the trumpet", kfid=0, gt_masks={},
                              candidates=make_null_expression_candidates([gts[0], others[0]], rng, 0))
    key_count = sum(s.frame == 3 for s in video_cands) + (0 if any(
        s.frame == 3 and s.mask_type == "perfect" for s in video_cands) else 1)
    return root, key_count


def _expected_size(num_candidates: int) -> tuple[int, int]:
    # Hand layout: 10 tiles of 160 px with 6 px gaps and 10 px margins; tiles are 160 * 48/64 = 120
    # px high with 3 caption lines of 13 px; header 3 lines, three section/legend lines.
    cell_h = 120 + 3 * 13
    rows = -(-num_candidates // 10)
    width = 2 * 10 + 10 * 160 + 9 * 6
    height = 10 + 3 * 13 + 6 + (13 + cell_h + 6) + (13 + rows * (cell_h + 6)) + 13 + 10
    return width, height


def test_video_preview_has_the_expected_size(tiny_benchmark, tmp_path):
    root, key_count = tiny_benchmark
    out = render_preview(root, "clipA_box_0", tmp_path / "sub" / "sheet.png")
    assert out == tmp_path / "sub" / "sheet.png"
    image = Image.open(out)
    assert key_count > 10  # two candidate rows
    assert image.size == _expected_size(key_count) == preview.sheet_size((H, W), key_count)


def test_overlays_line_up_with_the_objects(tiny_benchmark, tmp_path):
    root, _ = tiny_benchmark
    sheet = np.asarray(Image.open(render_preview(root, "clipA_box_0", tmp_path / "a.png", mode="video")))
    # Frame 7's tile: GT box at rows 10:30, cols 18:38 of the 48x64 frame, scaled x2.5.
    x0, y0 = 10 + 7 * (160 + 6), 10 + 3 * 13 + 6 + 13
    tile = sheet[y0:y0 + 120, x0:x0 + 160].astype(int)
    inside = tile[int(20 * 2.5), int(28 * 2.5)]           # centre of the object
    outside = tile[int(20 * 2.5), int(50 * 2.5)]          # background beside it
    green = np.array(preview.GT_COLOUR)
    blended = 0.6 * np.array(OBJECT_COLOUR) + 0.4 * green  # the red object under the green fill
    assert np.abs(inside - blended).max() < 25
    assert np.abs(outside - 90).max() < 12                 # untouched grey background
    contour = tile[int(10 * 2.5), int(28 * 2.5)]          # top edge of the GT box
    assert np.abs(contour - green).max() < 10
    # The key frame (3) is boxed in yellow.
    kx = 10 + 3 * (160 + 6)
    assert np.abs(sheet[y0 + 60, kx - 1].astype(int) - np.array(preview.KEY_FRAME_COLOUR)).max() < 10


def test_image_train_and_null_modes(tiny_benchmark, tmp_path):
    root, _ = tiny_benchmark
    image = Image.open(render_preview(root, "clipA_box_0", tmp_path / "i.png", mode="image"))
    assert image.size[0] == _expected_size(1)[0]
    train = Image.open(render_preview(root, "clipA_box_1", tmp_path / "t.png"))  # auto -> train JSON
    assert train.size[1] in (_expected_size(12)[1], _expected_size(13)[1])
    null = Image.open(render_preview(root, "null_clipA_box_2", tmp_path / "n.png"))
    assert null.size == _expected_size(3)  # two full_negs and the null mask, one row


def test_unknown_uid_and_wrong_mode_are_clear_errors(tiny_benchmark, tmp_path):
    root, _ = tiny_benchmark
    with pytest.raises(DataError, match=r"'clipA_box_9' not found; did you mean .*clipA_box_\d.*3 uids"):
        render_preview(root, "clipA_box_9", tmp_path / "x.png")
    with pytest.raises(DataError, match="split train"):
        render_preview(root, "clipA_box_1", tmp_path / "x.png", mode="video")
    assert not (tmp_path / "x.png").exists()
