"""The rclpy adapter (auditor_lite.ros.rclpy_node, `auditor-lite ros node --transport rclpy`): its QoS
and message classes where rclpy is importable (a ROS 2 installation; skipped here otherwise), and a
clear one-line error naming rclpy where it is not."""

from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from auditor_lite.ros.cli import ros

HAVE_RCLPY = importlib.util.find_spec("rclpy") is not None


@pytest.mark.skipif(HAVE_RCLPY, reason="rclpy is importable here: the error path does not apply")
def test_transport_rclpy_without_rclpy_is_a_one_line_error_naming_rclpy():
    res = CliRunner().invoke(ros, ["node", "--transport", "rclpy", "--seconds", "0"])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "rclpy" in lines[0] and "--transport" in lines[0], res.output
    assert "Traceback" not in res.output


def test_the_rclpy_node_uses_the_default_topics_qos():
    pytest.importorskip("rclpy", reason="rclpy is not installable here (needs a ROS 2 installation)")
    pytest.importorskip("rosbags", reason="the ros extra (rosbags) is not installed")
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

    from auditor_lite.ros import messages as m
    from auditor_lite.ros import rclpy_node

    frames = rclpy_node.qos_profile(m.TOPICS["frames"])
    assert frames.reliability == ReliabilityPolicy.BEST_EFFORT and frames.depth == 5
    assert frames.history == HistoryPolicy.KEEP_LAST
    assert rclpy_node.qos_profile(m.TOPICS["audio"]).reliability == ReliabilityPolicy.BEST_EFFORT
    for role in ("requests", "results"):
        assert rclpy_node.qos_profile(m.TOPICS[role]).reliability == ReliabilityPolicy.RELIABLE
    assert rclpy_node.qos_profile(m.TOPICS["expression"]).durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert rclpy_node.message_class(m.IMAGE).__name__ == "Image"
    with pytest.raises(ImportError, match="no_such_msgs"):
        rclpy_node.message_class("no_such_msgs/msg/Thing")
