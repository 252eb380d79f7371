"""Read the released MQ-Auditor's generated text into our predictions format.

The upstream model answers with tagged text, e.g.
``<audit> <iou> 0.7312 </iou> <mask_type> cutout </mask_type> <action> minor revision </action> </audit>``.
Parsing follows docs/mq-ravsbench.md section 4, with these documented choices where it is silent:

- ``<audit> ... </audit>`` is optional; when present only its first block is read (text the
  model adds after closing it is ignored). An unclosed ``<audit>`` reads to the end of the text.
- IoU: the numbers inside every ``<iou> ... </iou>`` block, in order of appearance; the first one
  in [0, 1] wins. Numbers outside [0, 1] are skipped, never clipped (``1.3`` is not a confident
  1.0, it is a malformed answer). No tag, or no number in [0, 1], is an ``iou`` failure.
- A tag left open by a truncated generation (``<iou> 0.73`` at the end) is read up to the next
  ``<`` or the end of the text.
- mask type: the first ``<mask_type>`` block that :func:`schema.normalize_mask_type` accepts
  (substring rules: ``gt``/``perfect``, ``cut``, ``erode``, ``dilate``, ``merge``, ``null``/
  ``empty``, ``full``/``neg``).
- action: the first ``<action>`` block that :func:`schema.normalize_action` accepts (substring
  accept / major / minor / reject).
Each field that does not parse is listed in ``failures`` and written as ``null`` in the
predictions file, where it scores like a missing prediction (IoU 0, class wrong).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from auditor_lite.data.schema import DataError, normalize_action, normalize_mask_type
from auditor_lite.eval.predictions import (
    PREDICTION_MODES, PREDICTION_SPLITS, Prediction, write_predictions,
)

FIELDS = ("iou", "mask_type", "action")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# How many failing examples a conversion report keeps for the user to look at.
MAX_EXAMPLES = 5


def _blocks(text: str, tag: str) -> list[str]:
    """Contents of every ``<tag> ... </tag>`` in order; an unclosed last tag reads to the next '<'."""
    contents = []
    pattern = re.compile(rf"<{tag}>(.*?)(?:</{tag}>|(?=<)|\Z)", re.IGNORECASE | re.DOTALL)
    for match in pattern.finditer(text):
        contents.append(match.group(1))
    return contents


def _audit_body(text: str) -> str:
    match = re.search(r"<audit>(.*?)(?:</audit>|\Z)", text, re.IGNORECASE | re.DOTALL)
    return match.group(1) if match else text


@dataclass
class ParsedAudit:
    iou: float | None
    mask_type: str | None
    action: str | None
    failures: list[str] = field(default_factory=list)  # names of the fields that did not parse
    reasons: dict[str, str] = field(default_factory=dict)  # field -> why it did not parse


def _parse_iou(body: str) -> tuple[float | None, str | None]:
    blocks = _blocks(body, "iou")
    if not blocks:
        return None, "no <iou> tag"
    seen = []
    for block in blocks:
        for token in _NUMBER.findall(block):
            value = float(token)
            if 0.0 <= value <= 1.0:
                return value, None
            seen.append(token)
    if seen:
        return None, f"no value in [0, 1] inside <iou> (saw {', '.join(seen)})"
    return None, "no number inside <iou>"


def _parse_label(body: str, tag: str, normalize) -> tuple[str | None, str | None]:
    blocks = _blocks(body, tag)
    if not blocks:
        return None, f"no <{tag}> tag"
    for block in blocks:
        try:
            return normalize(block), None
        except ValueError:
            continue
    shown = ", ".join(repr(b.strip()) for b in blocks)
    return None, f"unrecognised <{tag}> content {shown}"


def parse_mqauditor_text(text: str) -> ParsedAudit:
    """Parse one generated answer; never raises on malformed text (failures are reported)."""
    if not isinstance(text, str):
        raise TypeError(f"expected the generated text as a string, got {type(text).__name__}")
    body = _audit_body(text)
    iou, iou_why = _parse_iou(body)
    mask_type, type_why = _parse_label(body, "mask_type", normalize_mask_type)
    action, action_why = _parse_label(body, "action", normalize_action)
    reasons = {name: why for name, why in zip(FIELDS, (iou_why, type_why, action_why)) if why}
    return ParsedAudit(iou=iou, mask_type=mask_type, action=action,
                       failures=[name for name in FIELDS if name in reasons], reasons=reasons)


@dataclass
class ConversionReport:
    path_in: str
    path_out: str
    n_lines: int = 0
    failures: Counter = field(default_factory=Counter)  # field -> lines where it did not parse
    n_fully_parsed: int = 0
    examples: list[str] = field(default_factory=list)  # "line N: field: reason"

    def format(self) -> str:
        lines = [f"{self.path_in}: {self.n_lines} answers, {self.n_fully_parsed} fully parsed",
                 "parse failures per field: " + ", ".join(
                     f"{name} {self.failures.get(name, 0)}" for name in FIELDS)]
        if self.examples:
            lines.append("first failures:")
            lines.extend(f"  {example}" for example in self.examples)
        lines.append(f"wrote {self.path_out} (unparsed fields are null: scored as missing)")
        return "\n".join(lines)


_INPUT_FIELDS = {"uid": str, "frame": int, "cand_id": str, "text": str}


def _read_answer(path: Path, line_no: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"line {line_no}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(path, f"line {line_no}: expected a JSON object")
    for name, kind in _INPUT_FIELDS.items():
        value = obj.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise DataError(path, f"line {line_no}: must be a {kind.__name__}, got {value!r}", name)
    if obj["frame"] < 0:
        raise DataError(path, f"line {line_no}: must be a non-negative integer", "frame")
    for name, allowed in (("mode", PREDICTION_MODES), ("split", PREDICTION_SPLITS)):
        if obj.get(name) is not None and obj[name] not in allowed:
            raise DataError(path, f"line {line_no}: unknown value {obj[name]!r}; expected one of "
                            f"{', '.join(allowed)}", name)
    return obj


def convert_mqauditor_outputs(path_in, path_out, method: str | None = None) -> ConversionReport:
    """Turn a JSONL of ``{"uid", "frame", "cand_id", "text"}`` answers into our predictions JSONL.

    Optional input fields ``mode`` and ``split`` are carried over; ``method`` (argument) names
    the table row, default ``mq-auditor``.
    """
    path_in, path_out = Path(path_in), Path(path_out)
    if not path_in.is_file():
        raise DataError(path_in, "MQ-Auditor outputs file not found")
    report = ConversionReport(str(path_in), str(path_out))
    predictions: list[Prediction] = []
    with open(path_in, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            obj = _read_answer(path_in, line_no, line)
            parsed = parse_mqauditor_text(obj["text"])
            report.n_lines += 1
            report.failures.update(parsed.failures)
            if not parsed.failures:
                report.n_fully_parsed += 1
            for name in parsed.failures:
                if len(report.examples) < MAX_EXAMPLES:
                    report.examples.append(f"line {line_no}: {name}: {parsed.reasons[name]}")
            predictions.append(Prediction(
                uid=obj["uid"], frame=obj["frame"], cand_id=obj["cand_id"], iou=parsed.iou,
                mask_type=parsed.mask_type, action=parsed.action, method=method or "mq-auditor",
                mode=obj.get("mode"), split=obj.get("split")))
    write_predictions(path_out, predictions)
    return report
