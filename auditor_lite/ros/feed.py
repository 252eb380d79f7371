"""What the DDS node and the bag replay both do with an incoming stream message: frames, audio, the
audio format and the expression go into the ``StreamingAuditor`` the same way, so that a replay
gives the node's results. Mask requests are each caller's own (the node answers over DDS, the
replay records order and receive time)."""

from __future__ import annotations

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
