"""The streaming auditor's "shift" audio policy, speculative contexts and batched requests
(auditor_lite.runtime.streaming, stream_plan, stream_batch): every result still equals the offline
audit of its window; ordering, duplicates, late stamps and an expression change are handled."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from test_streaming import auditor, no_worker_left_running  # noqa: F401  (fixtures: the same as there)
from test_streaming import AUDIO, EXPR, FRAMES, MASKS, TIMEOUT, feed, grid_frames, raw, results_of

from auditor_lite.data.schema import SAMPLE_RATE
from auditor_lite.runtime.stream_buffer import AudioRing
from auditor_lite.runtime.streaming import StreamingAuditor


@pytest.fixture
def stream(auditor):
    made = []

    def make(**options):
        options.setdefault("audio_policy", "shift")
        made.append(StreamingAuditor(auditor, options.pop("expression", EXPR), **options))
        return made[-1]

    yield make
    for s in made:
        assert s.close(drain=False, timeout=TIMEOUT)


def shifted_audio(second):
    """The shift policy's audio of the window of ``second``: the 10 s ending at its grid time."""
    return AUDIO[round((second - 9.5) * SAMPLE_RATE):round((second + 0.5) * SAMPLE_RATE)].copy()


def offline(auditor, second, masks=MASKS, expression=EXPR):
    return auditor.audit(grid_frames(second), shifted_audio(second), expression, masks, frame_index=9)


def wait_for(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def test_the_policy_is_checked_by_name(auditor):
    with pytest.raises(ValueError, match="audio_policy"):
        StreamingAuditor(auditor, EXPR, audio_policy="later")


def test_the_audio_ring_notes_half_seconds_for_the_shift_policy():
    ring = AudioRing(3 * SAMPLE_RATE, SAMPLE_RATE // 2)
    ring.write(0, np.zeros(SAMPLE_RATE + SAMPLE_RATE // 2, np.float32), 7.0)
    assert ring.done_time(SAMPLE_RATE // 2, -1.0) == 7.0 and ring.done_time(3 * SAMPLE_RATE // 2, -1.0) == 7.0
    assert ring.done_time(2 * SAMPLE_RATE, -1.0) == -1.0


def test_a_shifted_window_is_audited_at_once_and_equals_the_offline_audit(auditor, stream):
    s = stream(audio_wait_s=60.0, frame_wait_s=60.0, speculate=False)
    feed(s, 0, 11.45)                     # frames to 11.413 (the picture shown at 11.5), audio to 11.5
    feed(s, 11.45, 11.5, frames=False)
    rid = s.submit(11.42, MASKS, ids=["a", "b"])   # the mask's frame: second 10 is the newest complete one
    r = s.get_result(timeout=TIMEOUT)      # no more data: the window is complete already
    assert r.request_id == rid and r.ok and r.second == 10 and r.audio_policy == "shift"
    assert r.audio_wait_s == 0 and r.audio_missing_s == 0 and r.frame_wait_s == 0
    assert [x.result.raw_iou for x in r.masks] == pytest.approx([e.raw_iou for e in offline(auditor, 10)], abs=1e-4)
    feed(s, 11.5, 11.7)                    # the grid time 11.5 passed: second 11 is complete
    s.submit(11.613, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert r.second == 11 and raw(r) == pytest.approx([e.raw_iou for e in offline(auditor, 11)], abs=1e-4)
    assert r.key_frame_stamp_s <= 11.5 and r.audio_wait_s == 0


def test_order_duplicates_and_late_stamps(auditor, stream):
    s = stream(margin_s=4, speculate=False)
    feed(s, 0, 14.6)
    ids = [s.submit(t, MASKS) for t in (13.7, 11.6, 12.9, 12.9, 11.4)]   # out of order, one duplicate
    got = results_of(s, len(ids))
    assert [got[i].second for i in ids] == [13, 11, 12, 12, 10], [got[i].error for i in ids]
    for i in ids:
        assert got[i].ok, got[i].error
        assert raw(got[i]) == pytest.approx([e.raw_iou for e in offline(auditor, got[i].second)], abs=1e-4)
    assert raw(got[ids[2]]) == raw(got[ids[3]])
    feed(s, 14.6, 20.6)
    s.submit(12.9, MASKS)                  # its window left the buffer
    late = s.get_result(timeout=TIMEOUT)
    assert late.error_code == "too_late" and "second 12" in late.error


def test_ready_requests_of_one_window_are_audited_in_one_masks_call(auditor, stream):
    s = stream(frame_wait_s=60.0, speculate=False)
    feed(s, 0, 11.45)
    masks = [MASKS[:1], MASKS[1:], MASKS, MASKS[::-1]]
    ids = [s.submit(11.7 + 0.01 * i, m) for i, m in enumerate(masks)]   # second 11 is not complete yet
    s.submit(11.7, MASKS, expression="the cello")                        # another expression: its own call
    feed(s, 11.45, 11.75)                                                # all five become ready at once
    got = results_of(s, 5)
    stats = s.stats
    assert stats["batches"] == 1 and stats["batched_requests"] == 4 and stats["context_encodes"] == 2
    full = [e.raw_iou for e in offline(auditor, 11)]
    for i, want in zip(ids, (full[:1], full[1:], full, full[::-1])):
        assert raw(got[i]) == pytest.approx(want, abs=1e-5)
    assert [m.result.index for m in got[ids[3]].masks] == [0, 1]
    assert not got[ids[0]].context_reused and all(got[i].context_reused for i in ids[1:])


def test_a_masks_outputs_alone_and_in_a_batch_are_equal(auditor):
    rng = np.random.default_rng(3)
    many = rng.random((7, *MASKS.shape[1:])) > 0.6
    session = auditor.session(EXPR, grid_frames(11), shifted_audio(11))
    together, _ = session.raw_outputs(many, 9)
    for i in range(len(many)):
        alone, _ = session.raw_outputs(many[i:i + 1], 9)
        for a, t in zip(alone, together):
            np.testing.assert_allclose(a[0], t[i], atol=1e-5)


def test_the_idle_worker_encodes_the_newest_windows_context_ahead(auditor, stream):
    s = stream()
    feed(s, 0, 11.7)
    assert wait_for(lambda: s.stats.get("contexts_ahead", 0) >= 1)
    before = s.stats["context_encodes"]
    s.submit(11.613, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert r.second == 11 and r.context_reused and s.stats["context_encodes"] == before
    assert raw(r) == pytest.approx([e.raw_iou for e in offline(auditor, 11)], abs=1e-4)
    s.set_expression("the cello")          # a new expression: its context is encoded ahead too
    assert wait_for(lambda: s.stats["contexts_ahead"] >= 2 + (s.stats["contexts_ahead"] > 2))
    s.submit(11.65, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert r.expression == "the cello" and r.context_reused
    assert raw(r) == pytest.approx([e.raw_iou for e in offline(auditor, 11, expression="the cello")], abs=1e-4)
    s.submit(11.66, MASKS, expression=EXPR)   # a request's own expression still counts
    assert s.get_result(timeout=TIMEOUT).expression == EXPR


def test_the_wait_policy_still_speculates_once_the_audio_is_there(auditor):
    with StreamingAuditor(auditor, EXPR) as s:
        feed(s, 0, 12.05)
        assert wait_for(lambda: s.stats.get("contexts_ahead", 0) >= 1)
        s.submit(11.3, MASKS)
        r = s.get_result(timeout=TIMEOUT)
        assert r.second == 11 and r.context_reused and r.audio_policy == "wait"


def test_a_request_arriving_during_its_windows_speculative_encode_waits_for_it(auditor, stream, monkeypatch):
    """The context graph runs once per window: a request that arrives while the idle worker encodes
    its window's context ahead gets that context (no second encode), and equals the offline audit."""
    started, release, calls = threading.Event(), threading.Event(), []
    real = auditor.run_context

    def slow_context(feed_):
        calls.append(1)
        started.set()
        assert release.wait(TIMEOUT)
        return real(feed_)

    monkeypatch.setattr(auditor, "run_context", slow_context)
    s = stream()
    feed(s, 0, 11.7)
    assert started.wait(TIMEOUT)                 # the speculative encode of window 11 is running
    s.submit(11.613, MASKS)
    time.sleep(0.05)
    release.set()
    r = s.get_result(timeout=TIMEOUT)
    assert r.ok and r.second == 11 and r.context_reused
    assert len(calls) == 1 and s.stats["context_encodes"] == 1 and s.stats["sessions_created"] == 1
    assert raw(r) == pytest.approx([e.raw_iou for e in offline(auditor, 11)], abs=1e-4)
