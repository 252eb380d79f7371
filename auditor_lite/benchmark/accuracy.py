"""Accuracy beside speed: every artifact scored on the same slice of a benchmark.

Each auditor (one per precision) audits the candidates
of the first N expressions of a test split with the runtime's own benchmark path
(:func:`auditor_lite.batch_audit.audit_record`: one session per expression, one context per
audited frame), and the predictions are scored by the evaluation protocol
(:func:`auditor_lite.eval.protocol.evaluate_method`): overall IoU RMSE and macro F2 of the mask
type (F2-M) and of the action (F2-A), in points.
"""

from __future__ import annotations

import time
from itertools import islice

from auditor_lite.data.reader import Benchmark
from auditor_lite.data.schema import DataError

DEFAULT_EXPRESSIONS = 100
DEFAULT_SPLIT = "test_s"
DEFAULT_MODE = "image"


def benchmark_slice(bench, expressions: int = DEFAULT_EXPRESSIONS, split: str = DEFAULT_SPLIT,
                    mode: str = DEFAULT_MODE) -> list:
    """The first ``expressions`` records of ``split``/``mode`` (those with candidates)."""
    if expressions < 1:
        raise ValueError(f"accuracy expressions must be >= 1, got {expressions}")
    benchmark = Benchmark(bench)
    if (split, mode) not in benchmark.available():
        found = ", ".join(f"{s}/{m}" for s, m in benchmark.available()) or "none"
        raise DataError(benchmark.root, f"no {split}/{mode} split to score accuracy on (found {found})")
    records = [r for r in benchmark.records(split, mode) if r.candidates]
    return list(islice(records, expressions))


def score_auditor(auditor, records: list, name: str, split: str = DEFAULT_SPLIT,
                  mode: str = DEFAULT_MODE) -> dict:
    """Audit ``records`` with ``auditor`` and score them: ``{"rmse", "f2_m", "f2_a", "masks",
    "expressions", "seconds"}`` (F2 in points; None where the protocol leaves it undefined)."""
    from auditor_lite.eval.protocol import evaluate_method, ground_truth_table
    from auditor_lite.batch_audit import audit_record, prediction

    predictions = {}
    start = time.perf_counter()
    for record in records:
        for cand, result in audit_record(auditor, record):
            pred = prediction(record, cand, result, name, mode, split)
            predictions[pred.key] = pred
    seconds = time.perf_counter() - start
    overall = evaluate_method(name, ground_truth_table(records, split, mode), predictions).metrics["overall"]

    def points(summary):
        value = summary.get("macro_f")
        return None if value is None else 100.0 * value

    return {"rmse": overall["rmse"], "f2_m": points(overall["f2_m"]), "f2_a": points(overall["f2_a"]),
            "masks": len(predictions), "expressions": len(records), "seconds": seconds}


def accuracy_table(auditors: dict, bench, expressions: int = DEFAULT_EXPRESSIONS,
                   split: str = DEFAULT_SPLIT, mode: str = DEFAULT_MODE) -> dict:
    """``{"split", "mode", "expressions", "bench", "artifacts": {name: score_auditor(...)}}``."""
    records = benchmark_slice(bench, expressions, split, mode)
    if not records:
        raise DataError(bench, f"{split}/{mode} has no expression with candidates")
    return {"bench": str(bench), "split": split, "mode": mode, "expressions": len(records),
            "artifacts": {name: score_auditor(auditor, records, name, split, mode)
                          for name, auditor in auditors.items()}}
