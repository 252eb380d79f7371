"""Many clips at once in one process (auditor_lite/runtime/pipeline.py, audit --bench --jobs)."""

import json
import threading
import time
from pathlib import Path

import pytest

from auditor_lite.runtime.pipeline import graph_threads, in_order

BENCH = Path(__file__).resolve().parent / "fixtures" / "upstream_small"


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_items_come_in_order_with_their_results(jobs):
    def slow_square(x):
        time.sleep(0.01 * ((7 - x) % 3))               # later items often finish first
        return x * x
    assert list(in_order(slow_square, range(7), jobs)) == [(i, i * i) for i in range(7)]
    assert list(in_order(slow_square, [], jobs)) == []


def test_jobs_run_at_once_on_their_own_threads_and_one_job_on_the_caller():
    lock, running, most = threading.Lock(), [0], [0]

    def work(_):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return threading.get_ident()
    threads = {t for _, t in in_order(work, range(8), 2)}
    assert most[0] == 2 and threading.get_ident() not in threads
    most[0] = 0
    assert {t for _, t in in_order(work, range(3), 1)} == {threading.get_ident()} and most[0] == 1


def test_a_long_input_is_not_submitted_whole():
    submitted = []

    def items():
        for i in range(100):
            submitted.append(i)
            yield i
    for i, _ in in_order(lambda x: x, items(), 2):
        assert len(submitted) <= i + 1 + 4            # at most 2 x jobs ahead of the consumer


def test_a_failure_is_raised_at_its_items_turn():
    def work(i):
        if i == 3:
            raise ValueError("item 3")
        return i
    seen = []
    with pytest.raises(ValueError, match="item 3"):
        for i, _ in in_order(work, range(6), 2):
            seen.append(i)
    assert seen == [0, 1, 2]


def test_leaving_the_loop_early_leaves_no_thread_running():
    started = []

    def work(i):
        started.append(i)
        time.sleep(0.02)
        return i
    for i, _ in in_order(work, range(100), 2):
        if i == 1:
            break
    time.sleep(0.1)
    assert len(started) <= 6
    assert not [t for t in threading.enumerate() if t.name.startswith("auditor-job")]


def test_graph_threads_share_the_cpus_out(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert graph_threads(None, 8) == 1 and graph_threads(None, 2) == 4 and graph_threads(None, 1) == 8
    assert graph_threads(3, 2) == 3 and graph_threads(None, 16) == 1


def test_a_benchmark_audited_several_clips_at_once_equals_one_after_the_other(tmp_path):
    from auditor_lite.batch_audit import audit_benchmark
    from auditor_lite.runtime import Auditor

    auditor = Auditor.load(intra_op_threads=1)
    outs = {}
    for jobs in (1, 2, 3):
        out = tmp_path / f"j{jobs}.jsonl"
        stats = audit_benchmark(auditor, BENCH, out, progress=False, jobs=jobs)
        assert stats["masks"] > 0
        outs[jobs] = [json.loads(line) for line in out.read_text().splitlines()]
    assert outs[1] == outs[2] == outs[3]              # same lines, same order, same numbers


def test_a_bad_file_stops_the_audit_naming_it(tmp_path):
    import shutil

    from auditor_lite.batch_audit import audit_benchmark
    from auditor_lite.data.schema import DataError
    from auditor_lite.runtime import Auditor

    bench = tmp_path / "bench"
    shutil.copytree(BENCH, bench)
    mask = bench / "candidates" / "bbb_2000_12000_dog_2" / "erode_h.png"    # the second record audited
    mask.write_bytes(b"not a png")
    with pytest.raises(DataError, match=mask.name):
        audit_benchmark(Auditor.load(intra_op_threads=1), bench, tmp_path / "out.jsonl", progress=False, jobs=2)
    assert not (tmp_path / "out.jsonl").exists()


def test_the_audit_command_takes_jobs_and_says_so(tmp_path):
    from click.testing import CliRunner

    from auditor_lite.audit_cli import audit

    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.jsonl"
        result = CliRunner().invoke(audit, ["--bench", str(BENCH), "--out", str(out), "--no-progress",
                                            "--jobs", jobs, "--threads", "1"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"{jobs} clip(s) at once x 1 graph thread(s)" in result.stderr
        outs[jobs] = out.read_text()
    assert outs["1"] == outs["2"] and outs["1"]
    bad = CliRunner().invoke(audit, ["--bench", str(BENCH), "--out", str(tmp_path / "x.jsonl"), "--jobs", "0"])
    assert bad.exit_code == 2 and "--jobs" in bad.output
