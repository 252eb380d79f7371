"""Clips prepared ahead while the graphs run (auditor_lite/runtime/pipeline.py, audit --bench --prefetch)."""

import json
import threading
import time
from pathlib import Path

import pytest

from auditor_lite.runtime.pipeline import graph_threads, prepared_ahead

BENCH = Path(__file__).resolve().parent / "fixtures" / "upstream_small"


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_come_in_order_with_their_prepared_values(depth):
    assert list(prepared_ahead(lambda x: x * x, range(7), depth)) == [(i, i * i) for i in range(7)]
    assert list(prepared_ahead(lambda x: x, [], depth)) == []


@pytest.mark.parametrize("depth", [1, 2])
def test_at_most_depth_items_are_prepared_ahead(depth):
    lock, busy, prepared = threading.Lock(), [], set()

    def prepare(i):
        with lock:
            prepared.add(i)
        return i
    for i, _ in prepared_ahead(prepare, range(10), depth):
        time.sleep(0.01)                            # the worker has time to run ahead as far as it may
        with lock:
            busy.append(max(prepared) - i)
    assert max(busy) == depth


def test_depth_zero_prepares_on_the_calling_thread():
    caller = threading.get_ident()
    assert {t for _, t in prepared_ahead(lambda _: threading.get_ident(), range(3), 0)} == {caller}
    assert caller not in {t for _, t in prepared_ahead(lambda _: threading.get_ident(), range(3), 1)}


def test_a_failure_is_raised_at_its_items_turn():
    def prepare(i):
        if i == 3:
            raise ValueError("item 3")
        return i
    seen = []
    with pytest.raises(ValueError, match="item 3"):
        for i, _ in prepared_ahead(prepare, range(6), 2):
            seen.append(i)
    assert seen == [0, 1, 2]


def test_leaving_the_loop_early_leaves_no_worker_running():
    started = []

    def prepare(i):
        started.append(i)
        time.sleep(0.02)
        return i
    for i, _ in prepared_ahead(prepare, range(100), 2):
        if i == 1:
            break
    time.sleep(0.1)
    assert len(started) <= 4                         # 0, 1 and at most two ahead; nothing after the break
    assert not [t for t in threading.enumerate() if t.name.startswith("auditor-prepare")]


def test_graph_threads_leave_a_core_to_the_worker(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert graph_threads(None, 1) == 7 and graph_threads(None, 0) == 8 and graph_threads(3, 1) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert graph_threads(None, 1) == 1


def test_prefetched_benchmark_audit_equals_the_sequential_one(tmp_path):
    from auditor_lite.batch_audit import audit_benchmark
    from auditor_lite.runtime import Auditor

    auditor = Auditor.load(intra_op_threads=1)
    outs = {}
    for prefetch in (0, 1, 3):
        out = tmp_path / f"p{prefetch}.jsonl"
        stats = audit_benchmark(auditor, BENCH, out, progress=False, prefetch=prefetch)
        assert stats["masks"] > 0
        outs[prefetch] = [json.loads(line) for line in out.read_text().splitlines()]
    assert outs[0] == outs[1] == outs[3]              # same lines, same order, same numbers


def test_a_bad_file_stops_a_prefetched_audit_naming_it(tmp_path):
    import shutil

    from auditor_lite.batch_audit import audit_benchmark
    from auditor_lite.data.schema import DataError
    from auditor_lite.runtime import Auditor

    bench = tmp_path / "bench"
    shutil.copytree(BENCH, bench)
    mask = bench / "candidates" / "bbb_2000_12000_dog_2" / "erode_h.png"    # the second record audited
    mask.write_bytes(b"not a png")
    with pytest.raises(DataError, match=mask.name):
        audit_benchmark(Auditor.load(intra_op_threads=1), bench, tmp_path / "out.jsonl", progress=False, prefetch=2)
    assert not (tmp_path / "out.jsonl").exists()


def test_the_audit_command_prefetches_and_says_so(tmp_path):
    from click.testing import CliRunner

    from auditor_lite.audit_cli import audit

    outs = {}
    for prefetch in ("0", "2"):
        out = tmp_path / f"p{prefetch}.jsonl"
        result = CliRunner().invoke(audit, ["--bench", str(BENCH), "--out", str(out), "--no-progress",
                                            "--prefetch", prefetch, "--threads", "1"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"1 graph thread(s), prefetch {prefetch}" in result.stderr
        outs[prefetch] = out.read_text()
    assert outs["0"] == outs["2"] and outs["0"]
    bad = CliRunner().invoke(audit, ["--bench", str(BENCH), "--out", str(tmp_path / "x.jsonl"), "--prefetch", "-1"])
    assert bad.exit_code == 2 and "--prefetch" in bad.output
