"""The auditor as a ROS 2 node over Cyclone DDS, without a ROS 2 installation (issue 14, item 3).

ROS 2 speaks DDS. This module speaks it directly with the PyPI ``cyclonedds`` binding (its wheel
bundles the C library), with ROS 2's conventions, so a ROS 2 system on the same DDS domain sees
the topics:

- topic ``/auditor/requests`` is the DDS topic ``rt/auditor/requests`` (:func:`dds_topic_name`);
- type ``sensor_msgs/msg/Image`` is the DDS type ``sensor_msgs::msg::dds_::Image_``
  (:func:`dds_type_name`), declared with a struct that mirrors the message field for field
  (:func:`idl_type`, built from the rosbags typestore), so XTypes type matching works too;
- payloads are the CDR bytes (XCDR1, little endian, 4-byte encapsulation header) that rosbags'
  ``serialize_cdr`` gives: :class:`CdrWriter` writes them and :class:`CdrReader` takes them as
  bytes, through the binding's low-level ``ddspy_write`` / ``ddspy_take`` (checked by
  :func:`check_binding`), which skips the typed binding's slow per-element conversion.

:class:`AuditorNode` subscribes to frames, audio (+ ``AudioInfo``), the expression and mask
requests, feeds a :class:`~auditor_lite.runtime.streaming.StreamingAuditor`, and publishes one
``AuditResult`` per request. QoS per topic comes from ``messages.TOPICS``.

Networking: :func:`loopback_config` is a Cyclone XML config that keeps every packet on
127.0.0.1 (loopback interface, multicast off, unicast peer 127.0.0.1). docs/ros_node.md.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from functools import lru_cache

import numpy as np

try:
    from cyclonedds.core import Entity, GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
    from cyclonedds.domain import Domain, DomainParticipant
    from cyclonedds.idl import make_idl_struct
    from cyclonedds.idl import types as idl
    from cyclonedds.pub import DataWriter
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic as DdsTopic
    from cyclonedds.util import duration
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("auditor_lite.ros.dds_node needs cyclonedds: pip install cyclonedds") from exc

from auditor_lite.ros import messages as m
from auditor_lite.ros.feed import StreamNode, warm_up

# The binding's low-level calls (not public API): checked against the versions tested.
TESTED_CYCLONEDDS = ((0, 10), (11, 99))          # inclusive (major, minor) range
try:
    from cyclonedds._clayer import ddspy_take, ddspy_write
except ImportError:  # pragma: no cover - a binding that renamed its C layer
    ddspy_take = ddspy_write = None

ANY_SAMPLE = SampleState.Any | ViewState.Any | InstanceState.Any


def check_binding() -> str:
    """The ``cyclonedds`` version; raises ``ImportError`` if its raw CDR calls are missing or the
    version is outside :data:`TESTED_CYCLONEDDS`."""
    version = importlib.metadata.version("cyclonedds")
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    if ddspy_write is None or ddspy_take is None:
        raise ImportError(f"cyclonedds {version}: cyclonedds._clayer.ddspy_write/ddspy_take are missing")
    if not TESTED_CYCLONEDDS[0] <= major_minor <= TESTED_CYCLONEDDS[1]:
        raise ImportError(f"cyclonedds {version} is untested (tested: {TESTED_CYCLONEDDS}); its raw CDR "
                          "calls may differ")
    return version


# ---------------------------------------------------------------------------- naming, types
def dds_topic_name(ros_topic: str) -> str:
    """ROS 2's DDS topic name: ``/auditor/requests`` -> ``rt/auditor/requests``."""
    name = "/" + ros_topic.strip("/")
    if name == "/" or "//" in name:
        raise ValueError(f"topic: {ros_topic!r} is not a ROS 2 topic name")
    return "rt" + name


def dds_type_name(ros_type: str) -> str:
    """ROS 2's DDS type name: ``sensor_msgs/msg/Image`` -> ``sensor_msgs::msg::dds_::Image_``."""
    parts = ros_type.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"type: {ros_type!r} is not pkg/msg/Name")
    package, kind, name = parts
    return f"{package}::{kind}::dds_::{name}_"


_BASE = {"bool": bool, "byte": idl.byte, "octet": idl.byte, "char": idl.uint8, "uint8": idl.uint8,
         "int8": idl.int8, "uint16": idl.uint16, "int16": idl.int16, "uint32": idl.uint32, "int32": idl.int32,
         "uint64": idl.uint64, "int64": idl.int64, "float32": idl.float32, "float64": idl.float64}


def _field_type(desc):
    kind, detail = desc
    if kind == 1:                                            # BASE: (name, string bound)
        name, bound = detail
        if name == "string":
            return idl.bounded_str[bound] if bound else str
        if name not in _BASE:
            raise ValueError(f"type: base type {name!r} is not supported")
        return _BASE[name]
    if kind == 2:                                            # NAME: a nested message
        return idl_type(detail)
    inner, size = detail
    if kind == 3:                                            # ARRAY
        return idl.array[_field_type(inner), size]
    if kind == 4:                                            # SEQUENCE (size: bound or 0)
        return idl.sequence[_field_type(inner), size] if size else idl.sequence[_field_type(inner)]
    raise ValueError(f"type: field kind {kind!r} is not supported")


@lru_cache(maxsize=None)
def idl_type(ros_type: str):
    """A ``cyclonedds.idl`` struct named :func:`dds_type_name` with the message's fields (from the
    typestore of :mod:`auditor_lite.ros.messages`): its XCDR1 equals rosbags' CDR of the message."""
    _consts, fields = m.typestore().fielddefs[ros_type]
    members = {name: _field_type(desc) for name, desc in fields}
    if not members:                                          # ROS 2's rule for empty messages
        members = {"structure_needs_at_least_one_member": idl.uint8}
    return make_idl_struct(ros_type.replace("/", "_"), dds_type_name(ros_type), members)


def qos(topic: m.Topic) -> Qos:
    """The DDS QoS of a default topic: reliability, durability, KEEP_LAST depth."""
    reliability = (Policy.Reliability.BestEffort if topic.reliability == "best_effort"
                   else Policy.Reliability.Reliable(duration(milliseconds=100)))
    durability = (Policy.Durability.TransientLocal if topic.durability == "transient_local"
                  else Policy.Durability.Volatile)
    return Qos(reliability, durability, Policy.History.KeepLast(topic.depth))


# ---------------------------------------------------------------------------- network config
def loopback_config(trace_file: str | None = None, peers: int = 16) -> str:
    """A Cyclone DDS XML config that keeps all traffic on 127.0.0.1: the loopback interface only,
    multicast off, discovery by unicast to the peer 127.0.0.1 (``peers`` participant indices).
    ``trace_file``: also log the config and discovery there (to check the interface)."""
    trace = (f"<Tracing><Category>config,discovery</Category><OutputFile>{trace_file}</OutputFile></Tracing>"
             if trace_file else "")
    return ("<CycloneDDS><Domain Id=\"any\"><General><Interfaces><NetworkInterface address=\"127.0.0.1\"/>"
            "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
            "<ParticipantIndex>auto</ParticipantIndex>"
            f"<MaxAutoParticipantIndex>{int(peers)}</MaxAutoParticipantIndex>"
            "<Peers><Peer address=\"127.0.0.1\"/></Peers></Discovery>"
            f"{trace}</Domain></CycloneDDS>")


def _delete(entity) -> None:
    """Delete a DDS entity (and its children) now instead of at garbage collection."""
    if entity is not None and entity._ref in Entity._entities:
        del Entity._entities[entity._ref]
        entity._delete(entity._ref)


class DdsContext:
    """A DDS domain (configured by ``config``, default :func:`loopback_config`) and one participant.
    ``close()`` deletes both and everything made on them; usable as a context manager."""

    def __init__(self, domain_id: int, config: str | None = None):
        check_binding()
        self.domain_id = int(domain_id)
        self.domain = Domain(self.domain_id, loopback_config() if config is None else config)
        self.participant = DomainParticipant(self.domain_id)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _delete(self.participant)
            _delete(self.domain)

    def __enter__(self) -> "DdsContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------- endpoints
class _Endpoint:
    def __init__(self, participant, topic: str, ros_type: str, topic_qos: m.Topic | Qos):
        self.ros_type, self.name = ros_type, dds_topic_name(topic)
        self.qos = qos(topic_qos) if isinstance(topic_qos, m.Topic) else topic_qos
        self.topic = DdsTopic(participant, self.name, idl_type(ros_type))   # QoS on the endpoints only


class CdrWriter(_Endpoint):
    """A DDS writer of one ROS 2 topic that writes rosbags CDR bytes unchanged."""

    def __init__(self, participant, topic: str, ros_type: str, topic_qos: m.Topic | Qos):
        super().__init__(participant, topic, ros_type, topic_qos)
        self.writer = DataWriter(participant, self.topic, qos=self.qos)

    def write_cdr(self, data: bytes) -> None:
        ret = ddspy_write(self.writer._ref, bytes(data))
        if ret < 0:
            raise RuntimeError(f"dds write on {self.name}: return code {ret}")

    def write(self, msg) -> None:
        if msg.__msgtype__ != self.ros_type:
            raise ValueError(f"msg: a {msg.__msgtype__}, but {self.name} carries {self.ros_type}")
        self.write_cdr(m.serialize(msg))

    def matched(self) -> int:
        return len(self.writer.get_matched_subscriptions())

    def wait_matched(self, count: int = 1, timeout: float = 5.0) -> bool:
        return _poll(lambda: self.matched() >= count, timeout)


class CdrReader(_Endpoint):
    """A DDS reader of one ROS 2 topic that takes the samples' CDR bytes."""

    def __init__(self, participant, topic: str, ros_type: str, topic_qos: m.Topic | Qos):
        super().__init__(participant, topic, ros_type, topic_qos)
        self.reader = DataReader(participant, self.topic, qos=self.qos)
        self.condition = ReadCondition(self.reader, ANY_SAMPLE)

    def take_cdr(self, n: int = 64) -> list[bytes]:
        ret = ddspy_take(self.reader._ref, ANY_SAMPLE, n)
        if isinstance(ret, int):
            raise RuntimeError(f"dds take on {self.name}: return code {ret}")
        return [data for data, info in ret if info.valid_data]

    def take(self, n: int = 64) -> list:
        return [m.deserialize(data, self.ros_type) for data in self.take_cdr(n)]

    def matched(self) -> int:
        return len(self.reader.get_matched_publications())

    def wait_matched(self, count: int = 1, timeout: float = 5.0) -> bool:
        return _poll(lambda: self.matched() >= count, timeout)

    def wait_take(self, count: int = 1, timeout: float = 5.0) -> list:
        """Messages taken until ``count`` have arrived or ``timeout`` s have passed."""
        got, end = [], time.monotonic() + timeout
        while len(got) < count and time.monotonic() < end:
            got += self.take()
            if len(got) < count:
                time.sleep(0.005)
        return got


def _poll(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------------------- the node
def warm_codecs() -> float:
    """Serialize and deserialize one message of each of the node's topic types (rosbags builds its
    CDR code per type on first use) and run the frame, request and result conversions once.
    Returns the seconds it took."""
    from auditor_lite.ros.audio import samples_to_audio
    from auditor_lite.runtime.stream_batch import StreamResult

    started = time.perf_counter()
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:4, 2:4] = True
    audio, info = samples_to_audio(np.zeros(160, np.float32), 0.0)
    for msg in (m.array_to_image(np.zeros((8, 8, 3), np.uint8), 0.0), audio, info, m.new(m.STRING, data="x"),
                m.make_request(0.0, mask, ["m"]), m.result_to_msg(StreamResult("warm", 0.0, None, None))):
        back = m.deserialize(m.serialize(msg), msg.__msgtype__)
        if back.__msgtype__ == m.IMAGE:
            m.image_to_array(back)
        elif back.__msgtype__ == m.MASK_REQUEST:
            m.decode_request(back)
    return time.perf_counter() - started


class AuditorNode(StreamNode):
    """Subscribes to frames, audio (+ AudioInfo), the expression and mask requests on ``context``'s
    participant; audits with a ``StreamingAuditor`` (``stream_options`` go to it); publishes one
    ``AuditResult`` per request. ``topics``: ``messages.TOPICS`` or a copy with other names.

    Audio needs its ``AudioInfo``; until one arrives, ``default_audio_info`` is used (audio_capture's
    defaults: S16LE, 16 kHz, mono, wave). A malformed message is counted in ``stats`` (and, for a
    request, answered with an error result); it never stops the node (``feed.StreamNode``).
    ``close()`` stops the reader thread, drains or cancels the auditor (``drain``) and deletes the
    node's DDS endpoints.

    ``warm``: before subscribing, run the graphs once on zeros (:func:`~auditor_lite.ros.feed.warm_up`)
    and each topic's CDR conversion once (:func:`warm_codecs`), so that the first requests do not pay
    first-run costs; the seconds each took are in :attr:`startup`."""

    def __init__(self, auditor, context: DdsContext, *, topics=None, default_audio_info=None,
                 drain: bool = True, warm: bool = True, **stream_options):
        self.startup = {"graphs_s": warm_up(auditor), "codecs_s": warm_codecs()} if warm else {}
        self.topics = dict(m.TOPICS if topics is None else topics)
        participant = context.participant
        self.readers = {k: CdrReader(participant, self.topics[k].name, self.topics[k].type, self.topics[k])
                        for k in self.INPUTS}
        results = self.topics["results"]
        self.results = CdrWriter(participant, results.name, results.type, results)
        self._drain = drain
        self._waitset = WaitSet(participant)
        for reader in self.readers.values():
            self._waitset.attach(reader.condition)
        self._wake = GuardCondition(participant)
        self._waitset.attach(self._wake)
        self._stop = threading.Event()
        self._start_stream(auditor, default_audio_info, **stream_options)
        self._thread = threading.Thread(target=self._run, name="dds-auditor-node", daemon=True)
        self._thread.start()

    def write_result(self, msg) -> None:
        self.results.write(msg)

    # ------------------------------------------------------------------ reader thread
    def _run(self) -> None:
        while not self._stop.is_set():
            self._waitset.wait(duration(milliseconds=200))
            for key in self.INPUTS:
                if self._stop.is_set():
                    return
                for data in self.readers[key].take_cdr():
                    self.handle(key, data, self.readers[key].ros_type)

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout: float = 30.0) -> bool:
        """Stop reading, finish (``drain``) or cancel waiting requests, delete the endpoints.
        True when both threads ended within ``timeout``."""
        self._stop.set()
        self._wake.set(True)
        self._thread.join(timeout)
        ok = not self._thread.is_alive()
        ok = self.stream.close(drain=self._drain, timeout=timeout) and ok
        for entity in (self._waitset, self._wake, *(r.reader for r in self.readers.values()), self.results.writer):
            _delete(entity)
        return ok

    def __enter__(self) -> "AuditorNode":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
