"""Live tools over DDS shaped like ``ros2 bag play`` and ``ros2 topic echo`` (docs/robotics.md).

:func:`play` publishes a bag's messages on their topics at the bag's pace (``rate`` x), with each
topic's QoS (``messages.TOPICS``; other topics RELIABLE, KEEP_LAST 10). :func:`echo` records what
arrives on one topic as JSON lines. Both stop on a bounded count or time, or when ``stop`` (a
``threading.Event``) is set; the CLI sets it on Ctrl-C. The payloads are the bag's CDR bytes,
re-serialized by rosbags (byte-identical), written and taken raw (``dds_node.CdrWriter`` /
``CdrReader``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from auditor_lite.ros import messages as m
from auditor_lite.ros.bags import BagError, read_bag, result_record
from auditor_lite.ros.dds_node import CdrReader, CdrWriter, _delete

DEFAULT_TOPIC = m.Topic("", "", "reliable", "volatile", 10)


def topic_qos(name: str, topics: dict | None = None) -> m.Topic:
    """The default topic named ``name`` (its type and QoS), or RELIABLE KEEP_LAST 10 of unknown type."""
    for topic in (m.TOPICS if topics is None else topics).values():
        if topic.name == "/" + name.strip("/"):
            return topic
    return DEFAULT_TOPIC._replace(name="/" + name.strip("/"))


def bag_topics(path) -> dict[str, str]:
    """``{topic: ROS 2 type}`` of a bag, from its metadata (no message is read)."""
    from rosbags.rosbag2 import Reader

    folder = Path(path)
    folder = folder.parent if folder.is_file() else folder
    if not (folder / "metadata.yaml").is_file():
        raise BagError(path, "not a rosbag2 bag (no metadata.yaml)")
    with Reader(folder) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def _sleep_until(deadline: float, stop: threading.Event) -> bool:
    """Sleep until the monotonic ``deadline``; False when ``stop`` was set meanwhile."""
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        stop.wait(min(left, 0.1))
    return False


def play(bag, participant, *, rate: float = 1.0, topics: dict | None = None, wait_subscribers_s: float = 5.0,
         stop: threading.Event | None = None, linger_s: float = 2.0, log=None) -> dict:
    """Publish ``bag`` on ``participant`` at ``rate`` x its log times; returns counts per topic.

    Before the first message it waits up to ``wait_subscribers_s`` for a subscriber on every
    RELIABLE topic (a RELIABLE VOLATILE message sent before anyone listens is lost), and at the end
    up to ``linger_s`` for those subscribers' acknowledgements. ``log``: a callable for notices."""
    if not rate > 0:
        raise ValueError(f"rate: expected a positive factor, got {rate!r}")
    stop = stop or threading.Event()
    kinds = bag_topics(bag)
    writers = {name: CdrWriter(participant, name, ros_type, topic_qos(name, topics)._replace(type=ros_type))
               for name, ros_type in kinds.items()}
    counts = dict.fromkeys(kinds, 0)
    try:
        reliable = [w for name, w in writers.items() if topic_qos(name, topics).reliability == "reliable"]
        missing = [w.name for w in reliable if not w.wait_matched(1, wait_subscribers_s)]
        if missing and log:
            log(f"no subscriber after {wait_subscribers_s:g} s on {', '.join(missing)}; publishing anyway")
        start, first = time.monotonic(), None
        for item in read_bag(bag):
            first = item.log_time_ns if first is None else first
            if not _sleep_until(start + (item.log_time_ns - first) / 1e9 / rate, stop):
                break
            writers[item.topic].write_cdr(m.serialize(item.msg))
            counts[item.topic] += 1
        for w in reliable:
            w.writer.wait_for_acks(int(linger_s * 1e9))
    finally:
        for w in writers.values():
            _delete(w.writer)
    return counts


def echo(participant, topic: str, out, *, count: int | None = None, timeout_s: float | None = None,
         msgtype: str | None = None, topics: dict | None = None, stop: threading.Event | None = None,
         on_message=None) -> int:
    """Record messages of ``topic`` into ``out`` (JSON lines: ``receive_time_ns`` and the message's
    fields; NaN as null) until ``count`` have arrived, ``timeout_s`` has passed or ``stop`` is set.
    The type and QoS are the default topic's (``msgtype`` for another topic). Returns the count.
    ``on_message(msg, receive_time_ns)`` is called for each (the loadtest's recorder)."""
    qos = topic_qos(topic, topics)
    ros_type = msgtype or qos.type
    if not ros_type:
        raise ValueError(f"topic: {topic} is not a default topic; give its type (--type pkg/msg/Name)")
    if ros_type not in m.typestore().types:
        raise ValueError(f"type: {ros_type} is not a known message type")
    stop = stop or threading.Event()
    reader = CdrReader(participant, qos.name, ros_type, qos._replace(type=ros_type))
    end = None if timeout_s is None else time.monotonic() + timeout_s
    got = 0
    try:
        with open(out, "w", encoding="utf-8") as fh:
            while not stop.is_set() and (count is None or got < count) and (end is None or time.monotonic() < end):
                batch = reader.take_cdr(count - got if count is not None else 64)
                now_ns = time.time_ns()
                for data in batch:
                    msg = m.deserialize(data, ros_type)
                    if on_message is not None:
                        on_message(msg, now_ns)
                    record = result_record(msg, now_ns)
                    record["receive_time_ns"] = record.pop("log_time_ns")
                    fh.write(json.dumps(record, sort_keys=True) + "\n")
                got += len(batch)
                if not batch:
                    fh.flush()
                    stop.wait(0.005)
    finally:
        _delete(reader.reader)
    return got
