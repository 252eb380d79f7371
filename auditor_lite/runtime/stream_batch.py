"""The streaming auditor's requests and results, and the batched audit of several requests' masks.

Requests that are ready for the same window and expression are audited together: their masks go
through one masks-graph call against the window's one context, and the results are split back per
request (``audit_batch``). The masks graph scores each mask on its own (its outputs do not depend
on the other masks of the call: tests/test_streaming.py checks a mask alone and in a batch within
1e-5), so a batch gives each request what it would get alone. docs/streaming.md section 3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from auditor_lite.data.schema import NUM_FRAMES
from auditor_lite.runtime.inputs import InputError, check_masks
from auditor_lite.runtime.results import AuditResult

KEY_INDEX = NUM_FRAMES - 1      # the mask's frame is the newest frame of its window


@dataclass(frozen=True)
class MaskOutcome:
    """One mask of a request: its ``AuditResult`` (``index`` = its position in the request), or why not."""

    mask_id: object
    result: AuditResult | None
    error: str | None = None


@dataclass(frozen=True)
class StreamResult:
    """The one result of an accepted request.

    ``error_code`` / ``error`` (``None`` when the window was audited): ``dropped``, ``closed``,
    ``bad_request``, ``no_expression``, ``expression``, ``too_late``, ``future``,
    ``too_few_frames``, ``input`` (the window was refused, e.g. silent audio), ``internal``.
    Times in seconds: ``latency_s`` is submit -> result less the waits for data
    (``frame_wait_s``: for the grid frame of a second not yet complete; ``audio_wait_s``: for the
    audio up to the end of the window); ``total_s`` includes them. ``audio_missing_s``: audio of
    the window that never arrived (gaps, a tail that did not come in time), audited as zeros.
    ``audio_policy``: ``wait`` (the window's audio ends at ``second + 1``) or ``shift`` (it ends at
    the key frame's grid time ``second + 0.5``).
    """

    request_id: object
    stamp_s: float
    second: int | None
    expression: str | None
    masks: tuple[MaskOutcome, ...] = ()
    error_code: str | None = None
    error: str | None = None
    key_frame_stamp_s: float | None = None
    latency_s: float = 0.0
    frame_wait_s: float = 0.0
    audio_wait_s: float = 0.0
    total_s: float = 0.0
    audio_missing_s: float = 0.0
    context_reused: bool = False
    audio_policy: str = "wait"

    @property
    def ok(self) -> bool:
        """The window was audited (masks may still carry their own errors)."""
        return self.error_code is None

    @property
    def results(self) -> list[AuditResult]:
        return [m.result for m in self.masks if m.result is not None]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class StreamRequest:
    request_id: object
    stamp: float
    items: list                 # [(mask_id, array)]
    expression: str | None
    submitted: float
    bad: str | None = None


def audit_batch(session, requests, shape) -> tuple[list[tuple], int]:
    """Audit the masks of ``requests`` (``StreamRequest``s of one window and expression) in one
    masks-graph call of ``session`` at the key frame. Returns, per request, its ``MaskOutcome``s in
    the request's order, and the number of masks refused (each gets an error naming its id)."""
    outcomes = [[None] * len(r.items) for r in requests]
    stacks, owners = [], []                      # owners: (request position, mask position)
    for j, r in enumerate(requests):
        for i, (mask_id, mask) in enumerate(r.items):
            try:
                stacks.append(check_masks([mask], shape)[0])
                owners.append((j, i))
            except InputError as exc:
                outcomes[j][i] = MaskOutcome(mask_id, None, f"mask {mask_id!r} (masks[{i}]): {exc.message}")
    audited = session.audit(np.concatenate(stacks), KEY_INDEX) if stacks else []
    for (j, i), result in zip(owners, audited):
        outcomes[j][i] = MaskOutcome(requests[j].items[i][0], dataclasses.replace(result, index=i))
    refused = sum(len(r.items) for r in requests) - len(owners)
    return [tuple(o) for o in outcomes], refused
