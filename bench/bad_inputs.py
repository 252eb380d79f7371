"""The bad-input campaign: hostile and broken inputs through the real command line, each checked clean.

    python bench/bad_inputs.py [--out runs/bad_inputs.json] [--only CATEGORY]

Every case builds its bad file(s) in a fresh folder, runs ``auditor-lite ...`` as a subprocess and
calls the result **clean** when all of these hold (issue 12, "Fuzzing"):

- a non-zero exit status;
- no Python traceback, and one ``Error: ...`` line that names the file, field or argument at fault;
- no output created or changed (the ``--out`` path of the case does not appear);
- within 2 s wall time and 500 MB peak resident memory (of the child process).

Categories: frames, audio, masks, expression, frame index, model directory, benchmark, options. The
table of cases and their outcome goes to ``--out`` (JSON) and is summarised on stdout; docs/testing.md
quotes it. Torch-free: runs in the edge install (model-directory cases hard-link the packaged model's
graphs instead of copying them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bad_input_cases import ALL, Case

TIME_LIMIT_S = 2.0
MEMORY_LIMIT_MB = 500


# ----------------------------------------------------------------------------------- running
def run_case(case: Case, exe: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
        folder = Path(tmp)
        try:
            argv = case.build(folder)
        except Exception as exc:  # the case itself is broken: report, never count as clean
            return {"category": case.category, "name": case.name, "clean": False, "why": f"case setup: {exc!r}"}
        before = {p for p in folder.rglob("*")}
        args = [exe] + [a if isinstance(a, bytes) else str(a) for a in argv]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        started = time.perf_counter()
        with open(folder / ".stdout", "w+b") as out_file, open(folder / ".stderr", "w+b") as err_file:
            before |= {folder / ".stdout", folder / ".stderr"}
            proc = subprocess.Popen(args, stdout=out_file, stderr=err_file, env=env, cwd=folder)
            killer = threading.Timer(60, proc.kill)
            killer.start()
            _, status, usage = os.wait4(proc.pid, 0)      # this child's own peak memory
            killer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - started
            out_file.seek(0)
            err_file.seek(0)
            out, err = out_file.read(), err_file.read()
        peak_mb = round(usage.ru_maxrss / 1024.0, 1)
        text = (out + err).decode("utf-8", "replace")
        error_lines = [line for line in text.splitlines() if line.startswith("Error")]
        created = {p for p in folder.rglob("*")} - before
        problems = []
        if case.accept:
            if proc.returncode != 0:
                problems.append(f"exit status {proc.returncode} for a valid input")
        elif proc.returncode == 0:
            problems.append("exit status 0")
        if "Traceback" in text:
            problems.append("traceback")
        report = args[1:3] == ["data", "validate"]     # a multi-line report by design, exit status 1
        if report:
            if case.expect.lower() not in text.lower():
                problems.append(f"the report does not name {case.expect!r}")
        elif not case.accept:
            if len(error_lines) != 1:
                problems.append(f"{len(error_lines)} 'Error' lines")
            elif case.expect.lower() not in error_lines[0].lower():
                problems.append(f"the error does not name {case.expect!r}")
        if created and not case.accept:
            problems.append(f"created {sorted(str(p.relative_to(folder)) for p in created)[:3]}")
        if seconds > TIME_LIMIT_S:
            problems.append(f"{seconds:.2f} s")
        if peak_mb is not None and peak_mb > MEMORY_LIMIT_MB:
            problems.append(f"{peak_mb:.0f} MB")
        return {"category": case.category, "name": case.name, "clean": not problems, "why": "; ".join(problems),
                "seconds": round(seconds, 2), "peak_mb": peak_mb, "exit": proc.returncode,
                "message": (error_lines[0] if error_lines else (text.strip().splitlines() or [""])[-1])[:300]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bad_inputs.json"))
    parser.add_argument("--only", choices=sorted(ALL), default=None)
    parser.add_argument("--exe", default=shutil.which("auditor-lite") or "auditor-lite")
    args = parser.parse_args()
    cases = [c for name, make in ALL.items() if args.only in (None, name) for c in make()]
    results = []
    for i, case in enumerate(cases):
        result = run_case(case, args.exe)
        results.append(result)
        mark = "ok  " if result["clean"] else "FAIL"
        print(f"{mark} [{i + 1}/{len(cases)}] {case.category}: {case.name} ({result.get('seconds', '-')} s)"
              + ("" if result["clean"] else f" -- {result['why']} | {result.get('message', '')}"), flush=True)
    clean = sum(r["clean"] for r in results)
    by_category = {}
    for r in results:
        c = by_category.setdefault(r["category"], [0, 0])
        c[0] += r["clean"]
        c[1] += 1
    summary = {"cases": len(results), "clean": clean, "by_category": by_category,
               "max_seconds": max((r.get("seconds", 0) for r in results), default=0),
               "max_peak_mb": max((r.get("peak_mb") or 0 for r in results), default=0),
               "load_average": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
