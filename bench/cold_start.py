"""Cold start in fresh processes, with and without the optimised-graph cache, alternately.

    python bench/cold_start.py [--runs 5] [--model DIR]

Each run starts a new Python process that imports the runtime, calls ``Auditor.load`` and audits
one mask of a new clip; runs alternate between ``AUDITOR_LITE_ORT_CACHE=0`` (ONNX Runtime
optimises every graph at load) and the cache (``runtime/ort_cache.py``; the first cached run
writes it). Prints the medians in ms and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from auditor_lite.runtime import Auditor
t1 = time.perf_counter()
auditor = Auditor.load(sys.argv[1] if len(sys.argv) > 1 else None, intra_op_threads=2)
t2 = time.perf_counter()
import numpy as np
rng = np.random.default_rng(0)
auditor.audit(rng.integers(0, 256, (10, 128, 128, 3), dtype=np.uint8),
              (0.1 * rng.standard_normal(160000)).astype(np.float32), "the dog on the left",
              rng.random((1, 128, 128)) > 0.5, frame_index=3)
t3 = time.perf_counter()
print(json.dumps({"cache": auditor.graphs["context"].optimised_cache, "import_ms": 1e3 * (t1 - t0),
                  "load_ms": 1e3 * (t2 - t1), "first_result_ms": 1e3 * (t3 - t2)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="auditor-lite-cold-")
    rows = {"off": [], "cached": []}

    def child(cache_on: bool) -> dict:
        env = dict(os.environ, AUDITOR_LITE_CACHE=cache, OMP_NUM_THREADS="2",
                   AUDITOR_LITE_ORT_CACHE="1" if cache_on else "0")
        out = subprocess.run([sys.executable, "-c", CHILD] + ([args.model] if args.model else []), env=env,
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    child(True)                                             # writes the cache
    for _ in range(args.runs):
        rows["off"].append(child(False))
        rows["cached"].append(child(True))
    print(f"{args.runs} fresh processes each, alternating (load average {os.getloadavg()[0]:.2f}), medians in ms:")
    for name, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("import_ms", "load_ms", "first_result_ms")}
        print(f"  {name:<7} import {med['import_ms']:6.0f}   Auditor.load {med['load_ms']:6.0f}   "
              f"first result {med['first_result_ms']:6.0f}   (cache: {runs[0]['cache']})")


if __name__ == "__main__":
    main()
