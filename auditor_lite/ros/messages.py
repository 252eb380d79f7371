"""ROS 2 messages of the auditor without ROS: a ``rosbags`` typestore, numpy conversions, CDR.

Torch-free and ROS-free (numpy and ``rosbags``). docs/ros.md describes the messages and topics.

- :func:`typestore`: ROS 2 Humble's types plus ``auditor_lite_msgs`` (the ``.msg`` files of the
  interface package next to this module) and ``audio_common_msgs`` as ros-drivers/audio_common
  defines it on its ``ros2`` branch (:data:`AUDIO_COMMON_MSGS`; another package reuses the name
  with other fields).
- Frames: :func:`image_to_array` (``rgb8``/``bgr8``/``mono8`` -> uint8 ``(H, W, 3)`` RGB) and
  :func:`array_to_image`. Masks: :func:`mask_to_image`, :func:`image_to_mask` (``mono8`` 0/255 at
  the frame's size, checked), :func:`make_request` / :func:`decode_request` (per-mask errors).
- Audio (``AudioDataStamped`` / ``AudioData`` + ``AudioInfo`` <-> float32 mono 16 kHz samples):
  :mod:`auditor_lite.ros.audio`, built on this module.
- Results: :func:`result_to_msg` / :func:`result_from_msg` (``StreamResult`` <-> ``AuditResult``).
- :func:`serialize` / :func:`deserialize`: CDR (XCDR1, little endian) as ROS 2 puts it on the wire.

Every refusal is a ``ValueError`` whose message starts with the offending field (``encoding``,
``step``, ``data``, ``masks[1].mask.height/width``, ``sample_rate``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

try:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("auditor_lite.ros needs rosbags: pip install rosbags") from exc

PACKAGE = "auditor_lite_msgs"
PACKAGE_DIR = Path(__file__).resolve().parent / PACKAGE       # the ROS 2 interface package
MSG_NAMES = ("StampedMask", "MaskRequest", "MaskAudit", "AuditResult")
IMAGE, STRING = "sensor_msgs/msg/Image", "std_msgs/msg/String"
AUDIO_DATA = "audio_common_msgs/msg/AudioData"
AUDIO_STAMPED = "audio_common_msgs/msg/AudioDataStamped"
AUDIO_INFO = "audio_common_msgs/msg/AudioInfo"
STAMPED_MASK, MASK_REQUEST = f"{PACKAGE}/msg/StampedMask", f"{PACKAGE}/msg/MaskRequest"
MASK_AUDIT, AUDIT_RESULT = f"{PACKAGE}/msg/MaskAudit", f"{PACKAGE}/msg/AuditResult"

# Pinned: github.com/ros-drivers/audio_common, branch ros2 (commit 06c280a, 2024-03-07),
# audio_common_msgs/msg/*.msg (fields only; their comments are in docs/ros.md).
AUDIO_COMMON_MSGS = {
    AUDIO_DATA: "uint8[] data\n",
    AUDIO_STAMPED: "std_msgs/Header header\naudio_common_msgs/AudioData audio\n",
    AUDIO_INFO: "uint8 channels\nuint32 sample_rate\nstring sample_format\nuint32 bitrate\nstring coding_format\n",
}


class Topic(NamedTuple):
    """A default topic: name, ROS 2 type, and QoS (reliability, durability, KEEP_LAST depth)."""

    name: str
    type: str
    reliability: str
    durability: str
    depth: int


TOPICS = {   # docs/ros.md section 4; audio names follow audio_capture's defaults (namespace "audio")
    "frames": Topic("/camera/image_raw", IMAGE, "best_effort", "volatile", 5),
    "audio": Topic("/audio/audio_stamped", AUDIO_STAMPED, "best_effort", "volatile", 5),
    "audio_unstamped": Topic("/audio/audio", AUDIO_DATA, "best_effort", "volatile", 5),
    "audio_info": Topic("/audio/audio_info", AUDIO_INFO, "best_effort", "volatile", 1),
    "expression": Topic("/auditor/expression", STRING, "reliable", "transient_local", 1),
    "requests": Topic("/auditor/requests", MASK_REQUEST, "reliable", "volatile", 64),
    "results": Topic("/auditor/results", AUDIT_RESULT, "reliable", "volatile", 100),
}


# ---------------------------------------------------------------------------- typestore, CDR
def message_definitions() -> dict[str, str]:
    """``{type name: .msg text}`` of ``audio_common_msgs`` (pinned) and ``auditor_lite_msgs``."""
    texts = dict(AUDIO_COMMON_MSGS)
    for name in MSG_NAMES:
        texts[f"{PACKAGE}/msg/{name}"] = (PACKAGE_DIR / "msg" / f"{name}.msg").read_text(encoding="utf-8")
    return texts


def register_types(store):
    """Register the definitions of :func:`message_definitions` with a rosbags typestore; returns it."""
    types: dict = {}
    for name, text in message_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@lru_cache(maxsize=1)
def typestore():
    """ROS 2 Humble's typestore with this module's types registered (one shared instance)."""
    return register_types(get_typestore(Stores.ROS2_HUMBLE))


def new(typename: str, **values):
    """A message of ``typename`` (e.g. ``sensor_msgs/msg/Image``) from the typestore."""
    return typestore().types[typename](**values)


def serialize(msg) -> bytes:
    """The message's CDR bytes (XCDR1, little endian, with the 4-byte encapsulation header)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data, typename: str):
    """The ``typename`` message in the CDR bytes ``data``."""
    return typestore().deserialize_cdr(data, typename)


def message_to_dict(msg):
    """A message as plain Python (dicts, lists, numbers, strings): for JSON and for comparing."""
    if is_dataclass(msg):
        return {f.name: message_to_dict(getattr(msg, f.name)) for f in fields(msg)}
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, (list, tuple)):
        return [message_to_dict(v) for v in msg]
    return msg


# ---------------------------------------------------------------------------- stamps
def time_to_seconds(stamp) -> float:
    """A ``builtin_interfaces/Time`` as float seconds."""
    return int(stamp.sec) + int(stamp.nanosec) / 1e9


def seconds_to_time(seconds: float):
    """Float seconds as a ``builtin_interfaces/Time`` (nanoseconds rounded; ``sec`` is an int32)."""
    value = float(seconds)
    if not math.isfinite(value):
        raise ValueError(f"stamp: expected finite seconds, got {seconds!r}")
    sec = math.floor(value)
    nanosec = round((value - sec) * 1e9)
    sec, nanosec = (sec + 1, 0) if nanosec >= 1_000_000_000 else (sec, nanosec)
    if not -2**31 <= sec < 2**31:
        raise ValueError(f"stamp: {seconds!r} s is outside builtin_interfaces/Time's int32 seconds")
    return new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def _time(stamp):
    """A Time from None (zero), float seconds, or a Time (copied)."""
    if stamp is None:
        return new("builtin_interfaces/msg/Time", sec=0, nanosec=0)
    if hasattr(stamp, "nanosec"):
        return new("builtin_interfaces/msg/Time", sec=int(stamp.sec), nanosec=int(stamp.nanosec))
    return seconds_to_time(stamp)


def header(stamp=None, frame_id: str = ""):
    """A ``std_msgs/Header``; ``stamp``: None (zero), float seconds or a ``builtin_interfaces/Time``."""
    return new("std_msgs/msg/Header", stamp=_time(stamp), frame_id=str(frame_id))


def _is_zero(stamp) -> bool:
    return int(stamp.sec) == 0 and int(stamp.nanosec) == 0


# ---------------------------------------------------------------------------- images and masks
ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}      # the frame encodings accepted (8-bit: no byte order)
MAX_SIDE = 16384                                     # larger sides are a corrupt header, not a camera


def _bytes(data) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def _pixels(msg, allowed: tuple[str, ...], field: str) -> tuple[np.ndarray, str]:
    """The ``(H, W, C)`` pixels of an Image (a view that skips the row padding) and its encoding."""
    encoding = str(msg.encoding)
    if encoding not in allowed:
        raise ValueError(f"{field}.encoding: {encoding!r} is not supported (use {', '.join(allowed)})")
    channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ValueError(f"{field}.height/width: {width}x{height} is not a picture (each side 1..{MAX_SIDE})")
    if step < width * channels:
        raise ValueError(f"{field}.step: {step} bytes is less than a row of {width} {encoding} pixels "
                         f"({width * channels} bytes)")
    data = _bytes(msg.data)
    if data.size != step * height:
        raise ValueError(f"{field}.data: {data.size} bytes, but step x height = {step} x {height} = {step * height}")
    return data.reshape(height, step)[:, :width * channels].reshape(height, width, channels), encoding


def image_to_array(msg, field: str = "image") -> np.ndarray:
    """A ``sensor_msgs/Image`` (``rgb8``, ``bgr8`` or ``mono8``; ``step`` may pad rows) as uint8
    ``(H, W, 3)`` RGB. An unpadded ``rgb8`` image is returned without a copy (a view of ``data``)."""
    pixels, encoding = _pixels(msg, tuple(ENCODINGS), field)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    return np.repeat(pixels, 3, axis=2)


def array_to_image(array, stamp=None, frame_id: str = "", encoding: str | None = None, step: int | None = None):
    """A ``sensor_msgs/Image`` of uint8 pixels: ``(H, W, 3)`` RGB (as ``rgb8`` by default, or ``bgr8``)
    or ``(H, W)`` grey (``mono8`` by default). ``step``: bytes per row, default unpadded."""
    pixels = np.asarray(array)
    if pixels.dtype != np.uint8:
        raise ValueError(f"array: expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise ValueError(f"array: expected (H, W, 3) RGB or (H, W) grey pixels, got shape {pixels.shape}")
    encoding = encoding or ("mono8" if pixels.ndim == 2 else "rgb8")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding: {encoding!r} is not supported (use {', '.join(ENCODINGS)})")
    if pixels.ndim == 3 and encoding == "mono8":
        raise ValueError("encoding: mono8 needs (H, W) grey pixels, got RGB")
    if pixels.ndim == 2 and encoding != "mono8":
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if encoding == "bgr8":
        pixels = pixels[..., ::-1]
    height, width = pixels.shape[:2]
    row = width * ENCODINGS[encoding]
    step = row if step is None else int(step)
    if step < row:
        raise ValueError(f"step: {step} bytes is less than a row ({row} bytes)")
    rows = np.zeros((height, step), np.uint8)
    rows[:, :row] = pixels.reshape(height, row)
    return new(IMAGE, header=header(stamp, frame_id), height=height, width=width, encoding=encoding,
               is_bigendian=0, step=step, data=rows.reshape(-1))


def mask_to_image(mask, stamp=None, frame_id: str = "", step: int | None = None):
    """A binary ``(H, W)`` mask (bool, or values {0, 1} or {0, 255}) as a ``mono8`` 0/255 Image."""
    values = np.asarray(mask)
    if values.ndim != 2:
        raise ValueError(f"mask: expected an (H, W) array, got shape {values.shape}")
    if values.dtype != bool:
        seen = set(np.unique(values).tolist())
        if not (seen <= {0, 1} or seen <= {0, 255}):
            raise ValueError(f"mask: expected a binary mask (values 0/1 or 0/255), got values {sorted(seen)[:5]}")
    return array_to_image(np.where(values != 0, 255, 0).astype(np.uint8), stamp, frame_id, "mono8", step)


def image_to_mask(msg, frame_shape=None, field: str = "mask") -> np.ndarray:
    """A ``mono8`` 0/255 Image as a bool ``(H, W)`` mask, checked to be binary and, when
    ``frame_shape`` (``(H, W)`` or ``(H, W, 3)``) is given, of the frame's size."""
    pixels = _pixels(msg, ("mono8",), field)[0][..., 0]
    if frame_shape is not None and pixels.shape != tuple(frame_shape[:2]):
        raise ValueError(f"{field}.height/width: the mask is {pixels.shape[1]}x{pixels.shape[0]} but its frame "
                         f"is {frame_shape[1]}x{frame_shape[0]}")
    foreground = pixels == 255
    odd = np.count_nonzero(pixels) - np.count_nonzero(foreground)
    if odd:
        values = np.unique(pixels[(pixels != 0) & ~foreground])[:5].tolist()
        raise ValueError(f"{field}.data: {odd} pixels are neither 0 nor 255 (e.g. {values}); masks are mono8 0/255")
    return foreground


def make_request(stamp, masks, ids=None, *, expression: str = "", request_id: str = "", frame_id: str = ""):
    """An ``auditor_lite_msgs/MaskRequest`` of binary ``(H, W)`` masks of the frame stamped ``stamp``."""
    masks = list(masks)
    ids = [str(i) for i in range(len(masks))] if ids is None else [str(i) for i in ids]
    if len(ids) != len(masks):
        raise ValueError(f"ids: {len(ids)} ids for {len(masks)} masks")
    stamped = [new(STAMPED_MASK, id=i, mask=mask_to_image(m, stamp, frame_id)) for i, m in zip(ids, masks)]
    return new(MASK_REQUEST, header=header(stamp, frame_id), request_id=str(request_id), expression=str(expression),
               masks=stamped)


@dataclass
class DecodedRequest:
    """A MaskRequest in numpy. ``masks[i]`` is a bool ``(H, W)`` array, or None with ``errors[i]``
    saying why (the field named). ``stamp`` is the header's Time, to copy into the result."""

    stamp_s: float
    stamp: object
    frame_id: str
    request_id: str
    expression: str | None
    ids: list
    masks: list
    errors: list

    def usable(self) -> tuple[list, list]:
        """``(ids, masks)`` of the masks that decoded: what to ``StreamingAuditor.submit``."""
        keep = [i for i, m in enumerate(self.masks) if m is not None]
        return [self.ids[i] for i in keep], [self.masks[i] for i in keep]

    def merge(self, result):
        """The ``StreamResult`` of the usable masks, completed with this request's undecodable ones:
        an audited result gets one outcome per original mask, in order (``index`` and ``masks[i]``
        refer to the request's positions); a request with no usable mask is ``bad_request`` with
        every mask's reason. Other window errors are returned unchanged (nothing was audited)."""
        from auditor_lite.runtime.streaming import MaskOutcome

        if all(e is None for e in self.errors):
            return result
        if result.masks:
            done, outcomes = iter(enumerate(result.masks)), []
            for i, (mask_id, error) in enumerate(zip(self.ids, self.errors)):
                if error is not None:
                    outcomes.append(MaskOutcome(mask_id, None, error))
                    continue
                j, outcome = next(done)          # j: its position among the masks submitted
                if outcome.result is not None:
                    outcomes.append(replace(outcome, result=replace(outcome.result, index=i)))
                else:
                    error = (outcome.error or "").replace(f"(masks[{j}])", f"(masks[{i}])", 1)
                    outcomes.append(replace(outcome, error=error))
            return replace(result, masks=tuple(outcomes))
        if all(m is None for m in self.masks) and result.error_code == "bad_request":
            return replace(result, error=f"masks: none of the {len(self.masks)} masks is usable",
                           masks=tuple(MaskOutcome(i, None, e) for i, e in zip(self.ids, self.errors)))
        return result


def decode_request(msg, frame_shape=None) -> DecodedRequest:
    """A MaskRequest's masks checked one by one (``mono8`` 0/255, the frame's size when
    ``frame_shape`` is given, a stamp that is zero or the request's): bad masks get an error naming
    the field (``masks[i].mask.encoding`` ...), the others are still usable. Empty ids become the index."""
    stamp = msg.header.stamp
    ids, masks, errors = [], [], []
    for i, stamped in enumerate(msg.masks):
        ids.append(str(stamped.id) or str(i))
        field = f"masks[{i}].mask"
        try:
            own = stamped.mask.header.stamp
            if not _is_zero(own) and (own.sec, own.nanosec) != (stamp.sec, stamp.nanosec):
                raise ValueError(f"{field}.header.stamp: {time_to_seconds(own):.9f} is neither zero nor the "
                                 f"request's header.stamp {time_to_seconds(stamp):.9f}")
            masks.append(image_to_mask(stamped.mask, frame_shape, field))
            errors.append(None)
        except ValueError as exc:
            masks.append(None)
            errors.append(f"mask {ids[-1]!r}: {exc}")
    return DecodedRequest(time_to_seconds(stamp), _time(stamp), str(msg.header.frame_id), str(msg.request_id),
                          str(msg.expression) or None, ids, masks, errors)


# ---------------------------------------------------------------------------- results
NO_SECOND = -1


def _mask_audit(outcome):
    audit = outcome.result
    if audit is None:
        return new(MASK_AUDIT, id=str(outcome.mask_id), error=str(outcome.error or "not audited"),
                   iou=0.0, iou_low=0.0, iou_high=0.0, raw_iou=0.0, mask_type="", type_names=[],
                   type_probs=np.zeros(0), action="", action_names=[], action_probs=np.zeros(0), explanation="",
                   empty=False)
    nan = float("nan")
    return new(MASK_AUDIT, id=str(outcome.mask_id), error="", iou=float(audit.iou),
               iou_low=nan if audit.iou_low is None else float(audit.iou_low),
               iou_high=nan if audit.iou_high is None else float(audit.iou_high), raw_iou=float(audit.raw_iou),
               mask_type=audit.mask_type, type_names=[str(k) for k in audit.type_probs],
               type_probs=np.array(list(audit.type_probs.values()), np.float64), action=audit.action,
               action_names=[str(k) for k in audit.action_probs],
               action_probs=np.array(list(audit.action_probs.values()), np.float64),
               explanation=audit.explanation, empty=bool(audit.empty))


def result_to_msg(result, *, stamp=None, frame_id: str = ""):
    """An ``auditor_lite_msgs/AuditResult`` of a ``StreamResult``. ``stamp``: the request's
    ``header.stamp`` to copy exactly (default: ``result.stamp_s``; zero if that is no usable time,
    so that an error result can always be sent); ``frame_id``: the request's."""
    try:
        when = _time(result.stamp_s if stamp is None else stamp)
    except (TypeError, ValueError):
        when = _time(None)
    return new(AUDIT_RESULT, header=header(when, frame_id),
               request_id=str(result.request_id), expression=result.expression or "",
               second=NO_SECOND if result.second is None else int(result.second),
               error_code=result.error_code or "", error=result.error or "",
               key_frame_stamp=_time(result.key_frame_stamp_s), masks=[_mask_audit(m) for m in result.masks],
               latency_s=float(result.latency_s), frame_wait_s=float(result.frame_wait_s),
               audio_wait_s=float(result.audio_wait_s), total_s=float(result.total_s),
               audio_missing_s=float(result.audio_missing_s), context_reused=bool(result.context_reused))


def result_from_msg(msg):
    """The ``StreamResult`` an ``AuditResult`` message carries (ids as strings; NaN bounds -> None)."""
    from auditor_lite.runtime.results import AuditResult
    from auditor_lite.runtime.streaming import MaskOutcome, StreamResult

    def bound(value: float):
        return None if math.isnan(value) else float(value)

    outcomes = []
    for i, m in enumerate(msg.masks):
        audit = None if m.error else AuditResult(
            index=i, iou=float(m.iou), iou_low=bound(m.iou_low), iou_high=bound(m.iou_high), mask_type=str(m.mask_type),
            type_probs=dict(zip(m.type_names, np.asarray(m.type_probs).tolist())), action=str(m.action),
            action_probs=dict(zip(m.action_names, np.asarray(m.action_probs).tolist())),
            explanation=str(m.explanation), raw_iou=float(m.raw_iou), empty=bool(m.empty))
        outcomes.append(MaskOutcome(str(m.id), audit, str(m.error) or None))
    key = msg.key_frame_stamp
    return StreamResult(request_id=str(msg.request_id), stamp_s=time_to_seconds(msg.header.stamp),
                        second=None if msg.second == NO_SECOND else int(msg.second),
                        expression=str(msg.expression) or None, masks=tuple(outcomes),
                        error_code=str(msg.error_code) or None, error=str(msg.error) or None,
                        key_frame_stamp_s=None if _is_zero(key) else time_to_seconds(key),
                        latency_s=float(msg.latency_s), frame_wait_s=float(msg.frame_wait_s),
                        audio_wait_s=float(msg.audio_wait_s), total_s=float(msg.total_s),
                        audio_missing_s=float(msg.audio_missing_s), context_reused=bool(msg.context_reused))
