"""ClipSession: audit many masks of one clip, encoding the clip's context as rarely as possible.

The context the masks are scored against is computed from the 10 frames, the audio, the
expression *and the audited frame* (the key frame: docs/artifact.md). So the context can be shared
by every mask of one frame, not by the masks of different frames: the session caches one context
per audited frame index (LRU), and a new frame costs one context encode. Auditing 13 masks of each
of 10 frames therefore runs the context graph 10 times and the mask graph 10 times, instead of
130 times each.

Sliding window (live video): ``push_frame`` / ``push_audio`` append to the last 10 frames / 10 s
and invalidate the cached contexts; frame index 9 is then the newest frame. Audio shorter than
10 s (the first seconds of a stream) is zero-padded at the end, as the model was trained.

A session is safe to use from several threads (a lock guards the window and the caches); the
auditor behind it is shared.
"""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np

from auditor_lite.data.schema import CLIP_SAMPLES, NUM_FRAMES, SAMPLE_RATE
from auditor_lite.motion import cell_motion
from auditor_lite.parallel import alongside
from auditor_lite.preprocess import log_mel, prepare_audio, prepare_frames, prepare_key_frame, prepare_masks
from auditor_lite.runtime.inputs import (InputError, check_audio, check_frame, check_frame_index,
                                         check_frames, check_masks)
from auditor_lite.runtime.results import AuditResult, build_results
from auditor_lite.runtime.text import LRUCache

DEFAULT_CONTEXT_CACHE = NUM_FRAMES  # one context per frame of the clip


class ClipSession:
    """Audit candidate masks of one clip (frames + audio + expression) against cached contexts.

    Create it with :meth:`Auditor.session`. ``frames``/``audio`` may be omitted and streamed in with
    :meth:`push_frame` / :meth:`push_audio`. ``stats`` counts ``context_encodes``, ``mask_calls``,
    and ``context_cache_hits``.
    """

    def __init__(self, auditor, expression: str, frames=None, audio=None, *,
                 sample_rate: int = SAMPLE_RATE, allow_silent: bool = False,
                 context_cache: int = DEFAULT_CONTEXT_CACHE, prepared: dict | None = None):
        self.auditor = auditor
        self.allow_silent = allow_silent
        # token states, validated and cached per expression
        self.tokens = auditor.text.token_states(expression, auditor.config.max_tokens)
        self.expression = expression.strip()
        self._lock = threading.RLock()
        self._frames: deque = deque(maxlen=NUM_FRAMES)
        self._audio = np.zeros(0, np.float32)
        # context_cache=0: re-encode the context on every call (the benchmark's naive layout)
        self._contexts = LRUCache(context_cache) if context_cache > 0 else None
        self._prepared: dict[str, np.ndarray] = {}      # frames and audio tensors of the window
        self._key_frames: dict[int, np.ndarray] = {}   # key-frame tensors by frame index
        self.stats: Counter = Counter()
        # threads for resizing frames and masks: the graphs' (they run after it, never alongside)
        self._threads = getattr(auditor, "preprocess_threads", 1)
        if frames is not None:
            self._frames.extend(check_frames(frames))
        if audio is not None:
            padded = check_audio(audio, sample_rate, allow_silent=allow_silent)
            self._audio = padded[:min(len(audio), CLIP_SAMPLES)]  # unpadded: push_audio appends to it
        if prepared is not None:
            self._adopt(prepared)

    # ------------------------------------------------------------------ the window
    def push_frame(self, frame) -> None:
        """Append the newest frame (``(H, W, 3)`` like the others); the oldest beyond 10 drops out."""
        frame = check_frame(frame)
        with self._lock:
            if self._frames and frame.shape != self._frames[0].shape:
                raise InputError("frame", f"shape {frame.shape} differs from the session's frames "
                                 f"{self._frames[0].shape}")
            self._frames.append(frame)
            self._invalidate()

    def push_audio(self, chunk, sample_rate: int = SAMPLE_RATE) -> None:
        """Append mono 16 kHz float samples; only the last 10 s are kept."""
        chunk = np.asarray(chunk)
        if sample_rate != SAMPLE_RATE:
            raise InputError("audio", f"sample rate {sample_rate} Hz; the model needs {SAMPLE_RATE} Hz")
        if chunk.ndim != 1 or not np.issubdtype(chunk.dtype, np.floating):
            raise InputError("audio", f"expected a 1-D float mono chunk, got {chunk.dtype} {chunk.shape}")
        if not np.all(np.isfinite(chunk)) or (chunk.size and np.abs(chunk).max() > 1.0):
            raise InputError("audio", "chunk samples must be finite and in [-1, 1]")
        with self._lock:
            self._audio = np.concatenate([self._audio, chunk.astype(np.float32)])[-CLIP_SAMPLES:]
            self._invalidate()

    def _adopt(self, prepared: dict) -> None:
        """Take the window's tensors prepared by the caller (``StreamingAuditor``: once per frame,
        runtime/stream_prep.py) instead of preparing them from the frames and audio given with
        them; they must be what :meth:`_inputs` computes from those (the streaming tests check it)."""
        cfg = self.auditor.config
        if len(self._frames) < NUM_FRAMES or not len(self._audio):
            raise ValueError("prepared: give the window's frames and audio with its prepared tensors")
        need = {"frames", "audio", "log_mel"} | ({"cell_motion"} if cfg.cell_motion else set())
        if need - set(prepared):
            raise ValueError(f"prepared: missing {', '.join(sorted(need - set(prepared)))}")
        shape = (1, NUM_FRAMES, 3, cfg.frame_size, cfg.frame_size)
        if prepared["frames"].shape != shape:
            raise ValueError(f"prepared: frames are {prepared['frames'].shape}, expected {shape}")
        self._prepared.update({k: prepared[k] for k in need})

    def _invalidate(self) -> None:
        if self._contexts is not None:
            self._contexts.clear()
        self._prepared.clear()
        self._key_frames.clear()

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    @property
    def frame_shape(self) -> tuple[int, int]:
        if not self._frames:
            raise InputError("frames", "the session has no frames yet (push_frame)")
        return tuple(self._frames[0].shape[:2])

    def _inputs(self) -> dict[str, np.ndarray]:
        """Frames and audio tensors of the current window, prepared once per window."""
        if not self._prepared:
            if len(self._frames) < NUM_FRAMES:
                raise InputError("frames", f"the session holds {len(self._frames)} of the {NUM_FRAMES} "
                                 "frames a clip needs; push more frames first")
            audio = check_audio(self._audio, SAMPLE_RATE, allow_silent=self.allow_silent)
            cfg = self.auditor.config

            def frames_part():
                # the window's frames as they are (no stacked copy), resized over the graphs' threads
                frames = prepare_frames(list(self._frames), cfg.frame_size, threads=self._threads)
                # once per window: it does not depend on the audited frame
                motion = cell_motion(frames[0] * 255.0)[None] if cfg.cell_motion else None
                return frames, motion

            def audio_part():
                wave = prepare_audio(audio, SAMPLE_RATE)
                return wave, log_mel(wave[0])[None]
            # the log-mel beside the cell motion: independent numpy work, on the graphs' threads
            # (they run after it, never alongside)
            (frames, motion), (wave, mel) = alongside(frames_part, audio_part, self._threads)
            self._prepared.update(frames=frames, audio=wave, log_mel=mel)
            if motion is not None:
                self._prepared["cell_motion"] = motion
        return self._prepared

    # ------------------------------------------------------------------ auditing
    def audit(self, masks, frame_index: int) -> list[AuditResult]:
        """Audit candidate masks of frame ``frame_index`` (0 = oldest of the window)."""
        raw, empty = self.raw_outputs(masks, frame_index)
        return build_results(*raw, self.auditor.config.mask_types, self.auditor.config.actions,
                             self.auditor.calibrate, frozenset(empty))

    def raw_outputs(self, masks, frame_index: int) -> tuple[list[np.ndarray], list[int]]:
        """The graphs' own outputs for :meth:`audit`: ``([iou (N,), type_logits (N, T),
        action_logits (N, A)], indices of empty masks)``, before the score calibration. The
        accuracy gate and ``auditor-lite calibrate`` read these, so they measure what ships."""
        frame_index = check_frame_index(frame_index)
        with self._lock:
            stack, empty = check_masks(masks, self.frame_shape)
            mask_tensor = prepare_masks(stack, self.auditor.config.key_size, threads=self._threads)
            context = self._context(frame_index)
            raw = self.auditor.run_masks(context, mask_tensor, self.key_frame(frame_index))
            self.stats["mask_calls"] += 1
        return list(raw), list(empty)

    def prime(self, frame_index: int) -> None:
        """Encode (and cache) the context of frame ``frame_index`` now, before any mask asks for it
        (the streaming auditor's speculative context)."""
        frame_index = check_frame_index(frame_index)
        with self._lock:
            self._context(frame_index)

    def audit_latest(self, masks) -> list[AuditResult]:
        """Audit masks of the newest frame of the window (streaming use)."""
        return self.audit(masks, NUM_FRAMES - 1)

    def key_frame(self, frame_index: int) -> np.ndarray:
        """The audited frame's tensor (1, 3, K, K), prepared once per window and frame. When the
        frames tensor has the key frame's size it is that tensor's slice (the same area resize of
        the same pixels: identical numbers, tested), which saves resizing it again (21 ms at 720p)."""
        if frame_index not in self._key_frames:
            cfg = self.auditor.config
            if cfg.key_size == cfg.frame_size:
                key = np.ascontiguousarray(self._inputs()["frames"][:, frame_index])
            else:
                key = prepare_key_frame(self._frames[frame_index], cfg.key_size)
            self._key_frames[frame_index] = key
        return self._key_frames[frame_index]

    def context_feed(self, frame_index: int) -> dict[str, np.ndarray]:
        """The context graph's inputs for audited frame ``frame_index`` (what INT8 calibration feeds
        it too). Call with the window complete; the tensors are the session's cached ones."""
        inputs = self._inputs()
        feed = {"frames": inputs["frames"], "key_index": np.array([frame_index], np.int64),
                "log_mel": inputs["log_mel"], "tokens": self.tokens[0], "token_mask": self.tokens[1]}
        if "cell_motion" in inputs:
            feed["cell_motion"] = inputs["cell_motion"]
        return feed

    def _context(self, frame_index: int) -> np.ndarray:
        context = self._contexts.get(frame_index) if self._contexts is not None else None
        if context is not None:
            self.stats["context_cache_hits"] += 1
            return context
        context = self.auditor.run_context(self.context_feed(frame_index))
        self.stats["context_encodes"] += 1
        if self._contexts is not None:
            self._contexts.put(frame_index, context)
        return context
