"""The predictions JSONL (read / write / validate) and the MQ-Auditor text reader."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from auditor_lite.data.schema import DataError
from auditor_lite.eval.cli import convert_mqauditor
from auditor_lite.eval.mqauditor import convert_mqauditor_outputs, parse_mqauditor_text
from auditor_lite.eval.predictions import (
    Prediction, method_name, read_prediction_lines, read_predictions, write_predictions,
)

GOOD = {"uid": "v1_cello_0", "frame": 3, "cand_id": "cutout-0", "iou": 0.71,
        "mask_type": "cutout", "action": "minor revision"}


def write_lines(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


def test_round_trip_keeps_every_field(tmp_path):
    full = Prediction(uid="u", frame=0, cand_id="perfect-0", iou=0.9, mask_type="perfect",
                      action="accept", type_probs={"perfect": 0.8, "cutout": 0.2},
                      action_probs={"accept": 1.0}, iou_low=0.8, iou_high=1.0, method="m",
                      mode="video", split="test_u")
    path = tmp_path / "sub" / "p.jsonl"
    assert write_predictions(path, [full, dict(GOOD)]) == 2
    preds = read_predictions(path)
    assert preds[("u", 0, "perfect-0")] == full
    assert preds[("v1_cello_0", 3, "cutout-0")].iou == 0.71
    # optional fields are only written when set
    assert "type_probs" not in path.read_text().splitlines()[1]


@pytest.mark.parametrize("change, field, message", [
    ({"iou": 1.2}, "iou", r"\[0, 1\]"),
    ({"iou": "0.5"}, "iou", "number"),
    ({"mask_type": "cut"}, "mask_type", "unknown value 'cut'"),
    ({"action": "minor"}, "action", "unknown value"),
    ({"frame": True}, "frame", "integer"),
    ({"frame": -1}, "frame", "integer"),
    ({"uid": ""}, "uid", "non-empty"),
    ({"mask-type": "cutout"}, "mask-type", "unknown field"),
    ({"type_probs": {"cutout": 0.5}}, "type_probs", "sum to 0.5"),
    ({"type_probs": {"cutout": 0.5, "blob": 0.5}}, "type_probs", "unknown class 'blob'"),
    ({"iou_low": 0.2}, "iou_high", "together"),
    ({"iou_low": 0.8, "iou_high": 0.6}, "iou_low", "above"),
    ({"mode": "train"}, "mode", "unknown value"),
])
def test_invalid_lines_name_file_line_and_field(tmp_path, change, field, message):
    path = write_lines(tmp_path / "p.jsonl", [GOOD, {**GOOD, "cand_id": "erode-0", **change}])
    with pytest.raises(DataError, match=message) as info:
        read_predictions(path)
    assert info.value.field_name == field
    assert str(path) in str(info.value) and "line 2" in str(info.value)


def test_missing_field_bad_json_and_missing_file(tmp_path):
    no_action = {k: v for k, v in GOOD.items() if k != "action"}
    with pytest.raises(DataError, match="missing required field.*action"):
        read_predictions(write_lines(tmp_path / "a.jsonl", [no_action]))
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_predictions(write_lines(tmp_path / "b.jsonl", [GOOD, "{oops"]))
    with pytest.raises(DataError, match="not found"):
        read_predictions(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="prediction 0") as info:
        write_predictions(tmp_path / "c.jsonl", [{**GOOD, "iou": float("nan")}])
    assert info.value.field_name == "iou"


def test_null_fields_mean_unparsed_and_blank_lines_are_skipped(tmp_path):
    path = write_lines(tmp_path / "p.jsonl",
                       [{**GOOD, "iou": None, "mask_type": None, "action": None}, ""])
    (pred,) = read_predictions(path).values()
    assert (pred.iou, pred.mask_type, pred.action) == (None, None, None)


def test_duplicates_are_errors_unless_modes_differ(tmp_path):
    with pytest.raises(DataError, match="line 2: duplicate prediction.*line 1"):
        read_predictions(write_lines(tmp_path / "a.jsonl", [GOOD, GOOD]))
    path = write_lines(tmp_path / "b.jsonl", [{**GOOD, "mode": "image", "iou": 0.1},
                                              {**GOOD, "mode": "video", "iou": 0.2},
                                              {**GOOD, "cand_id": "erode-0"}])
    assert read_predictions(path, mode="image")[("v1_cello_0", 3, "cutout-0")].iou == 0.1
    video = read_predictions(path, mode="video")
    assert video[("v1_cello_0", 3, "cutout-0")].iou == 0.2 and len(video) == 2  # + mode-less line
    with pytest.raises(DataError, match="different modes"):
        read_predictions(path)
    split_path = write_lines(tmp_path / "c.jsonl", [{**GOOD, "split": "test_u"}])
    assert read_predictions(split_path, split="test_s") == {}


def test_method_name_from_lines_or_stem(tmp_path):
    plain = write_lines(tmp_path / "geometry.jsonl", [GOOD])
    assert method_name(read_prediction_lines(plain), plain) == "geometry"
    named = write_lines(tmp_path / "x.jsonl", [{**GOOD, "method": "lite"}])
    assert method_name(read_prediction_lines(named), named) == "lite"
    mixed = write_lines(tmp_path / "y.jsonl", [{**GOOD, "method": "a"},
                                               {**GOOD, "cand_id": "e-0", "method": "b"}])
    with pytest.raises(DataError, match="mixes methods a, b"):
        method_name(read_prediction_lines(mixed), mixed)


# ----------------------------------------------------------------------------- MQ-Auditor text

def test_parse_upstream_answer():
    text = ("<audit> <iou> 0.7312 </iou> <mask_type> cutout </mask_type> "
            "<action> minor revision </action> </audit>")
    parsed = parse_mqauditor_text(text)
    assert (parsed.iou, parsed.mask_type, parsed.action) == (0.7312, "cutout", "minor revision")
    assert parsed.failures == []


def test_parse_without_wrapper_and_with_free_text():
    parsed = parse_mqauditor_text("Sure. <IoU>.5</IoU> <mask_type>Full negative mask</mask_type>"
                                  "<action>I would Reject it</action>")
    assert (parsed.iou, parsed.mask_type, parsed.action) == (0.5, "full_neg", "reject")
    assert parse_mqauditor_text("<mask_type> GT </mask_type>").mask_type == "perfect"
    assert parse_mqauditor_text("<action>Major Revision</action>").action == "major revision"


def test_first_iou_in_range_wins_across_values_and_tags():
    assert parse_mqauditor_text("<iou> 1.3 0.4 </iou> <iou> 0.9 </iou>").iou == 0.4
    assert parse_mqauditor_text("<iou> 73 </iou> <iou> 0.2 </iou>").iou == 0.2
    assert parse_mqauditor_text("<iou> 1e-1 </iou>").iou == pytest.approx(0.1)
    assert parse_mqauditor_text("<iou> 1 </iou>").iou == 1.0
    out_of_range = parse_mqauditor_text("<iou> 1.3 </iou><mask_type>merge</mask_type>"
                                        "<action>reject</action>")
    assert out_of_range.iou is None and out_of_range.failures == ["iou"]
    assert "1.3" in out_of_range.reasons["iou"]


def test_only_the_first_audit_block_is_read_and_truncated_tags_are_closed():
    text = "<audit><iou>0.6</iou><mask_type>erode</mask_type></audit><action>accept</action>"
    parsed = parse_mqauditor_text(text)
    assert parsed.iou == 0.6 and parsed.action is None and parsed.failures == ["action"]
    truncated = parse_mqauditor_text("<audit> <mask_type> dilate </mask_type> <iou> 0.81")
    assert (truncated.iou, truncated.mask_type) == (0.81, "dilate")


def test_unparsable_text_lists_every_failure():
    parsed = parse_mqauditor_text("<iou_token> <mask_type> blob </mask_type> <action></action>")
    assert (parsed.iou, parsed.mask_type, parsed.action) == (None, None, None)
    assert parsed.failures == ["iou", "mask_type", "action"]
    assert parsed.reasons["iou"] == "no <iou> tag"
    assert "blob" in parsed.reasons["mask_type"]
    assert parse_mqauditor_text("").failures == ["iou", "mask_type", "action"]
    with pytest.raises(TypeError):
        parse_mqauditor_text(None)


ANSWERS = [
    {"uid": "u1", "frame": 0, "cand_id": "perfect-0",
     "text": "<audit><iou>0.95</iou><mask_type>perfect</mask_type><action>accept</action></audit>"},
    {"uid": "u1", "frame": 0, "cand_id": "cutout-0", "mode": "image",
     "text": "<audit><iou>2.0</iou><mask_type>cutout</mask_type><action>minor</action></audit>"},
    {"uid": "u1", "frame": 0, "cand_id": "null-0", "text": "I cannot tell."},
]


def test_convert_counts_failures_and_writes_readable_predictions(tmp_path):
    src = write_lines(tmp_path / "answers.jsonl", ANSWERS)
    report = convert_mqauditor_outputs(src, tmp_path / "pred.jsonl")
    assert report.n_lines == 3 and report.n_fully_parsed == 1
    assert dict(report.failures) == {"iou": 2, "mask_type": 1, "action": 1}
    assert "iou 2, mask_type 1, action 1" in report.format()
    preds = read_predictions(tmp_path / "pred.jsonl", mode="image")
    assert preds[("u1", 0, "perfect-0")].iou == 0.95
    assert preds[("u1", 0, "cutout-0")].iou is None
    assert preds[("u1", 0, "cutout-0")].mask_type == "cutout"
    assert preds[("u1", 0, "cutout-0")].mode == "image"
    assert preds[("u1", 0, "null-0")].method == "mq-auditor"


def test_convert_rejects_malformed_input_lines(tmp_path):
    bad = write_lines(tmp_path / "bad.jsonl", [ANSWERS[0], {**ANSWERS[0], "frame": "3"}])
    with pytest.raises(DataError, match="line 2") as info:
        convert_mqauditor_outputs(bad, tmp_path / "out.jsonl")
    assert info.value.field_name == "frame"
    no_text = write_lines(tmp_path / "nt.jsonl", [{k: v for k, v in ANSWERS[0].items()
                                                  if k != "text"}])
    with pytest.raises(DataError, match="line 1") as info:
        convert_mqauditor_outputs(no_text, tmp_path / "out.jsonl")
    assert info.value.field_name == "text"


def test_convert_command(tmp_path):
    src = write_lines(tmp_path / "answers.jsonl", ANSWERS)
    runner = CliRunner()
    ok = runner.invoke(convert_mqauditor, [str(src), str(tmp_path / "p.jsonl"), "--method", "mq"])
    assert ok.exit_code == 0, ok.output
    assert "3 answers, 1 fully parsed" in ok.output
    assert read_predictions(tmp_path / "p.jsonl", mode="image")[("u1", 0, "null-0")].method == "mq"
    bad = write_lines(tmp_path / "bad.jsonl", ["[1, 2]"])
    failed = runner.invoke(convert_mqauditor, [str(bad), str(tmp_path / "q.jsonl")])
    assert failed.exit_code == 1 and "line 1: expected a JSON object" in failed.output


def test_read_uid_subset(tmp_path):
    import click

    from auditor_lite.eval.cli import read_uid_subset

    plain = tmp_path / "uids.txt"
    plain.write_text("a_x_0\n\nb_y_1\n")
    assert read_uid_subset(plain) == {"a_x_0", "b_y_1"}
    cues = tmp_path / "cues.csv"
    cues.write_text("uid,split,cue,needs_audio\na_x_0,test_s,sound,1\nb_y_1,test_s,position,0\n")
    assert read_uid_subset(cues, ("needs_audio=1",)) == {"a_x_0"}
    assert read_uid_subset(cues) == {"a_x_0", "b_y_1"}
    with pytest.raises(click.BadParameter, match="COLUMN=VALUE"):
        read_uid_subset(cues, ("loud=1",))
