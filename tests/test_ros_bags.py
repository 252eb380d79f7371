"""ROS 2 bags (issue 14, item 4) and the offline replay: write/read round trips in sqlite3 and mcap
(the custom definitions stored, so a fresh typestore reads the bag), `auditor-lite ros make-bag` +
`ros replay` equal to the offline audit of the streamed window, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytestmark = pytest.mark.ros

from click.testing import CliRunner  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from auditor_lite.ros import bags  # noqa: E402
from auditor_lite.ros import messages as m  # noqa: E402
from auditor_lite.ros.audio import samples_to_audio  # noqa: E402
from auditor_lite.ros.cli import ros  # noqa: E402
from auditor_lite.runtime.streaming import MaskOutcome, StreamResult  # noqa: E402

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "auditor_lite" / "assets" / "sample_clip"
T = m.TOPICS


def plain(value):
    """message_to_dict with NaN made comparable."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def sample_items():
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    audio, info = samples_to_audio((0.1 * rng.standard_normal(1600)).astype(np.float32), 3.0)
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:4, 2:6] = True
    masks[1, 2:5, 1:3] = True
    request = m.make_request(3.5, masks, ["a", "b"], expression="the dog", request_id="r1")
    result = m.result_to_msg(StreamResult(request_id="r1", stamp_s=3.5, second=3, expression="the dog",
                                          masks=(MaskOutcome("a", None, "mask 'a': bad"),), error_code=None))
    return [(T["expression"].name, 1, m.new(m.STRING, data="the dog")),
            (T["audio_info"].name, 2, info),
            (T["frames"].name, 3_000_000_000, m.array_to_image(frame, 3.0)),
            (T["audio"].name, 3_100_000_000, audio),
            (T["requests"].name, 3_600_000_000, request),
            (T["results"].name, 3_700_000_000, result)]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip(tmp_path, storage):
    items = sample_items()
    path = bags.write_bag(tmp_path / "bag", items, storage=storage)
    got = list(bags.read_bag(path))
    assert [(g.topic, g.log_time_ns) for g in got] == [(t, ns) for t, ns, _ in items]
    assert [plain(m.message_to_dict(g.msg)) for g in got] == [plain(m.message_to_dict(x)) for _, _, x in items]
    assert [g.msgtype for g in got] == [x.__msgtype__ for _, _, x in items]
    # a fresh typestore that knows none of the types reads the bag from its stored definitions
    with AnyReader([path], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
        fresh = [(c.topic, reader.deserialize(raw, c.msgtype)) for c, _t, raw in reader.messages()]
    assert [plain(m.message_to_dict(x)) for _t, x in fresh] == [plain(m.message_to_dict(x)) for _, _, x in items]
    assert qos[T["frames"].name].reliability.name == "BEST_EFFORT"
    assert qos[T["requests"].name].reliability.name == "RELIABLE"
    assert qos[T["expression"].name].durability.name == "TRANSIENT_LOCAL"


def test_failed_write_leaves_nothing(tmp_path):
    def broken():
        yield from sample_items()[:3]
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        bags.write_bag(tmp_path / "bag", broken())
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "taken").mkdir()
    with pytest.raises(bags.BagError, match="taken: already exists"):
        bags.write_bag(tmp_path / "taken", sample_items())


@pytest.fixture(scope="module")
def auditor():
    from auditor_lite.runtime import Auditor

    return Auditor.load(intra_op_threads=1)


@pytest.fixture(scope="module")
def made_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("bags") / "sample"
    res = CliRunner().invoke(ros, ["make-bag", "--clip", str(SAMPLE_CLIP), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_sample_bag_writes_the_bundled_clip_like_make_bag(made_bag, tmp_path):
    out = tmp_path / "sample"
    res = CliRunner().invoke(ros, ["sample-bag", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in made_bag.iterdir())
    assert "masks at frame" in res.output


WAIT = ["--audio-policy", "wait"]      # the clip's own window (the command's default, shift, ends it 0.5 s early)


def test_make_bag_and_replay_equal_offline(made_bag, auditor, tmp_path, monkeypatch):
    from auditor_lite.benchmark.variants import load_clip
    from auditor_lite.runtime import Auditor

    monkeypatch.setattr(Auditor, "load", classmethod(lambda cls, *a, **k: auditor))   # load once per module
    runner = CliRunner()
    out = tmp_path / "results.jsonl"
    res = runner.invoke(ros, ["replay", *WAIT, "--bag", str(made_bag), "--out", str(out)])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["error_code"] == "" and record["request_id"] == "key", record["error"]
    clip = load_clip(SAMPLE_CLIP)
    frames, audio, index = bags.stream_window(clip)
    expected = auditor.audit(frames, audio, clip.expression, clip.masks, frame_index=index)
    assert [a["id"] for a in record["masks"]] == [f"mask_{i:02d}" for i in range(len(clip.masks))]
    assert [a["raw_iou"] for a in record["masks"]] == pytest.approx([e.raw_iou for e in expected], abs=1e-4)
    assert [a["mask_type"] for a in record["masks"]] == [e.mask_type for e in expected]
    assert [a["action"] for a in record["masks"]] == [e.action for e in expected]
    assert record["latency_s"] == 0.0 and record["audio_missing_s"] == 0.0

    # deterministic; a results bag (mcap) carries the same results
    again = tmp_path / "again.jsonl"
    assert runner.invoke(ros, ["replay", *WAIT, "--bag", str(made_bag), "--out", str(again)]).exit_code == 0
    assert again.read_text() == out.read_text()
    res = runner.invoke(ros, ["replay", *WAIT, "--bag", str(made_bag), "--out", str(tmp_path / "res"),
                              "--storage", "mcap"])
    assert res.exit_code == 0, res.output
    got = list(bags.read_bag(tmp_path / "res"))
    assert [g.topic for g in got] == [T["results"].name] and got[0].msgtype == m.AUDIT_RESULT
    assert bags.result_record(got[0].msg, got[0].log_time_ns) == record


def one_line_error(args, *needles):
    res = CliRunner().invoke(ros, args)
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    # one "Error: ..." line (click's usage errors add the usage lines above it), no traceback
    lines = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_inputs(tmp_path, made_bag):
    one_line_error(["make-bag", "--clip", str(tmp_path / "nope"), "--out", str(tmp_path / "b")], "nope", "--clip")
    clip = tmp_path / "clip"
    clip.mkdir()
    one_line_error(["make-bag", "--clip", str(clip), "--out", str(tmp_path / "b")], "truth.json")
    one_line_error(["make-bag", "--clip", str(SAMPLE_CLIP), "--out", str(made_bag)], str(made_bag), "exists")
    one_line_error(["make-bag", "--clip", str(SAMPLE_CLIP), "--out", str(tmp_path / "x" / "b")], "does not exist")
    one_line_error(["replay", "--bag", str(tmp_path / "missing"), "--out", str(tmp_path / "r.jsonl")], "--bag")
    one_line_error(["replay", "--bag", str(clip), "--out", str(tmp_path / "r.jsonl")], str(clip), "metadata.yaml")
    one_line_error(["replay", "--bag", str(made_bag), "--out", str(tmp_path / "r.jsonl"), "--storage", "mcap"],
                   "--storage")
    one_line_error(["replay", "--bag", str(made_bag), "--out", str(made_bag)], "--out", "exists")
    one_line_error(["replay", "--bag", str(made_bag), "--out", str(tmp_path / "r"), "--storage", "zip"], "--storage")
    one_line_error(["replay", "--bag", str(made_bag), "--out", str(tmp_path / "r.jsonl"), "--model",
                    str(tmp_path / "nomodel")], "--model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]          # nothing half-written


def test_replay_is_reliable_over_a_long_stream(tmp_path, auditor):
    """25 requests over 35 s of stream, replayed far faster than real time: none dropped or too
    late (the replay waits for the worker before the buffer would drop a waiting window)."""
    rng = np.random.default_rng(9)
    h, w, fps, sr, t0 = 24, 32, 10, 16_000, 200
    pictures = rng.integers(0, 256, (35, h, w, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(35 * sr)).astype(np.float32)
    masks = np.zeros((2, h, w), bool)
    masks[0, 4:14, 5:20] = True
    masks[1, 10:22, 12:30] = True
    items = [(T["expression"].name, t0 * 10**9, m.new(m.STRING, data="the loud one"))]
    for i in range(35 * fps):
        t = t0 + i / fps
        items.append((T["frames"].name, round(t * 1e9) + 1, m.array_to_image(pictures[i // fps], t)))
        chunk, _info = samples_to_audio(audio[i * sr // fps:(i + 1) * sr // fps], t)
        items.append((T["audio"].name, round(t * 1e9) + 2, chunk))
        if i % fps == 5 and i // fps >= 9:                      # the frame at the grid time s + 0.5
            items.append((T["requests"].name, round(t * 1e9) + 3,
                          m.make_request(t, masks, ["a", "b"], request_id=f"s{i // fps}")))
    bag = bags.write_bag(tmp_path / "long.mcap", items)
    summary = bags.replay(bag, tmp_path / "out.jsonl", auditor, max_pending=4)
    assert len(summary.results) == 26 and summary.counts["errors"] == 0
    assert all(r.error_code == "" for r in summary.results), [r.error for r in summary.results]
    assert summary.stream_stats.get("dropped", 0) == 0
    assert [r.request_id for r in summary.results] == [f"s{s}" for s in range(9, 35)]
    decoded = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768
    for s in (9, 20, 33):
        expected = auditor.audit(pictures[s - 9:s + 1], decoded[(s - 9) * sr:(s + 1) * sr], "the loud one",
                                 masks, frame_index=9)
        got = summary.results[s - 9]
        assert [a.raw_iou for a in got.masks] == pytest.approx([e.raw_iou for e in expected], abs=1e-4)
