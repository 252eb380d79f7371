"""ROS 2 bags of an auditor stream, and the offline replay (issue 14, item 4). docs/ros_bags.md.

Pure Python (``rosbags``), torch-free, no ROS 2 installation needed.

- :func:`write_bag` writes ``(topic, log time ns, message)`` triples to a rosbag2 bag (``sqlite3``
  or ``mcap``, metadata version 9). Each topic's QoS comes from ``messages.TOPICS`` when the topic
  is one of the defaults, and each connection stores its full message definition (custom
  ``auditor_lite_msgs`` and ``audio_common_msgs`` included), so any rosbags typestore, or
  ``ros2 bag``, can read the bag without this package. The bag is written under a temporary name
  next to ``path`` and renamed when complete: a failure leaves nothing at ``path``.
- :func:`read_bag` yields :class:`BagMessage` in receive (log time) order.
- :func:`clip_messages` streams a clip (frames, audio, expression, one request) as the triples.
- :func:`replay` feeds a bag into a :class:`~auditor_lite.runtime.streaming.StreamingAuditor`
  exactly as :class:`~auditor_lite.ros.dds_node.AuditorNode` does, and writes one ``AuditResult``
  per request to a bag or a ``.jsonl`` file.

Every refusal is a :class:`BagError` (a ``ValueError``) whose message starts with the file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from auditor_lite.ros import messages as m
from auditor_lite.ros.audio import audio_to_samples, samples_to_audio
from auditor_lite.ros.feed import STREAM_INPUTS, feed_stream

try:
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.rosbag2.metadata import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2.writer import StoragePlugin
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("auditor_lite.ros.bags needs rosbags: pip install rosbags") from exc

BAG_VERSION = 9                                     # rosbag2 metadata version written (Jazzy and later read 9)
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
INPUT_KEYS = ("expression", "audio_info", "frames", "audio", "audio_unstamped", "requests")
TIMING_FIELDS = ("latency_s", "frame_wait_s", "audio_wait_s", "total_s")


class BagError(ValueError):
    """A bag that cannot be read or written; the message starts with the file."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True)
class BagMessage:
    """One message of a bag: its topic, ROS 2 type, log (receive) time in ns and the message."""

    topic: str
    msgtype: str
    log_time_ns: int
    msg: object


# ---------------------------------------------------------------------------- writing
def _qos_time(seconds: int = 0x7FFFFFFF, nsec: int = 0xFFFFFFFF) -> QosTime:
    return QosTime(sec=seconds, nsec=nsec)                  # ROS 2's "infinite" duration


def bag_qos(topic: m.Topic) -> Qos:
    """The rosbags QoS profile a recorder would store for a default topic."""
    return Qos(history=QosHistory.KEEP_LAST, depth=int(topic.depth),
               reliability=QosReliability.BEST_EFFORT if topic.reliability == "best_effort"
               else QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if topic.durability == "transient_local"
               else QosDurability.VOLATILE,
               deadline=_qos_time(), lifespan=_qos_time(), liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=_qos_time(), avoid_ros_namespace_conventions=False)


def storage_of(path, storage: str | None = None) -> str:
    """``storage`` checked, or guessed from the name (``*.mcap`` -> mcap, else sqlite3)."""
    if storage is None:
        return "mcap" if str(path).endswith(".mcap") else "sqlite3"
    if storage not in STORAGES:
        raise BagError(path, f"storage: {storage!r} is not one of {', '.join(STORAGES)}")
    return storage


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def _check_new(path: Path) -> None:
    if path.exists():
        raise BagError(path, "already exists (choose a new output name)")
    if not path.parent.is_dir():
        raise BagError(path, f"the folder {path.parent} does not exist")


def write_bag(path, items: Iterable[tuple[str, int, object]], *, storage: str | None = None,
              topics: dict | None = None) -> Path:
    """Write ``(topic, log_time_ns, message)`` triples to a new rosbag2 bag folder ``path``.

    ``storage``: ``sqlite3`` or ``mcap`` (default: from the name, else sqlite3). A topic's type is
    its first message's ``__msgtype__``; its QoS is the default topic's (``topics``, default
    ``messages.TOPICS``) when the name matches one, else RELIABLE KEEP_LAST 10. Written to a
    temporary folder and renamed at the end: on any error nothing is left at ``path``."""
    path = Path(path)
    storage = storage_of(path, storage)
    _check_new(path)
    by_name = {t.name: t for t in (m.TOPICS if topics is None else topics).values()}
    store = m.typestore()
    temp = _temp_sibling(path)
    shutil.rmtree(temp, ignore_errors=True)
    try:
        with Writer(temp, version=BAG_VERSION, storage_plugin=STORAGES[storage]) as writer:
            connections: dict = {}
            for topic, stamp_ns, msg in items:
                msgtype = msg.__msgtype__
                conn = connections.get(topic)
                if conn is None:
                    qos = bag_qos(by_name.get(topic, m.Topic(topic, msgtype, "reliable", "volatile", 10)))
                    conn = connections[topic] = writer.add_connection(topic, msgtype, typestore=store,
                                                                      offered_qos_profiles=[qos])
                elif conn.msgtype != msgtype:
                    raise BagError(path, f"topic {topic}: a {msgtype} after {conn.msgtype} messages")
                writer.write(conn, int(stamp_ns), m.serialize(msg))
        _check_new(path)                            # nobody took the name meanwhile
        os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return path


# ---------------------------------------------------------------------------- reading
def read_bag(path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """The messages of a bag (folder, or a single ``.mcap``/``.db3`` inside one) in log time order
    (ties: the order they were written), decoded with this package's typestore. ``topics``:
    only these topic names (default all)."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not folder.exists():
        raise BagError(path, "not found")
    if not (folder / "metadata.yaml").is_file():
        raise BagError(path, "not a rosbag2 bag (no metadata.yaml)")
    store = m.typestore()
    wanted = None if topics is None else set(topics)
    try:
        with Reader(folder) as reader:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            unknown = sorted({c.msgtype for c in conns if c.msgtype not in store.types})
            if unknown:
                raise BagError(path, f"message types this package does not know: {', '.join(unknown)}")
            for conn, stamp_ns, data in reader.messages(connections=conns):
                try:
                    msg = store.deserialize_cdr(data, conn.msgtype)
                except Exception as exc:  # noqa: BLE001 - a corrupt record names its topic
                    raise BagError(path, f"topic {conn.topic}: undecodable {conn.msgtype} at {stamp_ns} ns "
                                   f"({exc})") from None
                yield BagMessage(conn.topic, conn.msgtype, int(stamp_ns), msg)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags' reader errors, corrupt files
        raise BagError(path, f"cannot read the bag ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------- a clip as a stream
def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def clip_messages(clip, *, t0: float = 100.0, fps: float = 10.0, chunk_s: float = 0.1,
                  request_id: str = "key", topics: dict | None = None) -> list[tuple[str, int, object]]:
    """A clip (``benchmark.variants.ClipInputs``: 10 frames, 10 s of audio, expression, masks,
    ``frame_index`` k) as a stream: ``(topic, log_time_ns, message)`` in receive order.

    The streaming window ends at the request's second (the key frame is its newest frame), so a
    key frame k < 9 needs 9 - k seconds before the clip: a lead-in holding frame 0 with silent
    audio. Clip second j is stream second ``t0 + lead + j`` (``t0``: whole seconds). Frames at
    ``fps`` (frame j from ``j`` to ``j + 1`` s), audio chunks of ``chunk_s``, the expression first,
    and the masks' request 1 ms after the frame at the key frame's grid time (``+ 0.5`` s).
    Log time = stamp (a frame, a chunk's end, the request)."""
    topics = dict(m.TOPICS if topics is None else topics)
    if t0 != int(t0):
        raise ValueError("t0: whole seconds only (the grid is whole seconds)")
    frames, audio = np.asarray(clip.frames), np.asarray(clip.audio, np.float32)
    k, n = int(clip.frame_index), len(frames)
    if not 0 <= k < n:
        raise ValueError(f"frame_index: {k} is outside the clip's {n} frames")
    lead = max(0, 9 - k)
    sr = 16_000
    stream_frames = np.concatenate([np.repeat(frames[:1], lead, axis=0), frames]) if lead else frames
    stream_audio = np.concatenate([np.zeros(lead * sr, np.float32), audio])
    duration = len(stream_frames)
    start = float(t0)
    out: list[tuple[int, int, str, object]] = []      # (ns, order, topic, msg)
    order = iter(range(1 << 62))
    out.append((_ns(start), next(order), topics["expression"].name, m.new(m.STRING, data=str(clip.expression))))
    step = 1.0 / fps
    for i in range(int(round(duration * fps))):
        t = start + i * step
        out.append((_ns(t), next(order), topics["frames"].name,
                    m.array_to_image(stream_frames[min(int(i * step + 1e-9), duration - 1)], t, "camera")))
    chunk = int(round(chunk_s * sr))
    info_sent = False
    for s in range(0, len(stream_audio), chunk):
        piece = stream_audio[s:s + chunk]
        msg, info = samples_to_audio(piece, start + s / sr, frame_id="microphone")
        end_ns = _ns(start + (s + piece.size) / sr)
        if not info_sent:
            out.append((end_ns - 1, next(order), topics["audio_info"].name, info))
            info_sent = True
        out.append((end_ns, next(order), topics["audio"].name, msg))
    key_t = start + lead + k + 0.5
    out.append((_ns(key_t + 0.001), next(order), topics["requests"].name,
                m.make_request(key_t, clip.masks, [f"mask_{i:02d}" for i in range(len(clip.masks))],
                               expression=str(clip.expression), request_id=request_id, frame_id="camera")))
    out.sort(key=lambda e: (e[0], e[1]))
    return [(topic, ns, msg) for ns, _o, topic, msg in out]


def stream_window(clip, *, fps: float = 10.0) -> tuple[np.ndarray, np.ndarray, int]:
    """The window :func:`clip_messages` streams for its request: ``(frames (10, H, W, 3), audio
    (160000,), frame_index=9)``, what ``Auditor.audit`` takes to give the replay's result."""
    frames, audio = np.asarray(clip.frames), np.asarray(clip.audio, np.float32)
    k = int(clip.frame_index)
    lead = max(0, 9 - k)
    if lead:
        frames = np.concatenate([np.repeat(frames[:1], lead, axis=0), frames])
        audio = np.concatenate([np.zeros(lead * 16_000, np.float32), audio])
    second = lead + k
    window = frames[second - 9:second + 1]
    # the 16-bit audio the bag carries, as the replay decodes it
    msg, info = samples_to_audio(audio[(second - 9) * 16_000:(second + 1) * 16_000], 1.0)
    return window, audio_to_samples(msg, info).samples, 9


# ---------------------------------------------------------------------------- replay
class _Feeder:
    """What :class:`~auditor_lite.ros.dds_node.AuditorNode` does with each input message."""

    def __init__(self, stream, topics: dict):
        self.stream = stream
        self.by_topic = {topics[k].name: k for k in INPUT_KEYS if k in topics}
        self.audio_info = m.new(m.AUDIO_INFO, channels=1, sample_rate=16000, sample_format="S16LE",
                                bitrate=256000, coding_format="wave")
        self.lock = threading.Condition()
        self.requests: dict = {}               # stream id -> (order, decoded, log ns)
        self.done: dict = {}                   # stream id -> (order, AuditResult msg, log ns)
        self.counts = {f"{k}_in": 0 for k in INPUT_KEYS} | {"errors": 0, "ignored": 0}
        self.errors: list[str] = []
        self.order = 0

    def handle(self, item: BagMessage) -> None:
        key = self.by_topic.get(item.topic)
        if key is None:
            self.counts["ignored"] += 1
            return
        msg = item.msg
        try:
            if key in STREAM_INPUTS:
                self.audio_info = feed_stream(self.stream, key, msg, self.audio_info,
                                              receive_time_s=item.log_time_ns / 1e9)
            else:
                decoded = m.decode_request(msg)
                ids, masks = decoded.usable()
                with self.lock:
                    rid = self.stream.submit(decoded.stamp_s, masks, ids, expression=decoded.expression)
                    self.requests[rid] = (self.order, decoded, item.log_time_ns)
                    self.order += 1
            self.counts[f"{key}_in"] += 1
        except Exception as exc:  # noqa: BLE001 - as the node: counted, never fatal
            self.counts[f"{key}_in"] += 1
            self.counts["errors"] += 1
            self.errors.append(f"{key} at {item.log_time_ns} ns: {exc}")

    def publish(self, result) -> None:           # the StreamingAuditor's callback (worker thread)
        with self.lock:
            order, decoded, log_ns = self.requests.pop(result.request_id)
        result = decoded.merge(result)
        if decoded.request_id:
            result = replace(result, request_id=decoded.request_id)
        msg = m.result_to_msg(result, stamp=decoded.stamp, frame_id=decoded.frame_id)
        with self.lock:
            self.done[order] = (msg, log_ns, result.second)
            self.lock.notify_all()

    def wait_settled(self, stamp_s: float, margin_s: int, timeout: float) -> None:
        """Before data stamped ``stamp_s`` goes in: wait for the requests whose window it could push
        out of the buffer (second <= stamp - margin_s), so that no request is ``too_late`` only
        because the replay ran ahead of the worker (RELIABLE: the node's results, not a race)."""
        limit = math.floor(stamp_s) - margin_s
        with self.lock:
            def settled():
                return all(d.stamp_s >= limit + 1 for _o, d, _n in self.requests.values())
            if not self.lock.wait_for(settled, timeout):
                raise TimeoutError(f"replay: requests still unanswered after {timeout:g} s")


@dataclass
class ReplaySummary:
    """What :func:`replay` did: results written, inputs read per kind, errors (as the node counts them)."""

    results: list
    counts: dict
    errors: list
    stream_stats: dict
    out: Path


def result_record(msg, log_time_ns: int) -> dict:
    """An ``AuditResult`` message as one JSON-able dict (NaN -> None), with its log time."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not k.isupper()}    # not the constants
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return {"log_time_ns": int(log_time_ns), **clean(m.message_to_dict(msg))}


def replay(bag_in, results_out, auditor, *, storage: str | None = None, topics: dict | None = None,
           timings: bool = False, timeout_s: float = 120.0, **stream_options) -> ReplaySummary:
    """Audit a bag offline: its messages, in receive order, go into a ``StreamingAuditor`` the way
    the DDS node feeds it (same decoding, same merge of undecodable masks, same result message);
    every request's result is written to ``results_out``, a bag (``storage``: sqlite3 or mcap) or,
    for a name ending ``.jsonl``, one JSON object per line, in request order.

    RELIABLE: the queue holds every request of the bag (``max_pending`` >= the bag's request
    count), and before data that could push a waiting request's window out of the buffer the replay
    waits for that request. Deterministic: the timing fields (latency, waits) are zeroed unless
    ``timings``; a result's log time is its request's. ``stream_options`` go to the
    ``StreamingAuditor`` (its defaults otherwise: ``audio_policy="wait"``; the ``ros replay``
    command passes the node command's ``shift``), with no contexts encoded ahead unless
    ``speculate=True``."""
    from auditor_lite.runtime.streaming import StreamingAuditor

    bag_in, results_out = Path(bag_in), Path(results_out)
    jsonl = results_out.suffix == ".jsonl"
    if not jsonl:
        storage = storage_of(results_out, storage)
    if results_out.exists():
        raise BagError(results_out, "already exists (choose a new output name)")
    if not results_out.parent.is_dir():
        raise BagError(results_out, f"the folder {results_out.parent} does not exist")
    topics = dict(m.TOPICS if topics is None else topics)
    names = {topics[k].name for k in INPUT_KEYS if k in topics}
    items = list(read_bag(bag_in, names))
    n_requests = sum(1 for i in items if i.topic == topics["requests"].name)
    margin_s = int(stream_options.get("margin_s", 2))
    stream_options["max_pending"] = max(int(stream_options.get("max_pending", 64)), n_requests + 1)
    stream_options.setdefault("speculate", False)    # offline: no latency to save; context_reused stays deterministic
    feeder = _Feeder(None, topics)
    stream = StreamingAuditor(auditor, callback=feeder.publish, result_queue_size=0, **stream_options)
    feeder.stream = stream
    try:
        for item in items:
            if item.topic in (topics["frames"].name, topics["audio"].name) and feeder.requests:
                stamp = m.time_to_seconds(item.msg.header.stamp)
                feeder.wait_settled(stamp, margin_s, timeout_s)
            feeder.handle(item)
    finally:
        closed = stream.close(drain=True, timeout=timeout_s)
    if not closed or len(feeder.done) != feeder.order:
        raise BagError(bag_in, f"replay: {feeder.order - len(feeder.done)} of {feeder.order} requests got no result")
    ordered = [feeder.done[i] for i in range(feeder.order)]
    msgs = []
    for msg, log_ns, _second in ordered:
        if not timings:
            for name in TIMING_FIELDS:
                setattr(msg, name, 0.0)
        msgs.append((msg, log_ns))
    if jsonl:
        temp = _temp_sibling(results_out)
        try:
            with open(temp, "w", encoding="utf-8") as fh:
                for msg, log_ns in msgs:
                    fh.write(json.dumps(result_record(msg, log_ns), sort_keys=True) + "\n")
            os.replace(temp, results_out)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    else:
        name = topics["results"].name
        write_bag(results_out, [(name, log_ns, msg) for msg, log_ns in msgs], storage=storage, topics=topics)
    return ReplaySummary([msg for msg, _ in msgs], dict(feeder.counts), list(feeder.errors), stream.stats,
                         results_out)
