"""The streaming auditor's per-frame preparation, done once per frame instead of once per window.

A window of second ``s`` shares nine of its ten grid frames with the window of ``s - 1``. What the
context graph is fed is therefore mostly work already done for the previous window:

* each grid frame's resized tensor ``(3, S, S)`` (``prepare_key_frame`` of that frame: the same
  numbers as its slice of ``prepare_frames`` of the clip, tested), keyed by the slot's serial;
* each pair of consecutive grid frames' cell flows (``motion.cell_flows`` of the two frames:
  every step of it is per cell and pair, so the pair alone gives the clip's numbers), keyed by
  the two serials; ``motion.motion_from_flows`` turns the window's nine pairs into ``cell_motion``;
* the frames part of a window (the stacked frames tensor and ``cell_motion``), keyed by its ten
  serials: it does not depend on the audio, so it is built when the window's frames settle;
* the window's tensors themselves (frames, log-mel, cell motion), keyed by the window (second,
  serials, audio samples received), so another expression on the same window runs only the
  context graph.

So a new window costs one frame resize, one pair of flows, the log-mel and the stacking, instead
of ten resizes and nine pairs; the worker prepares a settled frame, and the frames part of the
newest window, when it is idle, before any request needs them: what is left when the window's
audio completes is the log-mel (about 2 ms) and the context graph. Only the worker thread calls this class (no lock). docs/streaming.md section 3.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from auditor_lite.data.schema import NUM_FRAMES, SAMPLE_RATE
from auditor_lite.motion import cell_flows, motion_from_flows
from auditor_lite.preprocess import log_mel, prepare_audio, prepare_key_frame
from auditor_lite.runtime.stream_buffer import GRID_OFFSET_S


class WindowPrep:
    """Prepared tensors of a stream's frames, frame pairs and windows (see the module docstring).

    ``frame_size`` and ``cell_motion`` come from the model's config; ``windows`` bounds the cached
    window tensors (each about 2.5 MB at 128 px)."""

    def __init__(self, frame_size: int, cell_motion: bool, windows: int = 4):
        self.size, self.motion, self.windows = int(frame_size), bool(cell_motion), int(windows)
        self._frames: dict[int, np.ndarray] = {}                  # serial -> (3, S, S) float32
        self._pairs: dict[tuple[int, int], tuple] = {}            # (serial, serial) -> (flow, residual)
        self._window: OrderedDict = OrderedDict()                 # window key -> prepared dict
        self._clips: OrderedDict = OrderedDict()                  # slot serials -> frames part
        self.stats = {"frames_prepared": 0, "pairs_prepared": 0, "clips_prepared": 0, "windows_prepared": 0,
                      "windows_reused": 0}

    def frame(self, slot) -> np.ndarray:
        tensor = self._frames.get(slot.serial)
        if tensor is None:
            tensor = self._frames[slot.serial] = prepare_key_frame(slot.frame, self.size)[0]
            self.stats["frames_prepared"] += 1
        return tensor

    def pair(self, first, second) -> tuple[np.ndarray, np.ndarray]:
        key = (first.serial, second.serial)
        flows = self._pairs.get(key)
        if flows is None:
            flows = self._pairs[key] = cell_flows(np.stack([self.frame(first), self.frame(second)]) * 255.0)
            self.stats["pairs_prepared"] += 1
        return flows

    def warm(self, slots) -> None:
        """Prepare ``slots`` (consecutive grid seconds, oldest first) and their pairs ahead of need;
        for a whole window (ten slots), also its frames part (:meth:`clip`)."""
        for slot in slots:
            self.frame(slot)
        if self.motion:
            for first, second in zip(slots, slots[1:]):
                self.pair(first, second)
        if len(slots) == NUM_FRAMES:
            self.clip(slots)

    def due(self, grid) -> list:
        """The settled slots of ``grid`` (a ``FrameGrid``) of the newest window when some are not
        prepared yet (for :meth:`warm`), else ``[]``; then also forgets what ``grid`` no longer holds."""
        if grid.newest is None or grid.latest_stamp == -math.inf:
            return []
        last = math.floor(grid.latest_stamp - GRID_OFFSET_S)
        slots = [grid.slots[t] for t in range(last - NUM_FRAMES + 1, last + 1) if t in grid.slots]
        pairs = zip(slots, slots[1:]) if self.motion else ()
        if (all(s.serial in self._frames for s in slots)
                and all((a.serial, b.serial) in self._pairs for a, b in pairs)
                and (len(slots) < NUM_FRAMES or tuple(s.serial for s in slots) in self._clips)):
            return []
        self.prune(s.serial for s in grid.slots.values())
        return slots

    def clip(self, slots) -> dict[str, np.ndarray]:
        """The frames part of a window's tensors (``frames`` and ``cell_motion``): it depends on the
        ten slots only, so the idle worker builds it when the window's frames have settled, before
        its audio is complete; keyed by the slots' serials."""
        key = tuple(s.serial for s in slots)
        part = self._clips.get(key)
        if part is None:
            part = {"frames": np.stack([self.frame(s) for s in slots])[None]}
            if self.motion:
                flows = [self.pair(a, b) for a, b in zip(slots, slots[1:])]
                part["cell_motion"] = motion_from_flows(np.concatenate([f for f, _ in flows], 1),
                                                        np.concatenate([r for _, r in flows], 1))[None]
            self._clips[key] = part
            while len(self._clips) > self.windows:
                self._clips.popitem(last=False)
            self.stats["clips_prepared"] += 1
        return part

    def window(self, key, slots, audio: np.ndarray) -> dict[str, np.ndarray]:
        """The context graph's clip tensors of the window ``slots`` (its ten grid frames) with the
        clip's ``audio`` (16 kHz, 10 s): what ``ClipSession`` computes from the raw clip."""
        prepared = self._window.get(key)
        if prepared is not None:
            self._window.move_to_end(key)
            self.stats["windows_reused"] += 1
            return prepared
        wave = prepare_audio(audio, SAMPLE_RATE)
        prepared = dict(self.clip(slots), audio=wave, log_mel=log_mel(wave[0])[None])
        self._window[key] = prepared
        while len(self._window) > self.windows:
            self._window.popitem(last=False)
        self.stats["windows_prepared"] += 1
        return prepared

    def prune(self, serials) -> None:
        """Forget frames and pairs whose slot is no longer held (``serials``: those still held)."""
        held = set(serials)
        for serial in [s for s in self._frames if s not in held]:
            del self._frames[serial]
        for key in [k for k in self._pairs if k[0] not in held or k[1] not in held]:
            del self._pairs[key]

    def clear(self) -> None:
        self._frames.clear()
        self._pairs.clear()
        self._window.clear()
        self._clips.clear()
