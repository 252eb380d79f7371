"""ROS 2 messages without ROS (issue 14, item 2): the interface package auditor_lite_msgs (its .msg
files parse with rosbags and register; package.xml and CMakeLists.txt are what colcon needs), and
the numpy <-> message conversions of auditor_lite.ros (frames, masks, audio_common audio, results),
through CDR and back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytestmark = pytest.mark.ros

from rosbags.typesys import get_types_from_msg  # noqa: E402

from auditor_lite.data.schema import ACTIONS, MASK_TYPES  # noqa: E402
from auditor_lite.ros import audio as ra  # noqa: E402
from auditor_lite.ros import messages as rm  # noqa: E402
from auditor_lite.runtime.results import AuditResult, build_results  # noqa: E402
from auditor_lite.runtime.streaming import MaskOutcome, StreamResult  # noqa: E402

MSG_DIR = rm.PACKAGE_DIR / "msg"
RNG = np.random.default_rng(14)
STREAM_ERROR_CODES = {"dropped", "closed", "bad_request", "no_expression", "expression", "too_late", "future",
                      "too_few_frames", "input", "internal"}      # StreamResult's docstring / docs/streaming.md
FIELD = re.compile(r"^(?P<type>[\w/]+(\[\d*\])?)\s+(?P<name>\w+)(\s*=\s*(?P<value>.*))?$")


def msg_lines(path):
    """(line number, type, name, is constant) of each definition line of a .msg file."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if body:
            match = FIELD.match(body)
            assert match, f"{path.name}:{n}: not a field or constant: {line!r}"
            yield n, match["type"], match["name"], match["value"] is not None


def referenced_packages():
    """Packages other than auditor_lite_msgs that the .msg files use."""
    return {t.split("/")[0] for path in MSG_DIR.glob("*.msg") for _, t, _, _ in msg_lines(path) if "/" in t}


# ---------------------------------------------------------------------------- the interface package
def test_every_msg_file_parses_registers_and_is_documented():
    files = sorted(MSG_DIR.glob("*.msg"))
    assert {p.stem for p in files} == set(rm.MSG_NAMES)
    for path in files:
        name = f"{rm.PACKAGE}/msg/{path.stem}"
        assert name in get_types_from_msg(path.read_text(encoding="utf-8"), name)
        assert name in rm.typestore().types
        assert rm.typestore().generate_msgdef(name)[0]          # every type it uses resolves
        documented = False
        for line in path.read_text(encoding="utf-8").splitlines():    # ROS style: comments above each field
            documented = bool(line.strip()) and (documented or line.lstrip().startswith("#"))
            if line.strip() and not line.lstrip().startswith("#"):
                assert documented, f"{path.name}: undocumented field {line!r}"
        for n, _, field, constant in msg_lines(path):           # rosidl's naming rules
            pattern = r"[A-Z][A-Z0-9_]*" if constant else r"(?!.*__)(?!.*_$)[a-z][a-z0-9_]*"
            assert re.fullmatch(pattern, field), f"{path.name}:{n}: {field!r} breaks rosidl's naming rules"
    for name, text in rm.AUDIO_COMMON_MSGS.items():
        assert name in rm.typestore().types and get_types_from_msg(text, name)


def test_error_codes_and_topics_match_the_streaming_auditor_and_the_issue():
    result_type = rm.typestore().types[rm.AUDIT_RESULT]
    codes = {getattr(result_type, c) for c in dir(result_type) if c.startswith("ERROR_")}
    assert codes == STREAM_ERROR_CODES
    assert result_type.NO_SECOND == rm.NO_SECOND
    for key, topic in rm.TOPICS.items():
        assert topic.type in rm.typestore().types and topic.name.startswith("/")
    for key in ("frames", "audio", "audio_unstamped"):
        assert (rm.TOPICS[key].reliability, rm.TOPICS[key].depth) == ("best_effort", 5)
    assert rm.TOPICS["requests"].reliability == rm.TOPICS["results"].reliability == "reliable"
    assert (rm.TOPICS["expression"].durability, rm.TOPICS["expression"].type) == ("transient_local", rm.STRING)


def test_package_xml_is_a_format_3_interface_package():
    root = ET.parse(rm.PACKAGE_DIR / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == rm.PACKAGE
    assert root.find("maintainer") is not None and root.findtext("license") and root.findtext("version")

    def deps(*tags):
        return {e.text.strip() for tag in tags for e in root.findall(tag)}

    assert "ament_cmake" in deps("buildtool_depend")
    assert "rosidl_default_generators" in deps("buildtool_depend", "build_depend")
    assert "rosidl_default_runtime" in deps("exec_depend", "depend")
    needed = {"std_msgs", "sensor_msgs", "builtin_interfaces"}
    assert referenced_packages() <= needed <= deps("depend") | (deps("build_depend") & deps("exec_depend"))
    assert "rosidl_interface_packages" in deps("member_of_group")
    assert root.findtext("export/build_type") == "ament_cmake"


def test_cmake_generates_every_msg_file():
    text = (rm.PACKAGE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(rf"^project\(\s*{rm.PACKAGE}\s*\)", text, re.M)
    call = re.search(r"rosidl_generate_interfaces\(\s*\$\{PROJECT_NAME\}(?P<args>[^)]*)\)", text)
    assert call, "CMakeLists.txt does not call rosidl_generate_interfaces(${PROJECT_NAME} ...)"
    args = call["args"].split("DEPENDENCIES")
    listed = re.findall(r'"?(msg/\w+\.msg)"?', args[0])
    assert sorted(listed) == sorted(f"msg/{p.name}" for p in MSG_DIR.glob("*.msg"))
    assert len(args) == 2 and referenced_packages() <= set(args[1].split())
    for package in ("ament_cmake", "rosidl_default_generators", *referenced_packages()):
        assert re.search(rf"find_package\(\s*{package}\s+REQUIRED\s*\)", text), package
    assert "ament_package()" in text


def test_the_modules_need_neither_torch_nor_the_runtime():
    code = ("import sys, json; import auditor_lite.ros.messages, auditor_lite.ros.audio; "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "onnxruntime", "rclpy")]
    assert not [m for m in loaded if m.startswith("auditor_lite.runtime")]


# ---------------------------------------------------------------------------- frames and masks
def cdr_round_trip(msg):
    data = rm.serialize(msg)
    back = rm.deserialize(data, msg.__msgtype__)
    assert rm.serialize(back) == data
    return back


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
@pytest.mark.parametrize("pad", [0, 5])
def test_images_round_trip(encoding, pad):
    h, w = 6, 7
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    source = rgb[..., 0] if encoding == "mono8" else rgb
    row = w * (1 if encoding == "mono8" else 3)
    msg = rm.array_to_image(source, stamp=12.5, frame_id="cam", encoding=encoding, step=row + pad)
    assert (msg.encoding, msg.height, msg.width, msg.step) == (encoding, h, w, row + pad)
    assert msg.data.size == (row + pad) * h
    first = {"rgb8": rgb[0, 0], "bgr8": rgb[0, 0, ::-1], "mono8": rgb[0, 0, :1]}[encoding]
    assert msg.data[:first.size].tolist() == first.tolist()         # the encoding's byte order
    if pad:
        msg.data.reshape(h, row + pad)[:, row:] = 77         # padding bytes must be ignored
    back = cdr_round_trip(msg)
    assert rm.time_to_seconds(back.header.stamp) == 12.5 and back.header.frame_id == "cam"
    expected = np.repeat(source[..., None], 3, axis=2) if encoding == "mono8" else rgb
    out = rm.image_to_array(back)
    assert out.dtype == np.uint8 and out.shape == (h, w, 3) and np.array_equal(out, expected)


def test_bgr8_bytes_are_reordered_to_rgb():
    msg = rm.new(rm.IMAGE, header=rm.header(), height=1, width=2, encoding="bgr8", is_bigendian=0, step=6,
                 data=np.array([1, 2, 3, 4, 5, 6], np.uint8))
    assert rm.image_to_array(msg).tolist() == [[[3, 2, 1], [6, 5, 4]]]


@pytest.mark.parametrize("change, field", [
    (dict(encoding="rgba8"), "image.encoding"), (dict(encoding="16UC1"), "image.encoding"),
    (dict(step=20), "image.step"), (dict(data=np.zeros(10, np.uint8)), "image.data"),
    (dict(height=0, data=np.zeros(0, np.uint8)), "image.height/width"),
    (dict(width=10**6), "image.height/width"),
])
def test_malformed_images_are_refused_naming_the_field(change, field):
    msg = rm.array_to_image(np.zeros((4, 8, 3), np.uint8))
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}:"):
        rm.image_to_array(msg)


def test_masks_are_mono8_0_255_and_checked():
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:6] = True
    msg = rm.mask_to_image(mask, stamp=3.0)
    assert msg.encoding == "mono8" and set(np.unique(msg.data).tolist()) == {0, 255}
    assert np.array_equal(rm.image_to_mask(cdr_round_trip(msg), (6, 8)), mask)
    assert np.array_equal(rm.image_to_mask(rm.mask_to_image(mask.astype(np.uint8) * 255)), mask)
    with pytest.raises(ValueError, match=r"^mask: expected a binary mask"):
        rm.mask_to_image(mask * np.uint8(7) + 1)
    grey = rm.array_to_image(np.where(mask, 128, 0).astype(np.uint8))
    with pytest.raises(ValueError, match=r"^mask\.data: 12 pixels are neither 0 nor 255 \(e\.g\. \[128\]\)"):
        rm.image_to_mask(grey)
    with pytest.raises(ValueError, match=r"^mask\.height/width: the mask is 8x6 but its frame is 9x6"):
        rm.image_to_mask(msg, (6, 9, 3))
    with pytest.raises(ValueError, match=r"^mask\.encoding: 'rgb8' is not supported \(use mono8\)"):
        rm.image_to_mask(rm.array_to_image(np.zeros((6, 8, 3), np.uint8)))


def bad_request():
    """A request with one good mask and one bad mask of each kind, through CDR."""
    good = np.zeros((6, 8), bool)
    good[2:5, 1:4] = True
    msg = rm.make_request(rm.seconds_to_time(100.25), [good, good, good, good, good, ~good],
                          ids=["a", "b", "c", "d", "", "f"], expression="the dog", request_id="r1", frame_id="cam")
    msg.masks[1].mask.data[3] = 128
    msg.masks[2].mask = rm.mask_to_image(np.zeros((6, 9), bool))
    msg.masks[3].mask = rm.array_to_image(np.zeros((6, 8, 3), np.uint8))
    msg.masks[4].mask.header.stamp = rm.seconds_to_time(99.0)
    return cdr_round_trip(msg), good


def test_requests_decode_mask_by_mask():
    msg, good = bad_request()
    decoded = rm.decode_request(msg, frame_shape=(6, 8))
    assert (decoded.stamp_s, decoded.request_id, decoded.expression) == (100.25, "r1", "the dog")
    assert decoded.frame_id == "cam"
    assert (decoded.stamp.sec, decoded.stamp.nanosec) == (100, 250_000_000)
    assert decoded.ids == ["a", "b", "c", "d", "4", "f"]
    assert [m is None for m in decoded.masks] == [False, True, True, True, True, False]
    assert np.array_equal(decoded.masks[0], good) and np.array_equal(decoded.masks[5], ~good)
    assert decoded.errors[0] is None and decoded.errors[5] is None
    for i, field in [(1, "data"), (2, "height/width"), (3, "encoding"), (4, "header.stamp")]:
        assert decoded.errors[i].startswith(f"mask '{decoded.ids[i]}': masks[{i}].mask.{field}: "), decoded.errors[i]
    assert decoded.usable()[0] == ["a", "f"]
    empty = rm.decode_request(cdr_round_trip(rm.make_request(1.0, [])))
    assert empty.masks == [] and empty.expression is None and empty.request_id == ""


# ---------------------------------------------------------------------------- results
def audits(n, interval=True):
    calibrate = ((lambda raw, types: (raw, raw - 0.125, np.minimum(raw + 0.125, 1.0))) if interval
                 else (lambda raw, types: (raw, None, None)))
    return build_results(RNG.uniform(0, 1, n), RNG.normal(size=(n, len(MASK_TYPES))),
                         RNG.normal(size=(n, len(ACTIONS))), MASK_TYPES, ACTIONS, calibrate, empty={1})


def stream_result(outcomes, **fields):
    base = dict(request_id="r1", stamp_s=100.25, second=100, expression="the dog", masks=tuple(outcomes),
                key_frame_stamp_s=100.46875, latency_s=0.0125, frame_wait_s=0.25, audio_wait_s=0.5,
                total_s=0.7625, audio_missing_s=0.0625, context_reused=True)
    return StreamResult(**{**base, **fields})


def test_merge_puts_undecodable_masks_back_in_place():
    msg, _ = bad_request()
    decoded = rm.decode_request(msg, frame_shape=(6, 8))
    first, last = audits(2)
    streamed = stream_result([MaskOutcome("a", first), MaskOutcome("f", None, "mask 'f' (masks[1]): too small")])
    merged = decoded.merge(streamed)
    assert [m.mask_id for m in merged.masks] == decoded.ids
    assert merged.masks[0].result.index == 0 and merged.masks[5].error == "mask 'f' (masks[5]): too small"
    assert [m.error for m in merged.masks[1:5]] == decoded.errors[1:5]
    nothing = rm.decode_request(msg, frame_shape=(60, 80))          # every mask the wrong size
    refused = nothing.merge(stream_result([], error_code="bad_request", error="masks: no masks given"))
    assert refused.error == "masks: none of the 6 masks is usable" and len(refused.masks) == 6
    assert all("height/width" in m.error or "masks[" in m.error for m in refused.masks)
    late = stream_result([], error_code="too_late", error="too late")
    assert decoded.merge(late) is late


@pytest.mark.parametrize("interval", [True, False])
def test_results_round_trip_through_cdr(interval):
    first, second, third = audits(3, interval)
    result = stream_result([MaskOutcome("a", first), MaskOutcome("b", None, "mask 'b' (masks[1]): bad"),
                            MaskOutcome("c", AuditResult(**{**second.to_dict(), "index": 2})),
                            MaskOutcome("d", AuditResult(**{**third.to_dict(), "index": 3}))])
    request_stamp = rm.new("builtin_interfaces/msg/Time", sec=100, nanosec=250_000_001)     # copied exactly
    msg = rm.result_to_msg(result, stamp=request_stamp, frame_id="cam")
    back = cdr_round_trip(msg)
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (100, 250_000_001, "cam")
    assert list(back.masks[0].type_names) == list(first.type_probs) and back.masks[1].error.endswith("bad")
    assert np.isnan(back.masks[0].iou_low) != interval
    restored = rm.result_from_msg(back)
    assert restored == stream_result(restored.masks, stamp_s=restored.stamp_s)     # every other field equal
    assert restored.stamp_s == pytest.approx(100.250000001, abs=1e-9)
    assert restored.masks == result.masks
    nan_free = json.loads(json.dumps(rm.message_to_dict(back)).replace("NaN", "null"))
    assert nan_free["masks"][2]["explanation"] == second.explanation


def test_error_results_round_trip():
    for result in [stream_result([], error_code="too_late", error="too late: ...", key_frame_stamp_s=None,
                                 context_reused=False),
                   stream_result([], request_id="7", second=None, expression=None, error_code="bad_request",
                                 error="stamp_s: expected finite seconds", key_frame_stamp_s=None)]:
        msg = cdr_round_trip(rm.result_to_msg(result))
        assert msg.second == (rm.NO_SECOND if result.second is None else result.second)
        assert rm.result_from_msg(msg) == result
    unusable = stream_result([], stamp_s=float("nan"), second=None, error_code="bad_request", error="stamp_s: ...")
    assert rm._is_zero(cdr_round_trip(rm.result_to_msg(unusable)).header.stamp)      # still sent, stamp zero


def test_stamps_convert_to_the_nanosecond():
    for t in (0.0, 1.5, 1700000000.123456789, 99.9999999999):
        stamp = rm.seconds_to_time(t)
        assert 0 <= stamp.nanosec < 10**9 and rm.time_to_seconds(stamp) == pytest.approx(t, abs=1e-6)
    assert (rm.seconds_to_time(99.9999999999).sec, rm.seconds_to_time(99.9999999999).nanosec) == (100, 0)
    for bad in (float("nan"), 2.0**40):
        with pytest.raises(ValueError, match="^stamp:"):
            rm.seconds_to_time(bad)


# ---------------------------------------------------------------------------- audio
WAVE = (0.5 * np.sin(np.arange(1600) * 0.05)).astype(np.float32)


@pytest.mark.parametrize("sample_format, tolerance", [("S16LE", 1 / 32767), ("F32LE", 0.0), ("S32BE", 1e-9)])
def test_stamped_audio_to_samples(sample_format, tolerance):
    msg, info = ra.samples_to_audio(WAVE, stamp=41.125, sample_format=sample_format)
    assert msg.__msgtype__ == rm.AUDIO_STAMPED and info.sample_format == sample_format
    chunk = ra.audio_to_samples(cdr_round_trip(msg), cdr_round_trip(info))
    assert chunk.stamp_s == 41.125 and not chunk.received
    assert chunk.samples.dtype == np.float32 and chunk.samples.shape == WAVE.shape
    assert np.max(np.abs(chunk.samples - WAVE)) <= tolerance


@pytest.mark.parametrize("sample_format", ["S16LE", "F32LE"])
def test_unstamped_audio_gets_its_receive_time(sample_format):
    msg, info = ra.samples_to_audio(WAVE, sample_format=sample_format)
    assert msg.__msgtype__ == rm.AUDIO_DATA
    chunk = ra.audio_to_samples(cdr_round_trip(msg), info, receive_time_s=50.0)
    assert chunk.received and chunk.stamp_s == pytest.approx(50.0 - 0.1)
    assert np.allclose(chunk.samples, WAVE, atol=1 / 32767)
    zero, _ = ra.samples_to_audio(WAVE, stamp=0.0, sample_format=sample_format)      # zero stamp: unset
    assert ra.audio_to_samples(zero, info, receive_time_s=50.0).received


def test_stereo_is_mixed_down():
    msg, info = ra.samples_to_audio(WAVE, stamp=2.0, channels=2)
    pcm = msg.audio.data.view("<i2").reshape(-1, 2)
    pcm[:, 1] = 0                                    # right channel silent: the mix is half the left
    chunk = ra.audio_to_samples(msg, info)
    assert info.channels == 2 and info.bitrate == 16000 * 16 * 2
    assert np.allclose(chunk.samples, WAVE / 2, atol=1 / 32767)


@pytest.mark.parametrize("sample_format, raw", [
    ("U8", np.array([0, 64, 128, 192], np.uint8).tobytes()),
    ("S8", np.array([-128, -64, 0, 64], np.int8).tobytes()),
    ("S16BE", np.array([-32768, -16384, 0, 16384], ">i2").tobytes()),
    ("S24LE", b"".join(int(v).to_bytes(3, "little", signed=True) for v in (-2**23, -2**22, 0, 2**22))),
    ("S24BE", b"".join(int(v).to_bytes(3, "big", signed=True) for v in (-2**23, -2**22, 0, 2**22))),
    ("S24_32LE", np.array([-2**23, -2**22, 0, 2**22], "<i4").tobytes()),
    ("F64BE", np.array([-1, -0.5, 0, 0.5], ">f8").tobytes()),
])
def test_sample_formats_decode(sample_format, raw):
    msg = rm.new(rm.AUDIO_DATA, data=np.frombuffer(raw, np.uint8).copy())
    info = rm.new(rm.AUDIO_INFO, channels=1, sample_rate=16000, sample_format=sample_format, bitrate=0,
                  coding_format="wave")
    assert ra.audio_to_samples(msg, info, receive_time_s=1.0).samples.tolist() == [-1.0, -0.5, 0.0, 0.5]


@pytest.mark.parametrize("change, field", [
    (dict(sample_rate=44100), "sample_rate"), (dict(coding_format="mp3"), "coding_format"),
    (dict(sample_format="A-LAW"), "sample_format"), (dict(channels=0), "channels"),
    (dict(channels=3), "audio.data"),
])
def test_audio_that_is_not_16k_raw_pcm_is_refused_naming_the_field(change, field):
    msg, info = ra.samples_to_audio(WAVE[:1000], stamp=1.0)
    for key, value in change.items():
        setattr(info, key, value)
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}:"):
        ra.audio_to_samples(msg, info)
    nan, info = ra.samples_to_audio(np.zeros(4), stamp=1.0, sample_format="F32LE")
    nan.audio.data.view("<f4")[1] = np.nan
    with pytest.raises(ValueError, match=r"^audio\.data: the F32LE samples contain NaN"):
        ra.audio_to_samples(nan, info)


# ---------------------------------------------------------------------------- end to end
def test_messages_drive_the_streaming_auditor_like_the_offline_audit():
    """Frames (bgr8), audio (S16LE) and a request with a bad mask, each through CDR, into the
    StreamingAuditor; the result message carries the offline audit of the same window."""
    from auditor_lite.runtime import Auditor
    from auditor_lite.runtime.streaming import StreamingAuditor

    h, w, expression = 48, 64, "the dog on the left"
    frames = RNG.integers(0, 256, (12, h, w, 3), dtype=np.uint8)                # frame k stamped k + 0.25
    wave = (0.1 * RNG.standard_normal(12 * 16000)).clip(-1, 1).astype(np.float32)
    masks = np.zeros((2, h, w), bool)
    masks[0, 10:30, 12:40] = masks[1, 5:45, 30:60] = True
    auditor = Auditor.load(intra_op_threads=1)
    with StreamingAuditor(auditor, audio_wait_s=0.0) as stream:
        for k, frame in enumerate(frames):
            image = cdr_round_trip(rm.array_to_image(frame, stamp=k + 0.25, encoding="bgr8"))
            stream.push_frame(rm.time_to_seconds(image.header.stamp), rm.image_to_array(image))
        heard = []
        for start in range(8000, wave.size, 1600):        # from 0.5 s (a zero stamp would mean "unset")
            msg, info = ra.samples_to_audio(wave[start:start + 1600], stamp=start / 16000)
            chunk = ra.audio_to_samples(cdr_round_trip(msg), info)
            stream.push_audio(chunk.stamp_s, chunk.samples)
            heard.append(chunk.samples)
        request = rm.make_request(10.3, [masks[0], masks[0][:, :-1], masks[1]], ids=["a", "b", "c"],
                                  expression=expression, request_id="req-1", frame_id="cam")
        decoded = rm.decode_request(cdr_round_trip(request), frame_shape=(h, w))
        ids, usable = decoded.usable()
        stream.submit(decoded.stamp_s, usable, ids, request_id=decoded.request_id, expression=decoded.expression)
        result = decoded.merge(stream.get_result(timeout=30))
    msg = cdr_round_trip(rm.result_to_msg(result, stamp=decoded.stamp, frame_id=decoded.frame_id))
    assert (msg.request_id, msg.second, msg.error_code, msg.header.frame_id) == ("req-1", 10, "", "cam"), msg.error
    assert [m.id for m in msg.masks] == ["a", "b", "c"] and msg.masks[1].error.startswith("mask 'b': masks[1].mask.")
    audio = np.concatenate(heard)[8000:8000 + 10 * 16000]       # [1 s, 11 s)
    expected = auditor.audit(frames[1:11], audio, expression, masks, frame_index=9)
    assert [msg.masks[0].raw_iou, msg.masks[2].raw_iou] == [e.raw_iou for e in expected]
    assert [m.result.index for m in rm.result_from_msg(msg).masks if m.result] == [0, 2]
