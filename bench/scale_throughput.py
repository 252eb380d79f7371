"""Single process against Ray Data actors, side by side, on one benchmark (issue 15's measurement).

    python bench/scale_throughput.py --bench runs/scale2k [--modes image,video] [--limit 0]
        [--configs single:2,jobs:2,ray:2x1,ray:1x1] [--rounds 1] [--out runs/scale-bench]

Generate the benchmark first (``auditor-lite data synth --out runs/scale2k --clips 2000 --seed 77``; its
test splits hold about 40% of the clips). For each mode and round the configurations run one after
the other (interleaved, so a busy machine slows them alike):

- ``single:T``: the single-process loop one record after the other (``batch_audit.audit_record``
  per expression, one auditor of T threads), timed from the first read to the last row;
- ``jobs:N``: N records at once on N threads, each record's graphs on CPUs / N threads: what
  ``audit --bench`` does by default (``--jobs`` = the CPUs, runtime/pipeline.py);
- ``ray:WxT``: ``audit --executor ray`` with W actors of T threads on a fresh local cluster;
  start-up (``ray.init``, actors, until the first read) is reported apart from the steady state
  (first read to last row), with rows and masks per busy second of each actor.

Every Ray output is compared with the single-process one (same keys, values within 1e-6). The load
average (``/proc/loadavg``) is printed before and after each run: on a shared machine quote it.
Results: a table on stdout and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor_lite.batch_audit import audit_record, audited_records, method_name, prediction  # noqa: E402
from auditor_lite.data.reader import Benchmark  # noqa: E402
from auditor_lite.eval.predictions import write_predictions  # noqa: E402
from auditor_lite.runtime.auditor import Auditor  # noqa: E402
from auditor_lite.runtime.pipeline import graph_threads, in_order  # noqa: E402


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__().replace("'", "")


def records_of(bench, mode, limit):
    benchmark, out = Benchmark(bench), []
    for split in ("test_s", "test_u"):
        if (split, mode) in benchmark.available():
            out += [(split, r) for r in audited_records(benchmark, split, mode)]
    return out[:limit] if limit else out


def run_single(bench, mode, limit, threads, out: Path, jobs: int = 1) -> dict:
    """One process: records one after the other (``jobs`` 1), or ``jobs`` records at once as
    ``audit --bench`` does (runtime/pipeline.py)."""
    auditor = Auditor.load(intra_op_threads=threads)
    name = method_name(auditor)
    records = [(split, r) for split, r in records_of(bench, mode, limit) if r.candidates]
    first = time.time()
    audited = in_order(lambda pair: audit_record(auditor, pair[1]), records, jobs)
    predictions = [prediction(record, cand, result, name, mode, split)
                   for (split, record), pairs in audited for cand, result in pairs]
    steady = time.time() - first
    write_predictions(out, predictions)
    return {"clips": len(records), "masks": len(predictions), "steady_s": steady, "startup_s": 0.0,
            "masks_per_s": len(predictions) / steady, "method": name}


def run_ray(bench, mode, limit, workers, threads, out: Path, method: str) -> dict:
    from auditor_lite.scale.run import run_audit
    from auditor_lite.scale.tasks import benchmark_tasks

    tasks = [t for split in ("test_s", "test_u") for t in _tasks(benchmark_tasks, bench, split, mode)]
    tasks = tasks[:limit] if limit else tasks
    if out.exists():
        out.unlink()
    stats = run_audit(tasks, out, executor="ray", workers=workers, threads=threads, method=method)
    return {k: stats.get(k) for k in ("clips", "masks", "steady_s", "startup_s", "ray_init_s", "masks_per_s",
                                      "audit_window_s", "masks_per_s_window", "actors", "actor_cpus", "rows_per_block", "blocks", "errors")}


def _tasks(benchmark_tasks, bench, split, mode):
    try:
        return benchmark_tasks(bench, [split], [mode])
    except ValueError:     # the split/mode is absent
        return []


def compare(single: Path, other: Path) -> str:
    a = [json.loads(x) for x in single.read_text().splitlines()]
    b = [json.loads(x) for x in other.read_text().splitlines()]
    if [(p["uid"], p["frame"], p["cand_id"]) for p in a] != [(p["uid"], p["frame"], p["cand_id"]) for p in b]:
        return "DIFFERENT KEYS"
    worst = 0.0
    for p, q in zip(a, b):
        for key in ("iou", "iou_low", "iou_high"):
            if p.get(key) is not None:
                worst = max(worst, abs(p[key] - q[key]))
        for key in ("type_probs", "action_probs"):
            worst = max([worst] + [abs(p[key][c] - q[key][c]) for c in p[key]])
        if (p["mask_type"], p["action"]) != (q["mask_type"], q["action"]):
            return "DIFFERENT LABELS"
    return f"same keys, max |diff| {worst:.1e}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--modes", default="image,video")
    parser.add_argument("--limit", type=int, default=0, help="clips per mode (0: all of the test splits)")
    parser.add_argument("--configs", default="single:2,jobs:2,ray:2x1,ray:1x1")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default="runs/scale-bench")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = []
    for mode in args.modes.split(","):
        for round_ in range(args.rounds):
            single_out, method = None, None
            for config in args.configs.split(","):
                kind, _, shape = config.partition(":")
                target = out / f"{mode}-{config.replace(':', '-')}.jsonl"
                before = loadavg()
                if kind in ("single", "jobs"):
                    jobs = int(shape) if kind == "jobs" else 1
                    threads = graph_threads(None, jobs) if kind == "jobs" else int(shape)
                    row = run_single(args.bench, mode, args.limit, threads, target, jobs)
                    method = row.pop("method")
                    single_out = single_out or target
                else:
                    workers, threads = (int(x) for x in shape.split("x"))
                    row = run_ray(args.bench, mode, args.limit, workers, threads, target,
                                  method or method_name(Auditor.load()))
                row.update(mode=mode, round=round_, config=config, load_before=before, load_after=loadavg(),
                           same=compare(single_out, target) if single_out and target != single_out else "-")
                results.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "actors"}), flush=True)
                for name, actor in (row.get("actors") or {}).items():
                    print(f"    actor {name}: {actor['clips']} clips ({100 * actor['share']:.0f}%), "
                          f"{actor['masks_per_busy_s']:.1f} masks/busy s", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("\nmode   config     clips  masks   start-up s  steady s  masks/s  vs the best single process  "
          "load before -> after")
    for mode in args.modes.split(","):
        for row in (r for r in results if r["mode"] == mode):
            base = [r["masks_per_s"] for r in results if r["mode"] == mode and r["round"] == row["round"]
                    and r["config"].split(":")[0] in ("single", "jobs")]
            ratio = row["masks_per_s"] / max(base) if base else float("nan")
            print(f"{mode:6} {row['config']:10} {row['clips']:5} {row['masks']:6}  {row['startup_s']:10.1f}"
                  f"  {row['steady_s']:8.1f}  {row['masks_per_s']:7.1f}  {100 * ratio:26.0f}%  "
                  f"{row['load_before']} -> {row['load_after']}  {row['same']}")


if __name__ == "__main__":
    main()
