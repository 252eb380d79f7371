"""When a streamed request can be audited, and against which window (the audio policies).

:class:`WindowPlanner` is the part of ``StreamingAuditor`` that decides, under its lock, what a
pending request gets: an error result, the clock time to look again (its frame or audio is still
to come), or a plan (the window's frames, audio and session key) ready to audit. It also picks the
window whose context an idle worker encodes ahead of any request (speculative context).

The window of grid second ``s`` has the grid frames of seconds ``s - 9 .. s`` (key frame = index
9) and the 10 s of audio ending at ``s + 1`` (``wait``: as in training, the key frame has 0.5 s of
audio after it) or at ``s + 0.5`` (``shift``: the audio ends at the key frame). A mask stamped
``t`` belongs to ``s = floor(t)`` (``wait``) or to ``s = floor(t - 0.5)``, the newest second
whose grid frame is complete at ``t`` (``shift``). docs/streaming.md section 2.
"""

from __future__ import annotations

from auditor_lite.data.schema import CLIP_SAMPLES, NUM_FRAMES, SAMPLE_RATE
from auditor_lite.runtime.inputs import InputError, check_expression
from auditor_lite.runtime.stream_batch import StreamRequest
from auditor_lite.runtime.stream_buffer import GRID_OFFSET_S, request_second, seconds


class WindowPlanner:
    """Mixed into ``StreamingAuditor`` (its attributes: ``_frames``, ``_audio``, ``_audio_end``,
    ``audio_policy``, ``origin``, ``frame_wait_s``, ``audio_wait_s``, ``_draining``, ``_expression``,
    ``_sessions``, ``_speculated``, ``_failure``)."""

    def _second(self, stamp: float) -> int:
        """The grid second of a mask stamped ``stamp`` (stream seconds): the second it lies in
        (``wait``), or the newest second whose grid frame is complete at the stamp (``shift``)."""
        return request_second(stamp if self.audio_policy == "wait" else stamp - GRID_OFFSET_S)

    def _window(self, second: int, expression: str):
        """The frames and audio of the window of ``second`` as they are now, and its session key."""
        slots, missing = self._frames.window(second)
        stop = second * SAMPLE_RATE + self._audio_end
        audio, received = self._audio.read(stop - CLIP_SAMPLES, stop)
        key = (expression, second, tuple(s.serial for s in slots), received)
        return slots, missing, stop, audio, received, key

    def _check(self, r: StreamRequest, now: float):
        """A failure, a plan (ready to audit), or the clock time to look again."""
        if r.bad or not r.items:
            return self._failure(r, "bad_request", r.bad or "masks: no masks given", now)
        try:
            second = self._second(seconds(r.stamp) - self.origin)
        except InputError as exc:
            return self._failure(r, "bad_request", str(exc), now)
        if r.expression is None:
            return self._failure(r, "no_expression", "no expression: call set_expression or pass one", now)
        try:
            check_expression(r.expression)
        except InputError as exc:
            return self._failure(r, "expression", str(exc), now)
        grid, end = self._frames, self._draining
        if grid.floor is not None and second - NUM_FRAMES + 1 < grid.floor:
            return self._failure(r, "too_late", f"too late: second {second} needs frames from second "
                                 f"{second - NUM_FRAMES + 1}; {grid.floor_reason}", now)
        if not grid.settled(second):
            deadline = r.submitted + self.frame_wait_s
            if now < deadline and not end:
                return deadline
            return self._failure(r, "future", f"future: no frame at or after the grid time {second + GRID_OFFSET_S:g} "
                                 f"of second {second} within {now - r.submitted:.2f} s (newest frame stamp "
                                 f"{grid.latest_stamp + self.origin:.3f})", now, frame_wait=now - r.submitted)
        slots, missing = grid.window(second)
        if missing:
            return self._failure(r, "too_few_frames", f"too few frames: {len(slots)} of the {NUM_FRAMES} grid "
                                 f"seconds {second - NUM_FRAMES + 1}..{second} have a frame (missing {missing})", now)
        frames_ready = max(r.submitted, grid.settled_at.get(second, r.submitted))
        stop = second * SAMPLE_RATE + self._audio_end
        if self._audio.covered(stop):
            audio_wait = max(0.0, self._audio.done_time(stop, frames_ready) - frames_ready)
        elif now < frames_ready + self.audio_wait_s and not end:
            return frames_ready + self.audio_wait_s
        else:
            audio_wait = max(0.0, now - frames_ready)
        slots, _missing, stop, audio, received, key = self._window(second, r.expression)
        return dict(request=r, second=second, slots=slots, audio=audio, missing=CLIP_SAMPLES - received,
                    key=key, frame_wait=frames_ready - r.submitted, audio_wait=audio_wait)

    def _speculation(self):
        """The newest complete window's plan when its context for the current expression is not
        encoded yet (and was not tried), else ``None``. Under the lock."""
        grid = self._frames
        if self._expression is None or grid.latest_stamp == -float("inf"):
            return None
        second = request_second(grid.latest_stamp - GRID_OFFSET_S)        # the newest settled second
        if grid.floor is not None and second - NUM_FRAMES + 1 < grid.floor:
            return None
        slots, missing, stop, audio, _received, key = self._window(second, self._expression)
        if missing or not self._audio.covered(stop) or key == self._speculated or key in self._sessions:
            return None
        self._speculated = key
        return dict(key=key, slots=slots, audio=audio, expression=self._expression)
