"""Audio messages of ros-drivers/audio_common (``ros2`` branch) <-> the streaming auditor's samples.

``audio_common_msgs/AudioDataStamped`` (or the unstamped ``AudioData``) carries raw bytes; the
``AudioInfo`` published beside it says how to read them (``channels``, ``sample_rate``,
``sample_format`` as GStreamer names it, e.g. ``S16LE``, ``F32LE``; ``coding_format`` ``wave``
for raw PCM). :func:`audio_to_samples` turns them into what ``StreamingAuditor.push_audio`` takes:
float32 mono 16 kHz samples in [-1, 1] and the first sample's time. docs/ros.md section 2.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from auditor_lite.ros.messages import AUDIO_DATA, AUDIO_INFO, AUDIO_STAMPED, _bytes, _is_zero, header, new, \
    time_to_seconds

SAMPLE_RATE = 16_000            # what the auditor takes (auditor_lite.data.schema.SAMPLE_RATE)
RAW_CODINGS = ("wave", "raw", "pcm", "")    # AudioInfo.coding_format of uncompressed PCM (case ignored)
# GStreamer's raw formats, as AudioInfo.sample_format names them: storage, full scale, zero level.
# S24LE/S24BE: packed 3-byte samples; S24_32LE/BE: 24-bit samples in the low bits of 32-bit words.
SAMPLE_FORMATS = {"U8": ("u1", 128, 128), "S8": ("i1", 128, 0), "S16LE": ("<i2", 2**15, 0),
                  "S16BE": (">i2", 2**15, 0), "U16LE": ("<u2", 2**15, 2**15), "U16BE": (">u2", 2**15, 2**15),
                  "S24LE": ("packed-le", 2**23, 0), "S24BE": ("packed-be", 2**23, 0),
                  "S24_32LE": ("<i4", 2**23, 0), "S24_32BE": (">i4", 2**23, 0), "S32LE": ("<i4", 2**31, 0),
                  "S32BE": (">i4", 2**31, 0), "F32LE": ("<f4", 1, 0), "F32BE": (">f4", 1, 0),
                  "F64LE": ("<f8", 1, 0), "F64BE": (">f8", 1, 0)}


class AudioChunk(NamedTuple):
    """Mono 16 kHz float32 samples in [-1, 1] and the first sample's time, for
    ``StreamingAuditor.push_audio(chunk.stamp_s, chunk.samples)``. ``received``: the message had
    no stamp, so the time is its receive time less the chunk's duration."""

    stamp_s: float
    samples: np.ndarray
    received: bool


def _sample_bytes(kind: str) -> int:
    return 3 if kind.startswith("packed") else np.dtype(kind).itemsize


def _decode_pcm(raw: np.ndarray, sample_format: str, field: str) -> np.ndarray:
    """Interleaved samples of ``sample_format`` as float64 in about [-1, 1]."""
    kind, scale, zero = SAMPLE_FORMATS[sample_format]
    if kind.startswith("packed"):
        triples = raw.reshape(-1, 3).astype(np.int64)
        if kind == "packed-be":
            triples = triples[:, ::-1]
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
    else:
        values = raw.view(np.dtype(kind)).astype(np.float64 if kind[1] == "f" else np.int64)
    if sample_format.startswith("S24"):            # sign-extend the low 24 bits
        values = values & 0xFFFFFF
        values = np.where(values >= 2**23, values - 2**24, values)
    samples = (values.astype(np.float64) - zero) / scale
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{field}: the {sample_format} samples contain NaN or infinity")
    return samples


def audio_to_samples(msg, info, *, receive_time_s: float | None = None) -> AudioChunk:
    """An ``AudioDataStamped`` (or unstamped ``AudioData``) with its ``AudioInfo`` as float32 mono
    16 kHz samples (channels averaged, clipped to [-1, 1]) and the first sample's time.

    The time is ``header.stamp`` (audio_capture stamps the start of the buffer). Unstamped audio
    (an ``AudioData``, or a zero stamp) gets its receive time ``receive_time_s`` (default: the wall
    clock now) less the chunk's duration. Only raw PCM at 16 kHz is taken: another rate, a
    compressed coding or an unknown sample format raises a ``ValueError`` naming the ``AudioInfo``
    field (no resampling: a chunk-wise resampler would click at every chunk boundary)."""
    coding = str(info.coding_format).strip()
    if coding.lower() not in RAW_CODINGS:
        raise ValueError(f"coding_format: {coding!r} is compressed; the auditor takes raw PCM "
                         "(audio_capture: format:=wave)")
    sample_format = str(info.sample_format).strip().upper()
    if sample_format not in SAMPLE_FORMATS:
        raise ValueError(f"sample_format: {str(info.sample_format)!r} is not supported "
                         f"(use one of {', '.join(SAMPLE_FORMATS)})")
    if int(info.sample_rate) != SAMPLE_RATE:
        raise ValueError(f"sample_rate: {int(info.sample_rate)} Hz; the auditor takes {SAMPLE_RATE} Hz and does "
                         f"not resample streams (audio_capture: sample_rate:={SAMPLE_RATE}, its default)")
    channels = int(info.channels)
    if channels < 1:
        raise ValueError(f"channels: {channels}; expected at least 1")
    stamped = hasattr(msg, "header")
    field = "audio.data" if stamped else "data"
    raw = _bytes(msg.audio.data if stamped else msg.data)
    frame_bytes = _sample_bytes(SAMPLE_FORMATS[sample_format][0]) * channels
    if raw.size % frame_bytes:
        raise ValueError(f"{field}: {raw.size} bytes is not a whole number of {channels}-channel {sample_format} "
                         f"frames ({frame_bytes} bytes each)")
    samples = _decode_pcm(raw, sample_format, field).reshape(-1, channels).mean(axis=1)
    samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
    if stamped and not _is_zero(msg.header.stamp):
        return AudioChunk(time_to_seconds(msg.header.stamp), samples, False)
    now = time.time() if receive_time_s is None else float(receive_time_s)
    return AudioChunk(now - samples.size / SAMPLE_RATE, samples, True)


def samples_to_audio(samples, stamp=None, *, sample_format: str = "S16LE", channels: int = 1,
                     frame_id: str = ""):
    """``(AudioDataStamped, AudioInfo)`` of mono float samples in [-1, 1] at 16 kHz, copied to every
    channel; with ``stamp=None`` an unstamped ``AudioData`` instead. ``stamp``: the first sample's
    time (float seconds or a ``builtin_interfaces/Time``). Formats: the signed integer and float
    ones of :data:`SAMPLE_FORMATS`, except packed and 24-in-32-bit."""
    sample_format = sample_format.upper()
    kind, scale, zero = SAMPLE_FORMATS.get(sample_format, ("?", 0, 1))
    if zero or kind.startswith(("?", "packed")) or sample_format.startswith("S24"):
        raise ValueError(f"sample_format: cannot write {sample_format!r}")
    if int(channels) < 1:
        raise ValueError(f"channels: {channels}; expected at least 1")
    values = np.clip(np.asarray(samples, dtype=np.float64).reshape(-1), -1.0, 1.0)
    if np.dtype(kind).kind == "i":
        values = np.round(values * (scale - 1))
    frames = np.repeat(values[:, None], int(channels), axis=1).astype(kind)
    data = new(AUDIO_DATA, data=np.frombuffer(frames.tobytes(), np.uint8).copy())
    msg = data if stamp is None else new(AUDIO_STAMPED, header=header(stamp, frame_id), audio=data)
    info = new(AUDIO_INFO, channels=int(channels), sample_rate=SAMPLE_RATE, sample_format=sample_format,
               bitrate=SAMPLE_RATE * np.dtype(kind).itemsize * 8 * int(channels), coding_format="wave")
    return msg, info
