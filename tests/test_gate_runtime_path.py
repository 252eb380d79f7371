"""The INT8 accuracy gate measures what ships: its raw outputs are the runtime's, exactly.

The gate (``calibration.gate.run_auditors``) audits through ``ClipSession.raw_outputs``, the call
that ``Auditor.audit`` formats. On 5 expressions of a committed benchmark, with the packaged model,
the gate's IoU and class probabilities must equal what ``Auditor.audit`` returns for the same masks.
The 5 expressions are the accuracy floor's (``tests/fixtures/floor``), read as benchmark records.
Torch-free (the base install runs it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auditor_lite.batch_audit import audit_record
from auditor_lite.calibration.gate import run_auditors
from auditor_lite.data.schema import Candidate, Clip, ExpressionRecord
from auditor_lite.runtime import Auditor
from auditor_lite.runtime.results import PROB_DECIMALS, softmax

FLOOR = Path(__file__).resolve().parent / "fixtures" / "floor"


@pytest.fixture(scope="module")
def auditor():
    return Auditor.load(intra_op_threads=1)


def _records(count: int) -> list[ExpressionRecord]:
    import json

    items = json.loads((FLOOR / "items.json").read_text())["items"][:count]
    records = []
    for item in items:
        clip = Clip(item["vid"], FLOOR / "clips" / item["vid"], FLOOR / "clips" / item["vid"] / "audio.ogg")
        cands = tuple(Candidate(Path(c["file"]).stem, item["frame"], FLOOR / "masks" / item["uid"] / c["file"],
                                c["type"], 1, c["iou"], c["action"]) for c in item["candidates"])
        records.append(ExpressionRecord(item["uid"], item["vid"], "test_s", "image", item["expression"],
                                        item["frame"], item["frame"], clip, candidates=cands))
    return records


def test_gate_outputs_equal_auditor_audit(auditor):
    records = _records(5)
    assert len(records) == 5
    run = run_auditors({"shipped": auditor}, records, progress=False)["shipped"]
    raw_iou, type_probs, action_probs = run.iou, softmax(run.type_logits), softmax(run.action_logits)
    row = 0
    config = auditor.config
    for record in records:
        audited = {(c.frame, c.cand_id): res for c, res in audit_record(auditor, record)}
        for cand in [c for c in record.candidates if c.frame == record.kfid]:
            result = audited[(cand.frame, cand.cand_id)]
            assert run.keys[row] == (record.uid, cand.frame, cand.cand_id)
            assert result.raw_iou == float(np.clip(raw_iou[row], 0.0, 1.0))
            assert result.type_probs == {t: round(float(p), PROB_DECIMALS) for t, p in zip(config.mask_types, type_probs[row])}
            assert result.action_probs == {a: round(float(p), PROB_DECIMALS) for a, p in zip(config.actions, action_probs[row])}
            row += 1
    assert row == len(run.keys) > 0
