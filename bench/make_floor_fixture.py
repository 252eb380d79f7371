"""Build the accuracy-floor fixture (tests/fixtures/floor) and measure the shipped model on it.

    auditor-lite data synth --out /tmp/floor-src --clips 160 --seed 4242
    python bench/make_floor_fixture.py build --src /tmp/floor-src --out tests/fixtures/floor
    python bench/make_floor_fixture.py measure --fixture tests/fixtures/floor   # writes expected.json

The fixture is the first ``--count`` test_s image expressions of a benchmark that no model was
trained on, in uid order (never picked by how a model does on them): their clips' frames as the
benchmark's JPEGs, the audio re-encoded as Ogg Vorbis (10 s of 16-bit WAV is 320 kB; Vorbis keeps
the fixture under 3 MB), the candidate masks as PNGs and their labels. ``measure`` audits it with the
packaged default model and records what it got; ``tests/test_accuracy_floor.py`` checks that the
shipped model still gets that, in the base install (no torch).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "floor"


def build(src: Path, out: Path, count: int) -> None:
    from auditor_lite.media import load_audio
    from auditor_lite.data.reader import Benchmark

    records = sorted(Benchmark(src).records("test_s", "image"), key=lambda r: r.uid)[:count]
    if len(records) < count:
        sys.exit(f"{src}: only {len(records)} test_s image expressions, {count} asked")
    if out.exists():
        shutil.rmtree(out)
    items = []
    for record in records:
        clip_dir = out / "clips" / record.vid
        if not clip_dir.exists():
            clip_dir.mkdir(parents=True)
            for k in range(10):
                shutil.copy2(record.clip.frame_path(k), clip_dir / f"{k}.jpg")
            wave, rate = load_audio(record.clip.audio_path)
            sf.write(clip_dir / "audio.ogg", wave, rate, format="OGG", subtype="VORBIS", compression_level=0.9)
        mask_dir = out / "masks" / record.uid
        mask_dir.mkdir(parents=True)
        cands = []
        for cand in record.candidates:
            name = f"{cand.cand_id}.png"
            shutil.copy2(cand.mask_path, mask_dir / name)
            cands.append({"file": name, "type": cand.mask_type, "iou": cand.iou_to_gt, "action": cand.action})
        items.append({"uid": record.uid, "vid": record.vid, "expression": record.exp,
                      "frame": record.candidates[0].frame, "candidates": cands})
    (out / "items.json").write_text(json.dumps({"source": f"data synth --clips 160 --seed 4242 ({src.name})",
                                                "items": items}, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {len(items)} expressions, {size / 1e6:.2f} MB")


def audit_fixture(fixture: Path, model_dir=None, precision: str = "auto") -> dict:
    """Per expression: whether a perfect mask is ranked first; over all masks: IoU RMSE."""
    from auditor_lite.media import load_mask
    from auditor_lite.runtime import Auditor
    from auditor_lite.runtime.files import load_frames_dir

    auditor = Auditor.load(model_dir, precision=precision, intra_op_threads=2)
    items = json.loads((fixture / "items.json").read_text())["items"]
    first, errors = [], []
    for item in items:
        clip_dir = fixture / "clips" / item["vid"]
        frames = load_frames_dir(clip_dir)
        wave, rate = sf.read(clip_dir / "audio.ogg", dtype="float32")
        masks = [load_mask(fixture / "masks" / item["uid"] / c["file"]) for c in item["candidates"]]
        results = auditor.audit(frames, np.clip(wave, -1, 1), item["expression"], masks,
                                frame_index=item["frame"], sample_rate=rate)
        predicted = np.array([r.iou for r in results])
        truth = np.array([c["iou"] for c in item["candidates"]])
        errors.extend(predicted - truth)
        if any(c["type"] == "perfect" for c in item["candidates"]):
            first.append(item["candidates"][int(np.argmax(predicted))]["type"] == "perfect")
    return {"expressions": len(items), "with_perfect": len(first),
            "perfect_first": float(np.mean(first)), "iou_rmse": float(np.sqrt(np.mean(np.square(errors)))),
            "model": auditor.manifest.name, "precision": auditor.precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--src", type=Path, required=True)
    b.add_argument("--out", type=Path, default=FIXTURE)
    b.add_argument("--count", type=int, default=30)
    m = sub.add_parser("measure")
    m.add_argument("--fixture", type=Path, default=FIXTURE)
    m.add_argument("--model", default=None)
    args = parser.parse_args()
    if args.command == "build":
        build(args.src, args.out, args.count)
    else:
        measured = audit_fixture(args.fixture, args.model)
        (args.fixture / "expected.json").write_text(json.dumps(measured, indent=1) + "\n")
        print(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
