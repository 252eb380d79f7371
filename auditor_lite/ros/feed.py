"""What the DDS node and the bag replay both do with an incoming stream message: frames, audio, the
audio format and the expression go into the ``StreamingAuditor`` the same way, so that a replay
gives the node's results. Mask requests are each caller's own (the node answers over DDS, the
replay records order and receive time). :func:`warm_up` is what a node runs once at start, before
it subscribes."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np

from auditor_lite.ros import messages as m
from auditor_lite.ros.audio import audio_to_samples

STREAM_INPUTS = ("frames", "audio", "audio_unstamped", "audio_info", "expression")


def feed_stream(stream, key: str, msg, audio_info, receive_time_s: float | None = None):
    """Push one message of topic role ``key`` (one of :data:`STREAM_INPUTS`) into ``stream``; returns
    the ``AudioInfo`` in force afterwards (``msg`` itself for ``audio_info``). Audio is converted
    with the ``audio_info`` in force; unstamped audio is timed by ``receive_time_s`` (default: now).
    Raises what the conversion or the stream raises (ValueError, InputError)."""
    if key == "frames":
        stream.push_frame(m.time_to_seconds(msg.header.stamp), m.image_to_array(msg))
    elif key in ("audio", "audio_unstamped"):
        chunk = audio_to_samples(msg, audio_info, receive_time_s=receive_time_s)
        stream.push_audio(chunk.stamp_s, chunk.samples)
    elif key == "audio_info":
        return msg
    elif key == "expression":
        stream.set_expression(str(msg.data))
    else:
        raise ValueError(f"{key}: not a stream input (expected one of {', '.join(STREAM_INPUTS)})")
    return audio_info


def warm_up(auditor, height: int = 480, width: int = 640, masks: int = 3) -> float:
    """Run the context and masks graphs once on a window of zeros (silent audio allowed) and
    ``masks`` masks of a ``height`` x ``width`` frame, so that the first requests after a node's
    start do not pay ONNX Runtime's first-run costs (memory arenas, kernel selection) or the
    preprocessing's. Call it before subscribing. Returns the seconds it took (start-up time)."""
    from auditor_lite.data.schema import CLIP_SAMPLES, NUM_FRAMES

    if height < 8 or width < 8 or masks < 1:
        raise ValueError(f"height/width/masks: expected >= 8, >= 8, >= 1, got {height}, {width}, {masks}")
    started = time.perf_counter()
    frames = np.zeros((NUM_FRAMES, height, width, 3), np.uint8)
    stack = np.zeros((masks, height, width), bool)
    stack[:, height // 4:height // 2, width // 4:width // 2] = True
    session = auditor.session("warm up", frames, np.zeros(CLIP_SAMPLES, np.float32), allow_silent=True)
    session.audit(stack, NUM_FRAMES - 1)
    return time.perf_counter() - started


class StreamNode:
    """What every node transport shares: CDR payloads of the input topics in (:meth:`handle`), a
    ``StreamingAuditor`` fed by :func:`feed_stream`, one ``AuditResult`` per request out through
    :meth:`write_result` (the transport's), counters in :attr:`stats`. A malformed message is
    counted (and a request answered with an error result); it never raises."""

    INPUTS = ("expression", "audio_info", "frames", "audio", "requests")

    def _start_stream(self, auditor, default_audio_info=None, **stream_options) -> None:
        from auditor_lite.runtime.streaming import StreamingAuditor

        self.audio_info = default_audio_info or m.new(m.AUDIO_INFO, channels=1, sample_rate=16000,
                                                      sample_format="S16LE", bitrate=256000, coding_format="wave")
        self._requests: dict = {}
        self._lock = threading.Lock()
        self._counts = {f"{k}_in": 0 for k in self.INPUTS} | {"errors": 0, "results_out": 0, "publish_errors": 0}
        self.last_error: str | None = None
        self.stream = StreamingAuditor(auditor, callback=self._publish, result_queue_size=0, **stream_options)

    def write_result(self, msg) -> None:        # the transport's: publish one AuditResult
        raise NotImplementedError

    @property
    def stats(self) -> dict:
        with self._lock:
            return dict(self._counts) | {"stream": self.stream.stats}

    def _count(self, key: str, error: str | None = None) -> None:
        with self._lock:
            self._counts[key] += 1
            if error is not None:
                self._counts["errors"] += 1
                self.last_error = error

    def handle(self, key: str, data: bytes, ros_type: str) -> None:
        """One CDR payload of input role ``key`` (its type ``ros_type``)."""
        try:
            msg = m.deserialize(data, ros_type)
        except Exception as exc:  # noqa: BLE001 - a malformed payload must not stop the node
            self._count(f"{key}_in", f"{key}: undecodable CDR ({exc})")
            return
        try:
            if key in STREAM_INPUTS:
                self.audio_info = feed_stream(self.stream, key, msg, self.audio_info)
            else:
                self._submit(msg)
            self._count(f"{key}_in")
        except Exception as exc:  # noqa: BLE001 - InputError, ValueError: counted, never fatal
            self._count(f"{key}_in", f"{key}: {exc}")

    def _submit(self, msg) -> None:
        decoded = m.decode_request(msg)
        ids, masks = decoded.usable()
        with self._lock:   # the result may come before submit returns: register under the lock
            rid = self.stream.submit(decoded.stamp_s, masks, ids, expression=decoded.expression)
            self._requests[rid] = decoded

    def _publish(self, result) -> None:         # the streaming auditor's worker thread
        with self._lock:
            decoded = self._requests.pop(result.request_id, None)
        try:
            if decoded is not None:
                result = decoded.merge(result)
                if decoded.request_id:
                    result = replace(result, request_id=decoded.request_id)
                msg = m.result_to_msg(result, stamp=decoded.stamp, frame_id=decoded.frame_id)
            else:
                msg = m.result_to_msg(result)
            self.write_result(msg)
            self._count("results_out")
        except Exception as exc:  # noqa: BLE001
            self._count("publish_errors", f"results: {exc}")
