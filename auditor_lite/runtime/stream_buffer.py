"""The streaming auditor's bounded buffers: frames on the benchmark's 1-second grid, and audio.

Times here are stream seconds measured from the grid origin (``StreamingAuditor`` subtracts
``grid_origin_s``); "second s" covers ``[s, s + 1)``. Neither class locks: the streaming auditor
calls them under its own lock. See docs/streaming.md.

* :class:`FrameGrid` keeps one frame per grid second, the benchmark's frame of that second: the
  picture shown at the grid time ``s + 0.5`` (``runtime/files.read_video``: frame t is the picture
  shown at t + 0.5 s), i.e. the latest frame stamped at or before ``s + 0.5`` and after
  ``s - 0.5`` (a picture older than 1 s is not "shown", the second has no frame). Each stamp
  therefore belongs to one slot, ``ceil(t - 0.5)``, and the slot keeps the largest stamp: the
  choice depends on the set of stamps, not on their arrival order. A frame whose stamp equals the
  slot's is a duplicate (the first is kept). Slots older than the last ``keep`` seconds are dropped
  and frames for them ignored. A frame of another size resets the grid.
* :class:`AudioRing` keeps the last ``capacity`` samples by absolute sample index
  ``round(t * 16000)``; samples already received are never overwritten (keep first), and samples
  never received read as zeros and are counted as missing. It notes when the stream passed each
  ``mark`` (whole seconds; half seconds for the ``shift`` audio policy, whose windows end at
  ``s + 0.5``), so a request's audio wait can be reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from auditor_lite.data.schema import NUM_FRAMES, SAMPLE_RATE
from auditor_lite.runtime.inputs import InputError

GRID_OFFSET_S = 0.5     # the frame of second s is the picture shown at s + 0.5


def seconds(stamp) -> float:
    """A stamp as finite float seconds; ``InputError("stamp_s", ...)`` otherwise."""
    try:
        number = float(stamp)
    except (TypeError, ValueError):
        raise InputError("stamp_s", f"expected seconds, got {stamp!r}") from None
    if not math.isfinite(number):
        raise InputError("stamp_s", f"expected finite seconds, got {stamp!r}")
    return number


def frame_slot(stamp: float) -> int:
    """The grid second whose frame a picture stamped ``stamp`` may be: ``s - 0.5 < stamp <= s + 0.5``."""
    return math.ceil(stamp - GRID_OFFSET_S)


def grid_time_passed(before: float, after: float) -> bool:
    """Whether a frame stream whose newest stamp went from ``before`` to ``after`` passed a grid
    time ``s + 0.5`` (a second settled)."""
    return after > before and (before == -math.inf or
                                math.floor(after - GRID_OFFSET_S) != math.floor(before - GRID_OFFSET_S))


def request_second(stamp: float) -> int:
    """The grid second a mask stamped ``stamp`` belongs to: frame k covers second k."""
    return math.floor(stamp)


@dataclass(frozen=True)
class Slot:
    stamp: float
    frame: np.ndarray
    serial: int          # unique per stored frame: the window key


class FrameGrid:
    """One frame per grid second over the last ``keep`` seconds (see the module docstring)."""

    def __init__(self, keep: int):
        if keep < NUM_FRAMES:
            raise ValueError(f"keep must be >= {NUM_FRAMES} seconds, got {keep}")
        self.keep = keep
        self.slots: dict[int, Slot] = {}
        self.floor: int | None = None        # seconds below it were dropped (None: none yet)
        self.floor_reason = ""
        self.newest: int | None = None       # the newest slot second seen
        self.latest_stamp = -math.inf        # the largest frame stamp seen
        self.shape: tuple | None = None
        self.settled_at: dict[int, float] = {}   # second -> clock time its grid time was passed
        self._serial = 0

    def push(self, stamp: float, frame: np.ndarray, now: float) -> str:
        """Offer a checked ``(H, W, 3)`` uint8 frame. Returns ``kept`` (it is its second's frame now),
        ``superseded`` (a later picture of the same second is kept), ``duplicate``, ``too_old``, or
        ``reset`` (another frame size: the grid restarted with this frame)."""
        second = frame_slot(stamp)
        outcome = None
        if self.shape is not None and frame.shape != self.shape:
            self.slots.clear()
            self.floor = second
            self.floor_reason = (f"the frame size changed to {frame.shape[1]}x{frame.shape[0]} at t={stamp:.3f}; "
                                 f"frames before second {second} were dropped")
            outcome = "reset"
        elif self.floor is not None and second < self.floor:
            return "too_old"
        self.shape = frame.shape
        self._advance(stamp, second, now)
        held = self.slots.get(second)
        if held is not None and stamp == held.stamp:
            return "duplicate"
        if held is not None and stamp < held.stamp:
            return "superseded"
        self._serial += 1
        self.slots[second] = Slot(float(stamp), np.array(frame, copy=True), self._serial)
        return outcome or "kept"

    def _advance(self, stamp: float, second: int, now: float) -> None:
        if stamp > self.latest_stamp:
            # seconds whose grid time s + 0.5 lies in (latest, stamp] are settled now
            last = math.floor(stamp - GRID_OFFSET_S)
            first = max(math.floor(self.latest_stamp - GRID_OFFSET_S) + 1 if self.latest_stamp > -math.inf
                        else last, last - self.keep + 1)
            for s in range(first, last + 1):
                self.settled_at[s] = now
            self.latest_stamp = float(stamp)
        if self.newest is None or second > self.newest:
            self.newest = second
            bottom = second - self.keep + 1
            dropped = [s for s in self.slots if s < bottom]
            if dropped or (self.floor is not None and self.floor < bottom):
                self.floor, self.floor_reason = bottom, f"the buffer holds seconds {bottom} and later"
                for s in dropped:
                    del self.slots[s]
            if len(self.settled_at) > 2 * self.keep:
                self.settled_at = {s: v for s, v in self.settled_at.items() if s >= bottom}

    def settled(self, second: int) -> bool:
        """Whether the grid time of ``second`` has passed in the frame stream (its frame is final,
        unless a frame arrives out of order)."""
        return self.latest_stamp >= second + GRID_OFFSET_S

    def window(self, second: int) -> tuple[list[Slot], list[int]]:
        """The slots of seconds ``second - 9 .. second`` and the seconds that have no frame."""
        seconds = range(second - NUM_FRAMES + 1, second + 1)
        return [self.slots[s] for s in seconds if s in self.slots], [s for s in seconds if s not in self.slots]

    def clear(self) -> None:
        serial = self._serial              # serials stay unique: they key the cached contexts
        self.__init__(self.keep)
        self._serial = serial


class AudioRing:
    """The last ``capacity`` samples of a mono 16 kHz stream by absolute sample index."""

    def __init__(self, capacity: int, mark: int = SAMPLE_RATE):
        self.capacity, self.mark = int(capacity), int(mark)
        self.data = np.zeros(self.capacity, np.float32)
        self.have = np.zeros(self.capacity, bool)
        self.end: int | None = None          # one past the newest sample index written
        self.done_at: dict[int, float] = {}  # mark k -> clock time the stream passed (k + 1) * mark

    def _spans(self, lo: int, hi: int):
        """Ring slices for absolute indices ``[lo, hi)`` (``hi - lo <= capacity``) with their
        offsets from ``lo``."""
        while lo < hi:
            at = lo % self.capacity
            n = min(hi - lo, self.capacity - at)
            yield slice(at, at + n), lo
            lo += n

    def write(self, start: int, chunk: np.ndarray, now: float) -> tuple[int, int]:
        """Write ``chunk`` at absolute index ``start``; returns ``(gap, ignored)`` in samples: the
        jump forward from the previous end, and the chunk's samples not written (already held: the
        first is kept; or older than the ring)."""
        stop = start + len(chunk)
        gap = written = 0
        marks = self.capacity // self.mark
        if self.end is None:
            self.end = start
        if stop > self.end:
            gap = max(0, start - self.end)
            for span, _ in self._spans(max(self.end, stop - self.capacity), stop):
                self.data[span] = 0.0
                self.have[span] = False
            last = stop // self.mark - 1                   # the last mark (second by default) covered
            for k in range(max(self.end // self.mark, last - marks), last + 1):
                self.done_at[k] = now
            self.end = stop
            if len(self.done_at) > 2 * marks + 2:
                self.done_at = {k: v for k, v in self.done_at.items() if k >= last - marks}
        lo = max(start, self.end - self.capacity)
        for span, at in self._spans(lo, stop):
            part = chunk[at - start: at - start + (span.stop - span.start)]
            fresh = ~self.have[span]
            written += int(fresh.sum())
            self.data[span][fresh] = part[fresh]
            self.have[span] |= fresh
        return gap, len(chunk) - written

    def covered(self, index: int) -> bool:
        """Whether the stream has reached absolute index ``index`` (samples before it are in or missing)."""
        return self.end is not None and self.end >= index

    def done_time(self, index: int, default: float) -> float:
        """The clock time the stream reached ``index`` (a multiple of ``mark``), else ``default``."""
        return self.done_at.get(index // self.mark - 1, default)

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, int]:
        """Samples ``[lo, hi)`` (zeros where never received or no longer held) and how many of them
        were received."""
        out = np.zeros(hi - lo, np.float32)
        if self.end is None:
            return out, 0
        received = 0
        a, b = max(lo, self.end - self.capacity), min(hi, self.end)
        if a < b:
            for span, at in self._spans(a, b):
                n = span.stop - span.start
                out[at - lo: at - lo + n] = self.data[span]
                received += int(self.have[span].sum())
        return out, received

    def clear(self) -> None:
        self.__init__(self.capacity, self.mark)
