"""The ROS 2 node over Cyclone DDS (auditor_lite.ros.dds_node), loopback only.

Every participant is on a random DDS domain of this test run, configured by
``dds_node.loopback_config`` (127.0.0.1 only, multicast off), set before the first participant;
a test reads Cyclone's own trace to check the interface it chose. Every wait has a timeout."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the ros extra (rosbags) is not installed")
pytest.importorskip("cyclonedds", reason="cyclonedds is not installed (pip install cyclonedds)")

from auditor_lite.ros import dds_node as dn  # noqa: E402
from auditor_lite.ros import messages as m  # noqa: E402
from auditor_lite.ros.audio import audio_to_samples, samples_to_audio  # noqa: E402

pytestmark = pytest.mark.ros

DOMAIN = random.SystemRandom().randrange(1, 230)     # one random domain per run: parallel runs don't meet
H, W = 48, 64
FPS, PHASE, CHUNK, SR = 5, 0.013, 1600, 16000
T0 = 100                       # stream start [s]: a zero stamp would mean "unstamped audio"
EXPR = "the dog on the left"
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dds") / "cyclone-trace.log")


@pytest.fixture(scope="module")
def ctx(trace):
    config = dn.loopback_config(trace_file=trace)
    os.environ["CYCLONEDDS_URI"] = dn.loopback_config()   # also for any participant made without a Domain
    with dn.DdsContext(DOMAIN, config) as context:
        yield context
    left = [t.name for t in threading.enumerate() if t.name in ("dds-auditor-node", "streaming-auditor")]
    assert not left, f"threads still running: {left}"


def to_idl(msg, cls):
    """The cyclonedds.idl instance of a rosbags message (numpy arrays as lists)."""
    values = {}
    for name in cls.__annotations__:
        value = getattr(msg, name)
        if hasattr(value, "__msgtype__"):
            value = to_idl(value, dn.idl_type(value.__msgtype__))
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, list) and value and hasattr(value[0], "__msgtype__"):
            value = [to_idl(v, dn.idl_type(v.__msgtype__)) for v in value]
        values[name] = value
    return cls(**values)


def sample_messages():
    rng = np.random.default_rng(3)
    image = m.array_to_image(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), 12.25, "cam", step=24)
    audio, _info = samples_to_audio((0.1 * rng.standard_normal(333)).astype(np.float32), 3.5)
    masks = [np.eye(5, 7, dtype=bool), np.zeros((5, 7), bool)]
    return [image, m.new(m.STRING, data="the barking dog"), audio, _info,
            m.make_request(12.25, masks, ["a", "b"], expression="x", request_id="r7")]


# ---------------------------------------------------------------------------- naming, CDR, QoS
def test_ros2_names():
    assert dn.dds_topic_name("/auditor/requests") == "rt/auditor/requests"
    assert dn.dds_topic_name("camera/image_raw") == "rt/camera/image_raw"
    assert dn.dds_type_name("sensor_msgs/msg/Image") == "sensor_msgs::msg::dds_::Image_"
    assert dn.dds_type_name(m.MASK_REQUEST) == "auditor_lite_msgs::msg::dds_::MaskRequest_"
    assert dn.idl_type(m.AUDIT_RESULT).__idl_typename__ == "auditor_lite_msgs::msg::dds_::AuditResult_"
    with pytest.raises(ValueError):
        dn.dds_topic_name("/a//b")


@pytest.mark.parametrize("index", range(5))
def test_mirror_struct_cdr_equals_rosbags(index):
    """Cyclone's own typed serialisation of the mirror struct == rosbags' CDR: a typed DDS/ROS 2
    reader of the type name decodes what the node writes."""
    msg = sample_messages()[index]
    assert to_idl(msg, dn.idl_type(msg.__msgtype__)).serialize() == m.serialize(msg)


def test_qos_per_topic():
    from cyclonedds.qos import Policy

    frames, requests, expression = (dn.qos(m.TOPICS[k]) for k in ("frames", "requests", "expression"))
    assert frames[Policy.Reliability] == Policy.Reliability.BestEffort
    assert frames[Policy.History] == Policy.History.KeepLast(5)
    assert isinstance(requests[Policy.Reliability], Policy.Reliability.Reliable)
    assert expression[Policy.Durability] == Policy.Durability.TransientLocal
    assert dn.qos(m.TOPICS["audio"])[Policy.Reliability] == Policy.Reliability.BestEffort


def test_loopback_only(ctx, trace):
    """Cyclone's trace: only lo was selected, our address is 127.0.0.1, multicast is off."""
    time.sleep(0.05)
    text = open(trace, encoding="utf-8", errors="replace").read()
    assert "selected interfaces: lo " in text
    assert "ownip: udp/127.0.0.1" in text
    assert "Domain/General/AllowMulticast/#text: false" in text


def test_wire_bytes_and_typed_reader(ctx):
    """Raw CDR out == rosbags' CDR in, and Cyclone's typed reader decodes the same message."""
    from cyclonedds.sub import DataReader

    msgs = sample_messages()
    writer = dn.CdrWriter(ctx.participant, "/test/golden", m.MASK_REQUEST, m.TOPICS["requests"])
    raw = dn.CdrReader(ctx.participant, "/test/golden", m.MASK_REQUEST, m.TOPICS["requests"])
    typed = DataReader(ctx.participant, raw.topic, qos=raw.qos)
    try:
        assert raw.topic.name == "rt/test/golden"
        assert raw.topic.typename == "auditor_lite_msgs::msg::dds_::MaskRequest_"
        assert writer.wait_matched(2, 5.0)
        writer.write(msgs[4])
        got = raw.wait_take(1, 5.0)
        assert len(got) == 1 and m.serialize(got[0]) == m.serialize(msgs[4])
        decoded = typed.take(10)
        assert len(decoded) == 1 and decoded[0].serialize() == m.serialize(msgs[4])
        assert decoded[0].request_id == "r7" and decoded[0].masks[1].id == "b"
    finally:
        for e in (typed, raw.reader, writer.writer):
            dn._delete(e)


def test_best_effort_publisher_matched(ctx):
    """A BEST_EFFORT KEEP_LAST 5 camera publisher matches the node's frame reader; a RELIABLE
    reader would not (the reason the node's sensor readers are BEST_EFFORT)."""
    from cyclonedds.qos import Policy, Qos

    topic = "/test/camera"
    camera = dn.CdrWriter(ctx.participant, topic, m.IMAGE, m.TOPICS["frames"])
    node_reader = dn.CdrReader(ctx.participant, topic, m.IMAGE, m.TOPICS["frames"])
    strict = dn.CdrReader(ctx.participant, topic, m.IMAGE,
                          Qos(Policy.Reliability.Reliable(0), Policy.History.KeepLast(5)))
    try:
        assert node_reader.wait_matched(1, 5.0)
        time.sleep(0.2)
        assert strict.matched() == 0 and camera.matched() == 1
        camera.write(sample_messages()[0])
        assert len(node_reader.wait_take(1, 5.0)) == 1
    finally:
        for e in (strict.reader, node_reader.reader, camera.writer):
            dn._delete(e)


PUBLISHER = """
import sys, time, numpy as np
from auditor_lite.ros import dds_node as dn, messages as m
with dn.DdsContext(int(sys.argv[1]), dn.loopback_config()) as ctx:
    w = dn.CdrWriter(ctx.participant, "/test/xproc", m.IMAGE, m.TOPICS["frames"])
    ok = w.wait_matched(1, 10.0)
    for i in range(20):
        w.write(m.array_to_image(np.full((4, 6, 3), i, np.uint8), 1.0 + i))
        time.sleep(0.02)
    time.sleep(0.2)
print("matched" if ok else "unmatched")
"""


def test_two_processes_over_loopback(ctx):
    """A publisher in another process reaches us through UDP on 127.0.0.1 (unicast discovery)."""
    reader = dn.CdrReader(ctx.participant, "/test/xproc", m.IMAGE, m.TOPICS["frames"])
    try:
        proc = subprocess.run([sys.executable, "-c", PUBLISHER, str(DOMAIN)], capture_output=True, text=True,
                              timeout=30, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "matched" == proc.stdout.strip().splitlines()[-1]
        got = reader.take(64)
        assert got and all(g.width == 6 and g.height == 4 for g in got)
    finally:
        dn._delete(reader.reader)


# ---------------------------------------------------------------------------- the node end to end
def test_node_end_to_end_equals_offline(ctx):
    from auditor_lite.runtime import Auditor

    auditor = Auditor.load(intra_op_threads=1)
    rng = np.random.default_rng(7)
    stamps = [PHASE + i / FPS for i in range(64)]                  # frames up to 12.6 s
    frames = rng.integers(0, 256, (len(stamps), H, W, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(13 * SR)).astype(np.float32)
    masks = np.zeros((2, H, W), bool)
    masks[0, 10:30, 12:40] = True
    masks[1, 5:45, 30:60] = True

    p = ctx.participant
    topics = m.TOPICS
    expr_w = dn.CdrWriter(p, topics["expression"].name, m.STRING, topics["expression"])
    expr_w.write(m.new(m.STRING, data=EXPR))                      # before the node: TRANSIENT_LOCAL
    cam = dn.CdrWriter(p, topics["frames"].name, m.IMAGE, topics["frames"])
    mic = dn.CdrWriter(p, topics["audio"].name, m.AUDIO_STAMPED, topics["audio"])
    req = dn.CdrWriter(p, topics["requests"].name, m.MASK_REQUEST, topics["requests"])
    res = dn.CdrReader(p, topics["results"].name, m.AUDIT_RESULT, topics["results"])
    node = dn.AuditorNode(auditor, ctx)
    try:
        assert dn._poll(lambda: node.stats["expression_in"] == 1, 5.0), "TRANSIENT_LOCAL expression not received"
        assert cam.wait_matched(1, 5.0) and mic.wait_matched(1, 5.0) and req.wait_matched(1, 5.0)
        assert res.wait_matched(1, 5.0)
        decoded_audio, n_audio = [], 0
        events = [(t, "f", i) for i, t in enumerate(stamps)] + \
                 [(s / SR, "a", s) for s in range(0, len(audio), CHUNK)]
        for t, kind, i in sorted(events):
            if kind == "f":
                cam.write(m.array_to_image(frames[i], T0 + t))
                assert dn._poll(lambda: node.stats["frames_in"] == i + 1, 5.0)
            else:
                msg, info = samples_to_audio(audio[i:i + CHUNK], T0 + t)
                decoded_audio.append(audio_to_samples(msg, info).samples)
                mic.write(msg)
                n_audio += 1
                assert dn._poll(lambda: node.stats["audio_in"] == n_audio, 5.0)
        req.write(m.make_request(T0 + 11.3, masks, ["a", "b"], request_id="r1"))
        got = res.wait_take(1, TIMEOUT)
        assert len(got) == 1, node.stats
        result = got[0]
        assert result.request_id == "r1" and result.error_code == "", result.error
        assert result.second == T0 + 11 and [a.id for a in result.masks] == ["a", "b"]
        assert m.time_to_seconds(result.header.stamp) == pytest.approx(T0 + 11.3)
        # the golden check on the node's own output: the typed mirror gives the same bytes
        assert to_idl(result, dn.idl_type(m.AUDIT_RESULT)).serialize() == m.serialize(result)

        picks = [max(i for i, t in enumerate(stamps) if t <= k + 0.5) for k in range(2, 12)]
        window_audio = np.concatenate(decoded_audio)[2 * SR:12 * SR]
        expected = auditor.audit(frames[picks], window_audio, EXPR, masks, frame_index=9)
        assert [a.raw_iou for a in result.masks] == pytest.approx([e.raw_iou for e in expected], abs=1e-4)
        assert [a.mask_type for a in result.masks] == [e.mask_type for e in expected]
        stats = node.stats
        assert stats["errors"] == 0 and stats["results_out"] == 1, stats
        assert stats["stream"].get("dropped", 0) == 0 and stats["stream"]["accepted"] == 1
    finally:
        assert node.close(timeout=TIMEOUT)
        for w in (expr_w, cam, mic, req):
            dn._delete(w.writer)
        dn._delete(res.reader)


def test_node_answers_malformed_request(ctx):
    """A request whose only mask is not mono8 gets a bad_request result; the node keeps running."""
    from auditor_lite.runtime import Auditor

    p, topics = ctx.participant, m.TOPICS
    req = dn.CdrWriter(p, topics["requests"].name, m.MASK_REQUEST, topics["requests"])
    res = dn.CdrReader(p, topics["results"].name, m.AUDIT_RESULT, topics["results"])
    node = dn.AuditorNode(Auditor.load(intra_op_threads=1), ctx, expression=EXPR)
    try:
        assert req.wait_matched(1, 5.0) and res.wait_matched(1, 5.0)
        bad = m.make_request(3.2, [np.ones((4, 4), bool)], ["x"], request_id="bad")
        bad.masks[0].mask.encoding = "rgb8"
        req.write(bad)
        got = res.wait_take(1, TIMEOUT)
        assert len(got) == 1 and got[0].request_id == "bad"
        assert got[0].error_code == "bad_request" and "encoding" in got[0].masks[0].error
    finally:
        assert node.close(timeout=TIMEOUT)
        dn._delete(req.writer)
        dn._delete(res.reader)


def test_the_node_command_starts_on_loopback_and_stops_cleanly(tmp_path):
    from click.testing import CliRunner

    from auditor_lite.ros.cli import ros

    domain = int(np.random.default_rng().integers(100, 230))
    before = threading.active_count()
    result = CliRunner().invoke(ros, ["node", "--loopback", "--domain", str(domain), "--seconds", "0.5",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert f"auditor node on DDS domain {domain} (loopback)" in result.output and "/auditor/requests" in result.output
    assert "stopped: " in result.output and "requests_in 0" in result.output
    assert threading.active_count() <= before
    bad = CliRunner().invoke(ros, ["node", "--model", str(tmp_path / "nowhere"), "--loopback"])
    assert bad.exit_code == 1 and "--model is not a folder" in bad.output and "Traceback" not in bad.output
