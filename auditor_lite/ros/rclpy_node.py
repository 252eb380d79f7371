"""The auditor as an rclpy node, for a ROS 2 installation (``auditor-lite ros node --transport rclpy``).

Where ``rclpy`` is importable (a sourced ROS 2 workspace) this is the node ``auditor-lite ros node``
runs by default; elsewhere the DDS node (:mod:`auditor_lite.ros.dds_node`) is. It is an
``rclpy.node.Node`` named ``auditor`` (so ``ros2 node list`` shows it) with the same topics and QoS
as the DDS node (``messages.TOPICS``: frames and audio BEST_EFFORT KEEP_LAST 5, requests and
results RELIABLE, the expression TRANSIENT_LOCAL), and the same handling
(:class:`~auditor_lite.ros.feed.StreamNode`: ``feed_stream`` for the stream inputs, the same
request decoding and result conversion).

Payloads stay CDR: the subscriptions are created with ``raw=True`` (the callback gets the
serialized message, as the DDS node takes it), converted by rosbags like every other path, and a
result is published as its CDR bytes (``Publisher.publish`` takes serialized messages). The
message classes give rclpy the type support: ``sensor_msgs``, ``std_msgs``, ``audio_common_msgs``
(ros-drivers audio_common) and ``auditor_lite_msgs`` (the interface package shipped next to this
module; build it in the workspace with colcon). docs/ros_node.md section 5.
"""

from __future__ import annotations

import importlib
import threading

try:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("--transport rclpy needs rclpy: source a ROS 2 installation (e.g. "
                      "/opt/ros/humble/setup.bash) or use --transport dds") from exc

from auditor_lite.ros import messages as m
from auditor_lite.ros.feed import StreamNode, warm_up


def message_class(ros_type: str):
    """The generated Python class of ``pkg/msg/Name`` (``sensor_msgs.msg.Image``); ImportError
    naming the package when it is not built in the workspace."""
    package, _kind, name = ros_type.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"{ros_type}: the ROS 2 package {package} is not installed in this workspace "
                          f"(build auditor_lite_msgs with colcon; audio_common_msgs from ros-drivers/audio_common)"
                          ) from exc


def qos_profile(topic: m.Topic) -> QoSProfile:
    """The rclpy QoS of a default topic (reliability, durability, KEEP_LAST depth)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(topic.depth),
        reliability=(ReliabilityPolicy.BEST_EFFORT if topic.reliability == "best_effort"
                     else ReliabilityPolicy.RELIABLE),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if topic.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE))


class RclpyAuditorNode(StreamNode):
    """The auditor on an ``rclpy`` node (see the module docstring). ``rclpy.init()`` must have been
    called; :meth:`spin` runs its executor until :meth:`close` (or ``rclpy`` shuts down).
    ``stream_options`` go to the ``StreamingAuditor``; ``warm`` as in ``dds_node.AuditorNode``."""

    def __init__(self, auditor, *, node_name: str = "auditor", topics=None, default_audio_info=None,
                 drain: bool = True, warm: bool = True, **stream_options):
        self.startup = {"graphs_s": warm_up(auditor)} if warm else {}
        self.topics = dict(m.TOPICS if topics is None else topics)
        self._drain = drain
        self._start_stream(auditor, default_audio_info, **stream_options)
        self.node = Node(node_name)
        results = self.topics["results"]
        self.publisher = self.node.create_publisher(message_class(results.type), results.name,
                                                    qos_profile(results))
        self.subscriptions = [
            self.node.create_subscription(message_class(t.type), t.name, self._callback(key, t.type),
                                          qos_profile(t), raw=True)
            for key, t in ((k, self.topics[k]) for k in self.INPUTS)]
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._stop = threading.Event()

    def _callback(self, key: str, ros_type: str):
        def on_message(data: bytes) -> None:
            self.handle(key, bytes(data), ros_type)
        return on_message

    def write_result(self, msg) -> None:
        self.publisher.publish(m.serialize(msg))            # serialized: rclpy publishes the bytes as they are

    def spin(self, seconds: float | None = None) -> None:
        """Run the node's callbacks until :meth:`close`, ``seconds`` have passed, or rclpy shuts down."""
        import time

        end = None if seconds is None else time.monotonic() + seconds
        while not self._stop.is_set() and rclpy.ok() and (end is None or time.monotonic() < end):
            self.executor.spin_once(timeout_sec=0.1)

    def close(self, timeout: float = 30.0) -> bool:
        """Stop spinning, finish (``drain``) or cancel waiting requests, destroy the node."""
        self._stop.set()
        ok = self.stream.close(drain=self._drain, timeout=timeout)
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        return ok

    def __enter__(self) -> "RclpyAuditorNode":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
