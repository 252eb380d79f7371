"""Trim a model directory to the precisions one device needs (what ships in the repo, say).

A full directory carries FP32, INT8-CPU and INT8-TensorRT graphs and the gate's predictions; an edge
box running ONNX Runtime on its CPU needs only the ``int8-cpu`` graphs, the text encoder, the
tokenizer, the calibration tables and the score calibration. The manifest is rewritten (graphs and
contract pruned, every remaining file re-hashed), so the runtime verifies the slim copy as strictly
as the original.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from auditor_lite.manifest import MANIFEST_FILE, load_manifest, update_manifest

# Files of the source directory that a deployment never reads.
DROPPED_DIRS = ("calibration/predictions",)


def slim_model_dir(src: str | Path, dst: str | Path, keep: tuple[str, ...] = ("int8-cpu",),
                   overwrite: bool = False) -> dict:
    """Copy ``src`` to ``dst`` keeping only graph files of the ``keep`` precisions.

    A graph with none of them (e.g. the text encoder shipped as ``int8-cpu`` only, or ``fp32``
    only) keeps what it has, so the directory stays complete. Returns the new manifest.
    """
    src, dst = Path(src), Path(dst)
    manifest = load_manifest(src, verify=True)
    if dst.exists():
        if not overwrite:
            raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
        if not (dst / MANIFEST_FILE).exists():
            raise FileExistsError(f"{dst} exists and is not a model directory; refusing to replace it")
        shutil.rmtree(dst)
    graphs, dropped = {}, []
    for graph, flavours in manifest.data["graphs"].items():
        kept = {p: f for p, f in flavours.items() if p in keep} or dict(flavours)
        graphs[graph] = kept
        dropped += [f for p, f in flavours.items() if f not in kept.values()]
    ignore_dirs = {str(src / d) for d in DROPPED_DIRS}

    def ignore(folder, names):
        skip = {n for n in names if str(Path(folder) / n) in ignore_dirs}
        if Path(folder) == src:
            skip |= set(dropped)
        return skip

    shutil.copytree(src, dst, ignore=ignore)
    default = manifest.data.get("default_precision")
    if default not in keep:
        default = keep[0]
    # update_manifest merges graphs one level deep; the pruned table replaces the old one here,
    # then update_manifest re-hashes the copied files and checks the whole structure.
    path = dst / MANIFEST_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["graphs"], data["default_precision"] = graphs, default
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return update_manifest(dst,
                           slimmed_from={"name": manifest.data.get("name"), "kept": list(keep),
                                         "dropped": sorted(dropped)})
