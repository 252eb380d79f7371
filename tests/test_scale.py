"""``audit --executor ray`` on a local Ray cluster (2 CPUs, 127.0.0.1 only, quiet, bounded): the
same predictions as the single-process ``audit --bench``; resume after an interrupted run; a corrupt
mask is an error row while the other clips are audited; every actor works. Needs the ``scale`` extra."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.scale,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None,
                                 reason="needs the scale extra (Ray Data, pyarrow): pip install 'auditor-lite[scale]'")]

from auditor_lite.batch_audit import audit_benchmark  # noqa: E402
from auditor_lite.runtime.auditor import Auditor  # noqa: E402
from auditor_lite.scale.output import TMP_PREFIX  # noqa: E402
from auditor_lite.scale.run import run_audit  # noqa: E402
from auditor_lite.scale.tasks import benchmark_tasks  # noqa: E402

BENCH = Path(__file__).resolve().parent / "fixtures" / "upstream_small"
METHOD = "scale-test"


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local cluster for the module: 2 CPUs, loopback only, shut down at the end."""
    import os

    saved = dict(os.environ)
    from auditor_lite.scale.ray_executor import start_ray

    started = start_ray(num_cpus=2, temp_dir=str(tmp_path_factory.mktemp("ray")))
    import ray

    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield ray
    if started:
        ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process ``audit --bench`` of the fixture benchmark: {key: prediction}, in file order."""
    out = tmp_path_factory.mktemp("single") / "single.jsonl"
    audit_benchmark(Auditor.load(intra_op_threads=2), BENCH, out, method=METHOD, progress=False)
    return [json.loads(line) for line in out.read_text().splitlines()]


def keyed(preds):
    return {(p.get("split"), p.get("mode"), p["uid"], p["frame"], p["cand_id"]): p for p in preds}


def assert_same(preds, reference):
    assert list(keyed(preds)) == list(keyed(reference))          # the same keys, in the same order
    for got, want in zip(preds, reference):
        assert set(got) == set(want)
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, abs=1e-6), name
            elif isinstance(value, dict):
                assert got[name] == pytest.approx(value, abs=1e-6), name
            else:
                assert got[name] == value, name


def test_ray_jsonl_equals_single_process_and_every_actor_works(local_ray, single, tmp_path):
    out = tmp_path / "ray.jsonl"
    stats = run_audit(benchmark_tasks(BENCH), out, executor="ray", workers=2, threads=1, method=METHOD)
    assert_same([json.loads(line) for line in out.read_text().splitlines()], single)
    assert stats["audited"] == 4 and stats["masks"] == len(single) and stats["errors"] == 0
    assert len(stats["actors"]) == 2 and min(a["share"] for a in stats["actors"].values()) >= 0.25
    assert stats["workers"] == 2 and stats["actor_cpus"] < 1 and stats["blocks"] == 4
    assert not Path(f"{out}.parts").exists() and not Path(f"{out}.errors.jsonl").exists()


def test_resume_after_an_interrupted_run(local_ray, single, tmp_path):
    out = tmp_path / "resume.jsonl"
    tasks = benchmark_tasks(BENCH)

    def interrupt(done, pending, row):
        raise KeyboardInterrupt            # Ctrl-C as the first batch is in

    with pytest.raises(KeyboardInterrupt):
        run_audit(tasks, out, executor="ray", workers=2, threads=1, method=METHOD, on_progress=interrupt)
    parts = Path(f"{out}.parts")
    written = sorted(parts.glob("part-*.jsonl"))
    assert written and not out.exists()                     # finished batches kept, nothing merged
    (parts / f"{TMP_PREFIX}killed-part-000000003.jsonl").write_text('{"uid": "half')   # a kill mid-write
    stats = run_audit(tasks, out, executor="ray", workers=2, threads=1, method=METHOD)
    assert stats["skipped"] == len(written) and stats["audited"] == 4 - len(written)
    assert_same([json.loads(line) for line in out.read_text().splitlines()], single)
    assert not parts.exists()
    again = run_audit(tasks, out, executor="ray", method=METHOD)       # complete: nothing to do
    assert again["audited"] == 0 and again["skipped"] == 4 and again["predictions"] == len(single)


def test_corrupt_mask_is_an_error_row_and_parquet_parts(local_ray, single, tmp_path):
    import pyarrow.parquet as pq

    bench = tmp_path / "bench"
    shutil.copytree(BENCH, bench)
    tasks = benchmark_tasks(bench)
    broken = tasks[1]
    bad_mask = Path(json.loads(broken["candidates"])[0][2])
    bad_mask.write_bytes(b"\x89PNG truncated")
    out = tmp_path / "pq"
    stats = run_audit(tasks, out, executor="ray", workers=2, threads=1, method=METHOD)
    errors = [json.loads(line) for line in Path(f"{out}.errors.jsonl").read_text().splitlines()]
    assert [(e["uid"], e["split"], e["mode"]) for e in errors] == [(broken["uid"], broken["split"], broken["mode"])]
    assert bad_mask.name in errors[0]["error"] and stats["errors"] == 1
    assert (out / "_SUCCESS").is_file() and not (out / "_errors").exists()
    rows = pq.read_table(out).to_pylist()
    expected = [p for p in single if (p["split"], p["mode"], p["uid"]) !=
                (broken["split"], broken["mode"], broken["uid"])]
    assert_same(rows_as_predictions(rows), expected)


def rows_as_predictions(rows):
    """Parquet rows in the JSONL's field set (optional fields dropped when null)."""
    return [{k: v for k, v in row.items() if v is not None} for row in rows]
