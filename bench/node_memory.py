"""The robotics node's memory over a long stream (issue 14: "memory flat over a 10-minute stream").

Runs ``auditor-lite ros loadtest`` (which starts the node in its own process) and samples the
node process's resident memory (VmRSS from /proc) every few seconds:

    python bench/node_memory.py --seconds 600 [--rate 30] [--every 10] [--out runs/node_memory.json]

Prints the RSS after the warm-up (the first minute), at the end, the largest, and the growth from
the warm-up to the end; the loadtest's own latency table follows it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids = (task / "children")
        if kids.is_file():
            out += [int(x) for x in kids.read_text().split()]
    return out + [g for c in out for g in children(c)]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def node_pid(root: int) -> int | None:
    for pid in children(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"node" in cmd and b"ros" in cmd:
            return pid
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=int, default=30, help="masks/s (3 masks a request)")
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "auditor_lite.cli", "ros", "loadtest", "--rates", str(args.rate),
           "--seconds", str(args.seconds), "--threads", str(args.threads)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    samples, pid = [], None
    while proc.poll() is None:
        time.sleep(args.every)
        pid = pid or node_pid(proc.pid)
        value = rss_mb(pid) if pid else None
        if value is not None:
            samples.append((round(time.monotonic() - started, 1), round(value, 1)))
    output = proc.stdout.read()
    if not samples:
        sys.exit(f"no node process found under the loadtest (exit {proc.returncode}):\n{output}")
    after = [v for t, v in samples if t >= args.warmup] or [samples[-1][1]]
    report = {"seconds": args.seconds, "rate": args.rate, "samples": samples, "rss_after_warmup_mb": after[0],
              "rss_end_mb": samples[-1][1], "rss_max_mb": max(v for _, v in samples),
              "growth_after_warmup_mb": round(samples[-1][1] - after[0], 1),
              "loadavg": Path("/proc/loadavg").read_text().split()[:3], "loadtest_exit": proc.returncode}
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}))
    print(output)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
