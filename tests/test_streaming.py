"""The streaming auditor (auditor_lite.runtime.streaming): the grid sampling proven against the
offline audit, context reuse, and every edge case of a live stream. Torch-free: the packaged model,
synthetic frames and audio. No sleeps: results are awaited on the results queue with timeouts."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from auditor_lite.data.schema import SAMPLE_RATE
from auditor_lite.runtime import Auditor
from auditor_lite.runtime.stream_buffer import AudioRing, FrameGrid, frame_slot, request_second
from auditor_lite.runtime.streaming import StreamingAuditor, StreamResult

H, W = 48, 64
FPS, PHASE = 5, 0.013            # frames at 0.013 + i / 5 s: no stamp falls on a grid time
CHUNK = 1600                     # 0.1 s audio chunks
EXPR = "the dog on the left"
RNG = np.random.default_rng(7)
FRAMES = RNG.integers(0, 256, (200, H, W, 3), dtype=np.uint8)
STAMPS = [PHASE + i / FPS for i in range(len(FRAMES))]
AUDIO = (0.1 * RNG.standard_normal(40 * SAMPLE_RATE)).astype(np.float32)
MASKS = np.zeros((2, H, W), bool)
MASKS[0, 10:30, 12:40] = True
MASKS[1, 5:45, 30:60] = True
TIMEOUT = 20.0


@pytest.fixture(autouse=True)
def no_worker_left_running():
    yield
    alive = [t for t in threading.enumerate() if t.name == "streaming-auditor"]
    assert not alive, f"{len(alive)} streaming worker(s) still running after the test"


@pytest.fixture(scope="module")
def auditor():
    return Auditor.load(intra_op_threads=1)


@pytest.fixture
def stream(auditor):
    made = []

    def make(**options):
        options.setdefault("speculate", False)     # counts of encodes are exact without contexts ahead
        made.append(StreamingAuditor(auditor, options.pop("expression", EXPR), **options))
        return made[-1]

    yield make
    for s in made:
        assert s.close(drain=False, timeout=TIMEOUT)


def feed(s, t0, t1, frames=True, audio=True, order=None):
    """Push the frames stamped in [t0, t1) and the audio chunks starting in [t0, t1)."""
    if frames:
        picked = [i for i, t in enumerate(STAMPS) if t0 <= t < t1]
        for i in (order(picked) if order else picked):
            s.push_frame(STAMPS[i], FRAMES[i])
    if audio:
        for start in range(0, len(AUDIO), CHUNK):
            if t0 <= start / SAMPLE_RATE < t1:
                s.push_audio(start / SAMPLE_RATE, AUDIO[start:start + CHUNK])


def grid_frames(second):
    """The benchmark's frames of the window ending at ``second``: the picture shown at k + 0.5."""
    return FRAMES[[max(i for i, t in enumerate(STAMPS) if t <= k + 0.5) for k in range(second - 9, second + 1)]]


def window_audio(second):
    return AUDIO[(second - 9) * SAMPLE_RATE:(second + 1) * SAMPLE_RATE].copy()


def offline(auditor, second, masks=MASKS, audio=None, expression=EXPR):
    audio = window_audio(second) if audio is None else audio
    return auditor.audit(grid_frames(second), audio, expression, masks, frame_index=9)


def raw(result: StreamResult):
    return [m.result.raw_iou for m in result.masks]


def results_of(s, n):
    got = [s.get_result(timeout=TIMEOUT) for _ in range(n)]
    return {r.request_id: r for r in got}


# ---------------------------------------------------------------------------------------- buffers
def test_the_grid_keeps_the_picture_shown_at_each_grid_time_whatever_the_order():
    assert [frame_slot(t) for t in (11.5, 11.49, 11.51, 10.51)] == [11, 11, 12, 11]
    assert [request_second(t) for t in (11.0, 11.99, -0.5)] == [11, 11, -1]
    stamps = [10.55, 10.9, 11.2, 11.5, 11.7, 12.4]
    picks = []
    for order in (stamps, stamps[::-1], [11.2, 10.9, 12.4, 11.5, 10.55, 11.7]):
        grid = FrameGrid(12)
        for t in order:
            grid.push(t, np.full((H, W, 3), int(t * 10), np.uint8), now=0.0)
        picks.append({s: v.stamp for s, v in grid.slots.items()})
        assert grid.settled(11) and not grid.settled(12)
    assert picks[0] == picks[1] == picks[2] == {11: 11.5, 12: 12.4}
    grid = FrameGrid(12)
    assert grid.push(3.2, FRAMES[0], 0.0) == "kept"
    assert grid.push(3.2, FRAMES[1], 0.0) == "duplicate"          # the first of a stamp is kept
    assert grid.push(3.1, FRAMES[2], 0.0) == "superseded"
    assert np.array_equal(grid.slots[3].frame, FRAMES[0])
    assert grid.push(40.0, FRAMES[3], 0.0) == "kept" and grid.floor == 29
    assert grid.push(3.4, FRAMES[4], 0.0) == "too_old"
    assert grid.push(40.2, np.zeros((30, 30, 3), np.uint8), 0.0) == "reset"
    assert list(grid.slots) == [40] and grid.floor == 40 and "size changed" in grid.floor_reason


def test_the_audio_ring_zero_fills_gaps_keeps_first_and_stays_bounded():
    ring = AudioRing(3 * SAMPLE_RATE)
    one = np.full(SAMPLE_RATE, 0.5, np.float32)
    assert ring.write(0, one, 0.0) == (0, 0)
    assert ring.write(2 * SAMPLE_RATE, one, 1.0) == (SAMPLE_RATE, 0)         # a 1 s gap
    assert ring.write(SAMPLE_RATE // 2, -one, 2.0) == (0, SAMPLE_RATE // 2)  # late: fills the gap only
    wave, received = ring.read(0, 3 * SAMPLE_RATE)
    assert received == int(2.5 * SAMPLE_RATE)
    assert np.all(wave[:SAMPLE_RATE] == 0.5) and np.all(wave[SAMPLE_RATE:int(1.5 * SAMPLE_RATE)] == -0.5)
    assert np.all(wave[int(1.5 * SAMPLE_RATE):2 * SAMPLE_RATE] == 0) and np.all(wave[2 * SAMPLE_RATE:] == 0.5)
    for k in range(3, 60):                                                 # an endless stream
        ring.write(k * SAMPLE_RATE, one * (k % 2), float(k))
    assert ring.data.size == 3 * SAMPLE_RATE and len(ring.done_at) <= 8
    wave, received = ring.read(55 * SAMPLE_RATE, 60 * SAMPLE_RATE)        # older than the ring: missing
    assert received == 3 * SAMPLE_RATE and np.all(wave[:2 * SAMPLE_RATE] == 0)
    assert ring.done_at[59] == 59.0 and ring.covered(60 * SAMPLE_RATE)


def test_memory_stays_bounded_over_an_endless_stream(auditor, stream):
    s = stream(margin_s=2)
    frame = FRAMES[0]
    chunk = AUDIO[:SAMPLE_RATE // 2]
    for k in range(0, 600):                          # 300 s at 2 fps and 0.5 s chunks
        s.push_frame(0.1 + k / 2, frame)
        s.push_audio(k / 2, chunk)
    grid, ring = s._frames, s._audio
    assert len(grid.slots) <= 12 and len(grid.settled_at) <= 24 and len(ring.done_at) <= 30
    assert ring.data.size == 14 * SAMPLE_RATE
    assert s.stats["frames_in"] == 600 and s.stats["audio_chunks"] == 600


# ---------------------------------------------------------------------------------------- sampling
def test_a_streamed_audit_equals_the_offline_audit_of_the_same_window(auditor, stream):
    s = stream()
    feed(s, 0, 12.6)
    rid = s.submit(11.3, MASKS, ids=["a", "b"])
    r = s.get_result(timeout=TIMEOUT)
    assert r.request_id == rid and r.ok and r.second == 11 and r.expression == EXPR
    assert r.key_frame_stamp_s == pytest.approx(STAMPS[57])   # 11.413: the picture shown at 11.5
    assert [m.mask_id for m in r.masks] == ["a", "b"] and [m.result.index for m in r.masks] == [0, 1]
    assert r.audio_missing_s == 0 and r.audio_wait_s == 0 and not r.context_reused
    expected = offline(auditor, 11)
    assert raw(r) == [e.raw_iou for e in expected]              # exactly: same tensors, same graphs
    assert [m.result for m in r.masks] == expected
    assert r.total_s >= r.latency_s >= 0


def test_out_of_order_duplicate_and_stale_frames_give_the_same_window(auditor, stream):
    s = stream()
    rng = np.random.default_rng(1)
    feed(s, 0, 12.6, order=lambda idx: list(rng.permutation(idx)))
    assert s.push_frame(STAMPS[57], FRAMES[0]) == "duplicate"   # the first of a stamp is kept
    feed(s, 12.6, 13.6)
    assert s.push_frame(0.5, FRAMES[0]) == "too_old"            # older than the buffer's seconds
    s.submit(11.9, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert raw(r) == [e.raw_iou for e in offline(auditor, 11)]
    stats = s.stats
    assert stats["frames_duplicate"] == 1 and stats["frames_too_old"] == 1


# ---------------------------------------------------------------------------------------- contexts
def test_the_context_is_encoded_once_per_window_and_expression(auditor, stream):
    s = stream()
    feed(s, 0, 12.6)
    s.submit(11.1, MASKS[:1])
    s.submit(11.8, MASKS[1:])
    got = results_of(s, 2)
    assert not got[0].context_reused and got[1].context_reused
    assert s.stats["context_encodes"] == 1 and s.stats["sessions_created"] == 1
    feed(s, 12.6, 13.6)                                         # the window slides: a new clip
    s.submit(12.2, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert not r.context_reused and raw(r) == [e.raw_iou for e in offline(auditor, 12)]
    assert s.stats["context_encodes"] == 2


def test_an_expression_change_opens_a_new_session(auditor, stream):
    s = stream(expression=None)
    feed(s, 0, 12.6)
    s.submit(11.2, MASKS)                                       # no expression yet
    s.set_expression(EXPR)
    s.submit(11.2, MASKS)
    s.set_expression("the cello")
    s.submit(11.2, MASKS)                                       # the expression at submit time counts
    s.submit(11.2, MASKS, expression=EXPR)                      # a request may carry its own
    got = results_of(s, 4)
    assert got[0].error_code == "no_expression"
    assert got[1].expression == EXPR and got[2].expression == "the cello" and got[3].context_reused
    assert raw(got[2]) == [e.raw_iou for e in offline(auditor, 11, expression="the cello")]
    assert raw(got[3]) == raw(got[1])
    assert s.stats["sessions_created"] == 2 and s.stats["context_encodes"] == 2
    with pytest.raises(ValueError):
        s.set_expression("   ")


def test_a_sliding_stream_prepares_each_frame_once_and_equals_the_offline_audit(auditor, stream):
    s = stream()
    feed(s, 0, 12.6)
    deadline = time.monotonic() + TIMEOUT          # idle, the worker prepares the settled frames
    while s._prep.stats["frames_prepared"] < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s._prep.stats["frames_prepared"] >= 10 and s._prep.stats["windows_prepared"] == 0
    for second in (11, 12, 13, 14):
        s.submit(second + 0.2, MASKS)
        s.submit(second + 0.7, MASKS, expression="the cello")   # another expression: the window's tensors
        feed(s, second + 1.6, second + 2.6)
        got = results_of(s, 2)
        assert [raw(r) for r in got.values()] == [[e.raw_iou for e in offline(auditor, second, expression=x)]
                                                  for x in (EXPR, "the cello")]
    prep = s._prep.stats
    assert prep["windows_prepared"] == 4 and prep["windows_reused"] == 4
    # once per frame, not per window: at most the 16 settled seconds 0..15 fed (the idle worker may
    # prepare seconds 0 and 1 while the first feed is still running) and their 15 pairs
    assert prep["frames_prepared"] <= 16 and prep["pairs_prepared"] <= 15
    assert len(s._prep._frames) <= 12 + 1 and len(s._prep._pairs) <= 12


# ---------------------------------------------------------------------------------------- edge cases
def test_late_early_and_malformed_requests_get_error_results(auditor, stream):
    s = stream(frame_wait_s=0.05)
    feed(s, 0, 6.6)
    s.submit(5.5, MASKS, request_id="early")                   # the window starts before the stream
    s.submit(9.2, MASKS, request_id="future")                  # no frame reaches 9.5 in time
    s.submit(math.nan, MASKS, request_id="nan")
    s.submit(5.5, [], request_id="none")
    got = results_of(s, 4)
    assert got["early"].error_code == "too_few_frames" and "missing [-4, -3, -2, -1]" in got["early"].error
    assert got["future"].error_code == "future" and got["future"].frame_wait_s > 0
    assert got["nan"].error_code == "bad_request" and got["none"].error_code == "bad_request"
    feed(s, 6.6, 16.6)
    s.submit(3.9, MASKS, request_id="late")
    r = s.get_result(timeout=TIMEOUT)
    assert r.error_code == "too_late" and "holds seconds" in r.error and not r.masks
    assert s.stats["errors"] == 5 and s.stats["audited"] == 0


def test_a_future_request_waits_for_its_frames(auditor, stream):
    s = stream(frame_wait_s=60.0, audio_wait_s=60.0)
    s.submit(11.05, MASKS)                                      # before any data: it waits
    feed(s, 0, 12.6)
    r = s.get_result(timeout=TIMEOUT)
    assert r.ok and raw(r) == [e.raw_iou for e in offline(auditor, 11)]
    assert r.total_s >= r.frame_wait_s >= 0


def test_the_audio_after_the_key_frame_is_awaited_and_reported_apart(auditor, stream):
    s = stream(audio_wait_s=60.0)
    feed(s, 0, 12.6, audio=False)
    feed(s, 0, 11.5, frames=False)                              # audio up to 11.5 s only
    s.submit(11.3, MASKS)
    feed(s, 11.5, 12.6, frames=False)
    r = s.get_result(timeout=TIMEOUT)
    assert r.ok and r.audio_missing_s == 0 and r.audio_wait_s >= 0
    assert r.latency_s == pytest.approx(r.total_s - r.audio_wait_s - r.frame_wait_s)
    assert raw(r) == [e.raw_iou for e in offline(auditor, 11)]


def test_audio_that_does_not_come_is_zero_filled_and_flagged(auditor, stream):
    s = stream(audio_wait_s=0.05)
    feed(s, 0, 12.6, audio=False)
    feed(s, 0, 11.5, frames=False)
    s.submit(11.3, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert r.ok and r.audio_missing_s == pytest.approx(0.5) and r.audio_wait_s >= 0.05
    audio = window_audio(11)
    audio[-SAMPLE_RATE // 2:] = 0
    assert raw(r) == [e.raw_iou for e in offline(auditor, 11, audio=audio)]


def test_a_gap_in_the_audio_is_zero_filled_and_flagged(auditor, stream):
    s = stream()
    feed(s, 0, 12.6, audio=False)
    feed(s, 0, 4.0, frames=False)
    feed(s, 4.5, 12.6, frames=False)                            # 0.5 s lost at 4.0 s
    s.submit(11.3, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert r.ok and r.audio_missing_s == pytest.approx(0.5)
    audio = window_audio(11)
    audio[2 * SAMPLE_RATE:int(2.5 * SAMPLE_RATE)] = 0
    assert raw(r) == [e.raw_iou for e in offline(auditor, 11, audio=audio)]
    assert s.stats["audio_gaps"] == 1 and s.stats["audio_gap_samples"] == SAMPLE_RATE // 2


def test_silent_audio_is_an_input_error_unless_allowed(auditor, stream):
    s = stream()
    feed(s, 0, 12.6, audio=False)
    s.push_audio(0.0, np.zeros(13 * SAMPLE_RATE, np.float32))
    s.submit(11.3, MASKS)
    r = s.get_result(timeout=TIMEOUT)
    assert r.error_code == "input" and "silent" in r.error


def test_masks_of_the_wrong_size_get_their_own_error(auditor, stream):
    s = stream()
    feed(s, 0, 12.6)
    s.submit(11.3, {"good": MASKS[0], "small": np.zeros((10, 10), bool), "soft": np.full((H, W), 0.5)})
    r = s.get_result(timeout=TIMEOUT)
    assert r.ok and [m.mask_id for m in r.masks] == ["good", "small", "soft"]
    assert r.masks[0].result.raw_iou == offline(auditor, 11, masks=MASKS[:1])[0].raw_iou
    assert "'small'" in r.masks[1].error and "its frame is 64x48" in r.masks[1].error
    assert "'soft'" in r.masks[2].error and "not a binary mask" in r.masks[2].error
    assert s.stats["mask_errors"] == 2


def test_a_new_frame_size_resets_the_grid(auditor, stream):
    s = stream()
    feed(s, 0, 12.6)
    bigger = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert s.push_frame(12.8, bigger) == "reset"
    s.submit(11.3, MASKS)                                       # its frames were dropped
    r = s.get_result(timeout=TIMEOUT)
    assert r.error_code == "too_late" and "size changed to 80x60" in r.error
    for k in range(1, 52):
        s.push_frame(12.8 + k / FPS, bigger)
    feed(s, 12.6, 23.6, frames=False)
    new = np.zeros((60, 80), bool)
    new[10:40, 20:50] = True
    s.submit(22.4, [MASKS[0], new], ids=["old", "new"])
    r = s.get_result(timeout=TIMEOUT)
    assert r.ok and "mask 'old'" in r.masks[0].error and r.masks[1].result is not None
    assert s.stats["resolution_changes"] == 1


# ---------------------------------------------------------------------------------------- queueing
def test_a_full_queue_drops_the_oldest_and_every_request_gets_one_result(auditor, stream):
    seen = []
    s = stream(max_pending=2, frame_wait_s=60.0, audio_wait_s=60.0, callback=seen.append)
    ids = [s.submit(11.2, MASKS) for _ in range(4)]             # all wait for frames: 0 and 1 dropped
    dropped = results_of(s, 2)
    assert sorted(dropped) == ids[:2] and all(r.error_code == "dropped" for r in dropped.values())
    feed(s, 0, 12.6)
    audited = results_of(s, 2)
    assert sorted(audited) == ids[2:] and all(r.ok for r in audited.values())
    assert s.wait_idle(TIMEOUT)
    stats = s.stats
    assert (stats["accepted"], stats["dropped"], stats["audited"], stats["errors"], stats["results"]) == (4, 2, 2, 2, 4)
    assert sorted(r.request_id for r in seen) == ids


def test_the_producer_never_waits_for_a_busy_worker(auditor, stream):
    entered, release, released = threading.Event(), threading.Event(), []

    def stuck(result):                                          # the worker blocks here, unlocked
        entered.set()
        released.append(release.wait(TIMEOUT))

    s = stream(max_pending=3, callback=stuck)
    feed(s, 0, 12.6)
    first = s.submit(11.3, MASKS)
    assert entered.wait(TIMEOUT)
    feed(s, 12.6, 13.6)                                         # pushes and submits return at once
    later = [s.submit(12.1 + k / 10, MASKS) for k in range(5)]
    assert s.stats["dropped"] == 2 and s.stats["pending"] == 3
    release.set()
    got = results_of(s, 6)
    assert got[first].ok and [got[i].error_code for i in later] == ["dropped"] * 2 + [None] * 3
    assert s.wait_idle(TIMEOUT) and released == [True] * 6


def test_close_answers_or_drains_what_waits_and_stops_the_worker(auditor, stream):
    def broken(result):
        raise RuntimeError("callback bug")

    s = stream(frame_wait_s=60.0, audio_wait_s=60.0, callback=broken)
    s.submit(11.2, MASKS, request_id="cancelled")
    assert s.close(drain=False, timeout=TIMEOUT) and not s._thread.is_alive()
    assert s.get_result(timeout=TIMEOUT).error_code == "closed"
    assert s.stats["callback_errors"] == 1
    with pytest.raises(RuntimeError):
        s.submit(11.2, MASKS)
    assert s.close() and s.push_frame(1.0, FRAMES[0]) == "closed"

    with StreamingAuditor(auditor, EXPR, frame_wait_s=60.0, audio_wait_s=60.0) as d:
        feed(d, 0, 12.6, audio=False)
        feed(d, 0, 11.5, frames=False)
        d.submit(11.3, MASKS, request_id="tail")                # waits for the audio up to 12 s
        d.submit(30.0, MASKS, request_id="far")                 # waits for frames
    assert not d._thread.is_alive()                            # closing ended the stream:
    got = results_of(d, 2)
    assert got["tail"].ok and got["tail"].audio_missing_s == pytest.approx(0.5)   # zero-filled
    assert got["far"].error_code == "future"
