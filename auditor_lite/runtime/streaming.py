"""StreamingAuditor: audit stamped mask requests against a live camera + microphone stream.

Transport-free and torch-free (numpy, the stdlib and the runtime). The producer pushes frames at
any rate, audio chunks and the expression; requests ``submit(stamp, masks)`` never block it. A
worker thread audits each request against the benchmark-shaped window at the request's stamp:
the 10 grid frames of seconds ``s - 9 .. s`` (the key frame, index 9, is the mask's) and 10 s of
audio. ``audio_policy="wait"`` (the default): ``s = floor(stamp)`` and the audio is
``[s - 9, s + 1)``, as in training, so the request waits for the audio after its key frame.
``audio_policy="shift"``: ``s = floor(stamp - 0.5)``, the newest second whose grid frame is
complete at the stamp, and the audio is ``[s - 9.5, s + 0.5)``, ending at the key frame: nothing
to wait for, at the cost of a fixed 0.5 s shift of sound against picture. Ready requests of one
window are audited in one masks-graph call, and an idle worker encodes the newest window's context
for the current expression before any request asks. Policies and their reasons: docs/streaming.md.

    with StreamingAuditor(Auditor.load(), "the barking dog", callback=print) as stream:
        stream.push_frame(t, frame); stream.push_audio(t0, chunk)      # producer, any thread
        stream.submit(t, [mask_a, mask_b], ids=["a", "b"])             # -> request id; result later
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import Counter, OrderedDict, deque

import numpy as np

from auditor_lite.data.schema import NUM_FRAMES, SAMPLE_RATE
from auditor_lite.runtime.inputs import InputError, check_expression, check_frame
from auditor_lite.runtime.stream_batch import KEY_INDEX, MaskOutcome, StreamRequest, StreamResult, audit_batch
from auditor_lite.runtime.stream_buffer import GRID_OFFSET_S, AudioRing, FrameGrid, grid_time_passed, seconds
from auditor_lite.runtime.stream_plan import WindowPlanner
from auditor_lite.runtime.stream_prep import WindowPrep


AUDIO_POLICIES = ("wait", "shift")
__all__ = ["AUDIO_POLICIES", "MaskOutcome", "StreamResult", "StreamingAuditor"]


class StreamingAuditor(WindowPlanner):
    """See the module docstring and docs/streaming.md. Counters: :attr:`stats`."""

    def __init__(self, auditor, expression: str | None = None, *, max_pending: int = 64,
                 frame_wait_s: float = 2.0, audio_wait_s: float = 1.0, margin_s: int = 2,
                 audio_jitter_s: float = 0.01, grid_origin_s: float = 0.0, allow_silent: bool = False,
                 callback=None, result_queue_size: int = 1024, session_cache: int = 4,
                 audio_policy: str = "wait", speculate: bool = True, clock=time.monotonic):
        if max_pending < 1 or margin_s < 0 or session_cache < 1:
            raise ValueError("max_pending and session_cache must be >= 1, margin_s >= 0")
        if audio_policy not in AUDIO_POLICIES:
            raise ValueError(f"audio_policy: expected one of {', '.join(AUDIO_POLICIES)}, got {audio_policy!r}")
        self.auditor, self.audio_policy, self.speculate = auditor, audio_policy, bool(speculate)
        # the window of second s: its audio ends at s + 1 (wait) or at the key frame's grid time (shift)
        self._audio_end = SAMPLE_RATE if audio_policy == "wait" else round(GRID_OFFSET_S * SAMPLE_RATE)
        self._speculated = None             # the last window key whose context was encoded ahead
        self.max_pending, self.frame_wait_s, self.audio_wait_s = max_pending, frame_wait_s, audio_wait_s
        self.audio_jitter = round(audio_jitter_s * SAMPLE_RATE)
        self.origin, self.allow_silent, self.callback, self._clock = grid_origin_s, allow_silent, callback, clock
        self.results: queue.Queue | None = queue.Queue(result_queue_size) if result_queue_size > 0 else None
        self._frames = FrameGrid(NUM_FRAMES + margin_s)
        self._audio = AudioRing((NUM_FRAMES + margin_s + 2) * SAMPLE_RATE,
                                SAMPLE_RATE if audio_policy == "wait" else SAMPLE_RATE // 2)
        self._expression = None if expression is None else check_expression(expression)
        self._sessions: OrderedDict = OrderedDict()
        self._prep = WindowPrep(auditor.config.frame_size, auditor.config.cell_motion, session_cache)
        self._prep_generation = 0           # reset() bumps it: the worker then drops its prepared frames
        self._session_cache = session_cache
        self._pending: deque[StreamRequest] = deque()
        self._outbox: deque[StreamResult] = deque()
        self._unfinished = 0
        self._ids = itertools.count()
        self._counts: Counter = Counter()
        self._cv = threading.Condition()
        self._closed = self._draining = False
        self._thread = threading.Thread(target=self._run, name="streaming-auditor", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def push_frame(self, stamp_s: float, frame) -> str:
        """Offer a camera frame (uint8 ``(H, W, 3)``, or float in [0, 1]) stamped ``stamp_s``.
        Returns what became of it: ``kept``, ``superseded``, ``duplicate``, ``too_old``, ``reset``
        (a new size: the grid restarted) or ``closed``. A malformed frame raises ``InputError``."""
        frame = check_frame(frame)
        stamp = seconds(stamp_s) - self.origin
        with self._cv:
            if self._closed:
                return "closed"
            before = self._frames.latest_stamp
            outcome = self._frames.push(stamp, frame, self._clock())
            self._counts["frames_in"] += 1
            self._counts["resolution_changes" if outcome == "reset" else f"frames_{outcome}"] += 1
            if self._pending or grid_time_passed(before, self._frames.latest_stamp):
                self._cv.notify_all()           # a second settled: the worker prepares its frame
        return outcome

    def push_audio(self, stamp_s: float, samples) -> None:
        """Append mono 16 kHz float samples in [-1, 1]; ``stamp_s`` is the first sample's time. A
        start within ``audio_jitter_s`` of the previous chunk's end continues it; a later start
        leaves a gap (zeros, counted missing); samples already held are kept (the first wins)."""
        chunk = np.asarray(samples)
        if chunk.ndim != 1 or not np.issubdtype(chunk.dtype, np.floating):
            raise InputError("audio", f"expected a 1-D float mono chunk, got {chunk.dtype} {chunk.shape}")
        if not np.all(np.isfinite(chunk)) or (chunk.size and np.abs(chunk).max() > 1.0):
            raise InputError("audio", "chunk samples must be finite and in [-1, 1]")
        start = round((seconds(stamp_s) - self.origin) * SAMPLE_RATE)
        with self._cv:
            if self._closed or not chunk.size:
                return
            end = self._audio.end
            if end is not None and abs(start - end) <= self.audio_jitter:
                start = end
            gap, ignored = self._audio.write(start, chunk.astype(np.float32), self._clock())
            self._counts["audio_chunks"] += 1
            self._counts["audio_gaps"] += gap > 0
            self._counts["audio_gap_samples"] += gap
            self._counts["audio_samples_ignored"] += ignored
            if self._pending or (self.speculate and self._expression):
                self._cv.notify_all()           # a window may be complete now

    def set_expression(self, expression: str) -> None:
        """The expression for requests submitted from now on (a request may carry its own)."""
        text = check_expression(expression)
        with self._cv:
            self._expression = text
            self._cv.notify_all()               # the idle worker encodes the newest window's context

    @property
    def expression(self) -> str | None:
        return self._expression

    def reset(self) -> None:
        """Forget all frames, audio and contexts (e.g. after the stream's clock jumped back)."""
        with self._cv:
            self._frames.clear()
            self._audio.clear()
            self._sessions.clear()
            self._prep_generation += 1
            self._speculated = None
            self._counts["resets"] += 1

    # ------------------------------------------------------------------ requests
    def submit(self, stamp_s: float, masks, ids=None, *, request_id=None, expression: str | None = None):
        """Queue the masks of the frame stamped ``stamp_s`` for auditing; returns the request id.

        ``masks``: (H, W) arrays (a list, an ``(N, H, W)`` array, or a dict ``{id: mask}``);
        ``ids`` name them (default ``0..N-1``). ``expression``: default the current one. Never
        blocks: when ``max_pending`` requests wait, the oldest is dropped (its result says so).
        Every accepted request gets exactly one result. Raises ``RuntimeError`` once closed."""
        now, bad = self._clock(), None
        try:
            if isinstance(masks, dict):
                ids, masks = list(masks), list(masks.values())
            arrays = [np.array(m, copy=True) for m in (list(masks) if not isinstance(masks, np.ndarray)
                                                      or masks.ndim == 3 else [masks])]
            ids = list(range(len(arrays))) if ids is None else list(ids)
            if len(ids) != len(arrays):
                raise ValueError(f"{len(ids)} ids for {len(arrays)} masks")
            items = list(zip(ids, arrays))
        except (TypeError, ValueError) as exc:
            items, bad = [], f"masks: {exc}"
        with self._cv:
            if self._closed:
                raise RuntimeError("the streaming auditor is closed")
            rid = next(self._ids) if request_id is None else request_id
            expr = expression if expression is not None else self._expression
            self._pending.append(StreamRequest(rid, stamp_s, items, expr, now, bad))
            self._unfinished += 1
            self._counts["accepted"] += 1
            while len(self._pending) > self.max_pending:
                old = self._pending.popleft()
                self._counts["dropped"] += 1
                self._outbox.append(self._failure(old, "dropped", f"dropped: {self.max_pending} requests "
                                                  "were waiting (drop-oldest)", now))
            self._cv.notify_all()
        return rid

    def get_result(self, timeout: float | None = None) -> StreamResult:
        """The next result from :attr:`results` (raises ``queue.Empty`` after ``timeout``)."""
        if self.results is None:
            raise RuntimeError("result_queue_size=0: results go to the callback only")
        return self.results.get(timeout=timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every accepted request has had its result delivered."""
        with self._cv:
            return self._cv.wait_for(lambda: self._unfinished == 0, timeout)

    @property
    def stats(self) -> dict:
        """A snapshot of the counters (docs/streaming.md lists them)."""
        with self._cv:
            counts = dict(self._counts)
            counts["pending"] = len(self._pending)
        return counts

    # ------------------------------------------------------------------ closing
    def close(self, drain: bool = True, timeout: float | None = 30.0) -> bool:
        """Stop: ``drain=True`` ends the stream (waiting requests are decided now with the data
        there is, ready ones audited); ``drain=False`` answers every waiting request ``closed``.
        Joins the worker; returns whether it ended within ``timeout``."""
        with self._cv:
            if not self._closed:
                self._closed, self._draining = True, drain
                now = self._clock()
                if not drain:
                    while self._pending:
                        self._outbox.append(self._failure(self._pending.popleft(), "closed",
                                                          "the auditor was closed before it was audited", now))
                self._cv.notify_all()
        if threading.current_thread() is not self._thread:      # close() from a callback: no self-join
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> "StreamingAuditor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        generation = self._prep_generation
        while True:
            job, outbox, warm, ahead = None, [], None, None
            with self._cv:
                while True:
                    if self._outbox:
                        outbox = list(self._outbox)
                        self._outbox.clear()
                        break
                    job, wake = self._next_job(self._clock())
                    if job is not None or (self._closed and not self._pending):
                        break
                    if generation != self._prep_generation:
                        generation = self._prep_generation
                        self._prep.clear()
                    warm = self._prep.due(self._frames) if self._expression or self._pending else []
                    if warm:
                        break
                    ahead = self._speculation() if self.speculate and not self._closed else None
                    if ahead is not None:
                        break
                    self._cv.wait(wake)
            for result in outbox:
                self._deliver(result)
            if isinstance(job, StreamResult):
                self._deliver(job)
            elif job is not None:
                for result in self._execute(job):
                    self._deliver(result)
            elif warm:
                self._prep.warm(warm)          # idle: prepare settled frames before a request needs them
            elif ahead is not None:
                self._encode_ahead(ahead)      # idle: the newest window's context before a request asks
            elif not outbox:
                return

    def _next_job(self, now: float):
        """The first pending request that can be decided, with every other pending request ready for
        the same window and expression (a batch: a list of plans), all removed; else ``(None,
        seconds to wait)``."""
        deadlines = []
        for request in list(self._pending):
            try:
                verdict = self._check(request, now)
            except Exception as exc:  # noqa: BLE001 -- the worker must not die
                verdict = self._failure(request, "internal", repr(exc), now)
            if isinstance(verdict, float):
                deadlines.append(verdict)
                continue
            self._pending.remove(request)
            if isinstance(verdict, StreamResult):
                return verdict, None
            batch = [verdict]
            for other in list(self._pending):
                try:
                    plan = self._check(other, now)
                except Exception:  # noqa: BLE001 -- decided on its own turn
                    continue
                if isinstance(plan, dict) and plan["key"] == verdict["key"]:
                    self._pending.remove(other)
                    batch.append(plan)
            return batch, None
        return None, (max(0.0, min(deadlines) - now) + 1e-3 if deadlines else None)

    def _session(self, key, slots, audio, expression: str):
        """The cached ``ClipSession`` of window ``key``, or a new one (its tensors from ``WindowPrep``)."""
        with self._cv:
            session = self._sessions.get(key)
            if session is not None:
                self._sessions.move_to_end(key)
                return session
        prepared = self._prep.window(key[1:], slots, audio)
        session = self.auditor.session(expression, np.stack([s.frame for s in slots]), audio,
                                       allow_silent=self.allow_silent, prepared=prepared)
        with self._cv:
            self._sessions[key] = session
            while len(self._sessions) > self._session_cache:
                self._sessions.popitem(last=False)
            self._counts["sessions_created"] += 1
        return session

    def _encode_ahead(self, plan: dict) -> None:
        """Speculative context: encode the window's context before a request asks for it."""
        try:
            session = self._session(plan["key"], plan["slots"], plan["audio"], plan["expression"])
            encodes = session.stats["context_encodes"]
            session.prime(KEY_INDEX)
            self._count(context_encodes=session.stats["context_encodes"] - encodes, contexts_ahead=1)
        except Exception:  # noqa: BLE001 -- e.g. silent audio: the requests will get the error themselves
            self._count(contexts_ahead_failed=1)

    def _execute(self, plans: list[dict]) -> list[StreamResult]:
        """Audit a batch (plans of one window and expression): one masks-graph call for all masks."""
        first = plans[0]
        requests = [p["request"] for p in plans]
        waits = [dict(second=p["second"], key_frame_stamp_s=p["slots"][-1].stamp + self.origin,
                      frame_wait=p["frame_wait"], audio_wait=p["audio_wait"],
                      audio_missing_s=p["missing"] / SAMPLE_RATE) for p in plans]
        try:
            session = self._session(first["key"], first["slots"], first["audio"], requests[0].expression)
            before = Counter(session.stats)
            outcomes, refused = audit_batch(session, requests, first["slots"][-1].frame.shape[:2])
            encodes = session.stats["context_encodes"] - before["context_encodes"]
            self._count(context_encodes=encodes, mask_errors=refused, batches=int(len(plans) > 1),
                        batched_requests=len(plans) if len(plans) > 1 else 0,
                        context_cache_hits=session.stats["context_cache_hits"] - before["context_cache_hits"])
            # the batch's first request paid for an encode, if any; the others shared its context
            return [self._finish(r, masks=o, context_reused=(encodes == 0 or j > 0) and any(x.result for x in o),
                                 **w) for j, (r, o, w) in enumerate(zip(requests, outcomes, waits))]
        except InputError as exc:
            return [self._finish(r, error_code="input", error=str(exc), **w) for r, w in zip(requests, waits)]
        except Exception as exc:  # noqa: BLE001 -- every request gets a result; the worker lives on
            return [self._finish(r, error_code="internal", error=repr(exc), **w) for r, w in zip(requests, waits)]

    def _failure(self, r: StreamRequest, code: str, message: str, now: float, frame_wait: float = 0.0) -> StreamResult:
        return self._finish(r, error_code=code, error=message, frame_wait=frame_wait, now=now)

    def _finish(self, r: StreamRequest, frame_wait: float = 0.0, audio_wait: float = 0.0, now: float | None = None,
                **fields) -> StreamResult:
        total = (self._clock() if now is None else now) - r.submitted
        second = fields.pop("second", None)
        if second is None:
            with contextlib.suppress(InputError):
                second = self._second(seconds(r.stamp) - self.origin)
        return StreamResult(audio_policy=self.audio_policy, request_id=r.request_id, stamp_s=r.stamp, second=second, expression=r.expression,
                            latency_s=max(0.0, total - frame_wait - audio_wait), frame_wait_s=frame_wait,
                            audio_wait_s=audio_wait, total_s=total, **fields)

    def _count(self, **amounts) -> None:
        with self._cv:
            self._counts.update(amounts)

    def _deliver(self, result: StreamResult) -> None:
        self._count(results=1, errors=int(not result.ok), audited=int(result.ok))
        while self.results is not None:
            try:
                self.results.put_nowait(result)
                break
            except queue.Full:                     # nobody reads: the oldest result gives way
                with contextlib.suppress(queue.Empty):
                    self.results.get_nowait()
                    self._count(results_overflow=1)
        if self.callback is not None:
            try:
                self.callback(result)
            except Exception:  # noqa: BLE001 -- a failing callback must not stop the stream
                self._count(callback_errors=1)
        with self._cv:
            self._unfinished -= 1
            self._cv.notify_all()
