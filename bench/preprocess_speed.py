"""Preprocessing of a real-resolution clip: where the time goes, old and new paths side by side.

    python bench/preprocess_speed.py [--sizes 128x128,720x1280,1080x1920] [--repeats 20] [--masks 13]
                                     [--threads 2] [--with-float] [--json FILE]

For each frame size, from decoded uint8 arrays (10 frames, ``--masks`` candidate masks, 10 s of
audio), timed interleaved (A, B, A, B, ... median and best of ``--repeats`` rounds):

* ``frames exact (old)``: the 10 frames to the model's 128 x 128 through the integer area resize
  both passes on integers (``resize.area_mean_uint8``, what ``prepare_frames`` used until now);
  ``frames fast``: the same numbers bit for bit through ``resize.area_means`` (integer row pass,
  float32 matrix product for the columns), on one thread and on ``--threads``; ``frames Pillow BOX``:
  Pillow's C resize, for reference only (not an area mean: module docstring of auditor_lite.resize);
  ``frames float``: the float area resize (``preprocess.area_resize``, before the integer one), only
  with ``--with-float`` (slow). Likewise ``masks ...`` for the ``--masks`` masks;
* ``resize: frames + masks``: both fast calls on ``--threads``, timed together;
* ``cell motion`` and ``log-mel`` (once per clip, at the model's size: model work, not resizing);
* ``preprocess (runtime)``: everything ``ClipSession`` does before the graphs for one new clip and
  its masks (input checks of frames, audio and masks, frames, key frame, masks, log-mel, cell
  motion), through the session itself, with an auditor loaded with ``intra_op_threads=--threads``;
  ``preprocess (runtime, old resize)``: the same with the session's ``prepare_frames`` /
  ``prepare_masks`` swapped for the old exact route (stacked frames, ``area_mean_uint8``);
* ``JPEG decode (10 frames)``: the 10 frames encoded at quality 90 and decoded by Pillow, reported
  apart (the API takes decoded arrays).

Prints one table per size with the load average (the 1-minute one before and after the size's
rounds); ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from contextlib import contextmanager

import numpy as np

from auditor_lite import preprocess
from auditor_lite.motion import cell_motion
from auditor_lite.resize import area_mean_uint8, area_means, mask_coverage_at_least, masks_inside

MODEL_SIZE = 128


def clip(height: int, width: int, masks: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    frames = np.stack([np.kron(np.roll(base, t, axis=1), np.ones((8, 8, 1), np.uint8))[:height, :width]
                       for t in range(10)])                                    # smooth-ish, moving
    stack = np.zeros((masks, height, width), bool)
    for i in range(masks):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        stack[i, y:y + height // 3, x:x + width // 4] = True
    audio = (0.1 * rng.standard_normal(160000)).astype(np.float32)
    return frames, stack, audio


def jpeg_bytes(frames: np.ndarray) -> list[bytes]:
    from PIL import Image

    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def decode(blobs: list[bytes]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])


def pillow_box(frames: np.ndarray) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.fromarray(f).resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.BOX)) for f in frames]


def old_prepare_frames(frames, size, *, threads=1):
    """``prepare_frames`` as it was: stacked frames, both passes on integers."""
    x = area_mean_uint8(np.stack(frames), size, size) * np.float32(preprocess.PIXEL_SCALE)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)[None])


def old_prepare_masks(masks, size, *, threads=1):
    """``prepare_masks`` as it was (for the session's bool stack)."""
    return mask_coverage_at_least(masks, size, size, preprocess.MASK_THRESHOLD).astype(np.float32)[:, None]


@contextmanager
def old_resize():
    """Within the block, ClipSession prepares frames and masks the old way."""
    from auditor_lite.runtime import session as session_module

    saved = session_module.prepare_frames, session_module.prepare_masks
    session_module.prepare_frames, session_module.prepare_masks = old_prepare_frames, old_prepare_masks
    try:
        yield
    finally:
        session_module.prepare_frames, session_module.prepare_masks = saved


def runtime_preprocess(auditor, frames, stack, audio):
    """What a ClipSession computes before the graphs, through the session (graphs not run): what
    ``ClipSession.raw_outputs`` does for the masks, and the window's tensors and key frame."""
    from auditor_lite.runtime import session as session_module

    session = auditor.session("the object", frames, audio, allow_silent=True)
    inputs = session._inputs()                       # frames, audio, log-mel, cell motion
    key = session.key_frame(4)
    checked, _ = session_module.check_masks(stack, session.frame_shape)
    masks = session_module.prepare_masks(checked, auditor.config.key_size, threads=session._threads)
    return inputs, key, masks


def runtime_preprocess_old(auditor, frames, stack, audio):
    with old_resize():
        return runtime_preprocess(auditor, frames, stack, audio)


def time_interleaved(cases: dict, repeats: int) -> dict:
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: {"p50_ms": statistics.median(t), "best_ms": min(t)} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="128x128,720x1280,1080x1920")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--masks", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2, help="the auditor's intra_op_threads (and so the "
                        "session's resize threads), and the fast rows' thread count")
    parser.add_argument("--with-float", action="store_true", help="also time the float area resize (slow)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from auditor_lite.runtime import Auditor

    auditor = Auditor.load(intra_op_threads=args.threads)
    threads = auditor.preprocess_threads
    report = {"load_average_start": os.getloadavg(), "masks": args.masks, "threads": threads,
              "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "sizes": {}}
    for size in args.sizes.split(","):
        height, width = (int(v) for v in size.split("x"))
        frames, stack, audio = clip(height, width, args.masks)
        blobs = jpeg_bytes(frames)
        small = area_means(frames, MODEL_SIZE, MODEL_SIZE)
        assert np.array_equal(small, area_mean_uint8(frames, MODEL_SIZE, MODEL_SIZE))      # same numbers
        assert np.array_equal(masks_inside(stack, MODEL_SIZE, MODEL_SIZE, threads=threads),
                              mask_coverage_at_least(stack, MODEL_SIZE, MODEL_SIZE))
        cases = {}
        if args.with_float:
            cases["frames float"] = lambda: preprocess.area_resize(frames, MODEL_SIZE, MODEL_SIZE)
        cases.update({
            "frames exact (old)": lambda: area_mean_uint8(frames, MODEL_SIZE, MODEL_SIZE),
            "frames fast, 1 thread": lambda: area_means(frames, MODEL_SIZE, MODEL_SIZE),
            f"frames fast, {threads} threads": lambda: area_means(frames, MODEL_SIZE, MODEL_SIZE, threads=threads),
            "frames Pillow BOX (ref.)": lambda: pillow_box(frames),
        })
        if args.with_float:
            cases["masks float"] = lambda: (
                preprocess.area_resize(stack[..., None], MODEL_SIZE, MODEL_SIZE)[..., 0] >= 0.5)
        cases.update({
            "masks exact (old)": lambda: mask_coverage_at_least(stack, MODEL_SIZE, MODEL_SIZE),
            "masks fast, 1 thread": lambda: masks_inside(stack, MODEL_SIZE, MODEL_SIZE),
            f"masks fast, {threads} threads": lambda: masks_inside(stack, MODEL_SIZE, MODEL_SIZE, threads=threads),
            f"resize: frames + masks ({threads} thr.)": lambda: (
                area_means(frames, MODEL_SIZE, MODEL_SIZE, threads=threads),
                masks_inside(stack, MODEL_SIZE, MODEL_SIZE, threads=threads)),
            "cell motion": lambda: cell_motion(small),
            "log-mel": lambda: preprocess.log_mel(audio),
            "preprocess (runtime, old resize)": lambda: runtime_preprocess_old(auditor, frames, stack, audio),
            "preprocess (runtime)": lambda: runtime_preprocess(auditor, frames, stack, audio),
            "JPEG decode (10 frames)": lambda: decode(blobs),
        })
        for fn in cases.values():
            fn()                                                     # warm
        before = os.getloadavg()[0]
        rows = time_interleaved(cases, args.repeats)
        after = os.getloadavg()[0]
        report["sizes"][size] = dict(rows, load_average_1min=[before, after])
        print(f"\n{size}, {args.masks} masks, {args.repeats} interleaved rounds, {threads} threads "
              f"(load average {before:.2f} -> {after:.2f}, {os.cpu_count()} CPUs):")
        for name, row in rows.items():
            print(f"  {name:<36} p50 {row['p50_ms']:8.2f} ms   best {row['best_ms']:8.2f} ms")
    report["load_average_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
