"""Preprocessing of a real-resolution clip: where the time goes, old and new paths side by side.

    python bench/preprocess_speed.py [--sizes 128x128,720x1280,1080x1920] [--repeats 20] [--masks 13]

For each frame size, from decoded uint8 arrays (10 frames, ``--masks`` candidate masks, 10 s of
audio), timed interleaved (A, B, A, B, ... best and median of ``--repeats``):

* ``frames float`` / ``frames exact``: the 10 frames to the model's 128 x 128, through the float area
  resize (``preprocess.area_resize``, what ``prepare_frames`` used before) and through the integer
  one (``auditor_lite.resize``, what it uses now); likewise ``masks float`` / ``masks exact``;
* ``cell motion`` and ``log-mel`` (once per clip, at the model's size);
* ``preprocess (runtime)``: everything ``ClipSession`` does before the graphs for one new clip and its
  masks (input checks, frames, key frame, masks, log-mel, cell motion), through the session itself;
* ``JPEG decode``: the 10 frames encoded at quality 90 and decoded by Pillow, reported apart (the API
  takes decoded arrays).

Prints one table per size with the load average; ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time

import numpy as np

from auditor_lite import preprocess
from auditor_lite.motion import cell_motion
from auditor_lite.resize import area_mean_uint8, mask_coverage_at_least

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


def runtime_preprocess(auditor, frames, stack, audio):
    """What a ClipSession computes before the graphs, through the session (graphs not run)."""
    session = auditor.session("the object", frames, audio, allow_silent=True)
    inputs = session._inputs()                       # frames, audio, log-mel, cell motion
    key = session.key_frame(4)
    masks = preprocess.prepare_masks(stack, MODEL_SIZE)
    return inputs, key, masks


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
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from auditor_lite.runtime import Auditor

    auditor = Auditor.load(intra_op_threads=2)
    report = {"load_average_start": os.getloadavg(), "masks": args.masks, "sizes": {}}
    for size in args.sizes.split(","):
        height, width = (int(v) for v in size.split("x"))
        frames, stack, audio = clip(height, width, args.masks)
        blobs = jpeg_bytes(frames)
        small = (area_mean_uint8(frames, MODEL_SIZE, MODEL_SIZE)).astype(np.float32)
        cases = {
            "frames float": lambda: preprocess.area_resize(frames, MODEL_SIZE, MODEL_SIZE),
            "frames exact": lambda: area_mean_uint8(frames, MODEL_SIZE, MODEL_SIZE),
            "masks float": lambda: preprocess.area_resize(stack[..., None], MODEL_SIZE, MODEL_SIZE)[..., 0] >= 0.5,
            "masks exact": lambda: mask_coverage_at_least(stack, MODEL_SIZE, MODEL_SIZE),
            "cell motion": lambda: cell_motion(small),
            "log-mel": lambda: preprocess.log_mel(audio),
            "preprocess (runtime)": lambda: runtime_preprocess(auditor, frames, stack, audio),
            "JPEG decode (10 frames)": lambda: decode(blobs),
        }
        for fn in cases.values():
            fn()                                                     # warm
        report["sizes"][size] = time_interleaved(cases, args.repeats)
        print(f"\n{size}, {args.masks} masks, {args.repeats} interleaved rounds "
              f"(load average {os.getloadavg()[0]:.2f}):")
        for name, row in report["sizes"][size].items():
            print(f"  {name:<26} p50 {row['p50_ms']:8.2f} ms   best {row['best_ms']:8.2f} ms")
    report["load_average_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
