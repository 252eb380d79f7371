"""The shipped default model keeps its accuracy on a committed set of 30 expressions (base install).

``tests/fixtures/floor`` holds 30 test_s image expressions of a benchmark no model was trained on
(`bench/make_floor_fixture.py`: the first 30 by uid, frames, Vorbis audio, candidate masks and
labels; under 3 MB). ``expected.json`` records what the packaged INT8 model measured on it when it
was shipped; a change to the model, the runtime or the preprocessing that costs accuracy fails here.
Nothing here imports torch: it runs in the edge install.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "floor"


BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"
# Measured in a fresh interpreter, which must not have imported torch by the end.
MEASURE = ("import json, sys; sys.path.insert(0, sys.argv[1]); from make_floor_fixture import audit_fixture; "
           "from pathlib import Path; out = audit_fixture(Path(sys.argv[2])); "
           "out['torch_imported'] = 'torch' in sys.modules; print(json.dumps(out))")


@pytest.fixture(scope="module")
def measured():
    import subprocess

    done = subprocess.run([sys.executable, "-c", MEASURE, str(BENCH_DIR), str(FIXTURE)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fixture_is_small_and_complete():
    items = json.loads((FIXTURE / "items.json").read_text())["items"]
    assert len(items) >= 30
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 3_000_000
    assert all(any(c["type"] == "perfect" for c in item["candidates"]) for item in items
               if not item["uid"].startswith("null"))


def test_shipped_model_keeps_its_accuracy_floor(measured):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    assert measured["model"] == expected["model"] and measured["precision"] == expected["precision"]
    # ranking: at most one more expression lost than when shipped; RMSE within 0.02 of it
    assert measured["perfect_first"] >= expected["perfect_first"] - 1.0 / expected["with_perfect"] - 1e-9
    assert measured["iou_rmse"] <= expected["iou_rmse"] + 0.02


def test_floor_runs_without_torch(measured):
    assert measured["torch_imported"] is False
