"""The protocol on hand-built records (settings, missing predictions, video level), the report
writers and the ``auditor-lite eval`` command on a hand-written benchmark directory."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor_lite.data.schema import Candidate, Clip, DataWarning, ExpressionRecord
from auditor_lite.eval.cli import eval_cmd
from auditor_lite.eval.metrics import MISSING
from auditor_lite.eval.predictions import Prediction, write_predictions
from auditor_lite.eval.protocol import SETTINGS, evaluate_method, ground_truth_table
from auditor_lite.eval.report import format_tables, write_report

approx = pytest.approx
CLIP = Clip("vid1", Path("media/vid1/frames"), Path("media/vid1/audio.wav"))


def cand(cand_id, frame, mask_type, rank, iou, action):
    return Candidate(cand_id, frame, Path(f"{cand_id}.png"), mask_type, rank, iou, action)


def record(uid, mode, kfid, candidates):
    return ExpressionRecord(uid=uid, vid="vid1", split="test_s", mode=mode, exp="the cello",
                            kfid=kfid, fid=0, clip=CLIP, candidates=tuple(candidates))


IMAGE_RECORDS = [
    record("A", "image", 3, [cand("perfect-0", 3, "perfect", -1, 1.0, "accept"),
                             cand("cutout-0", 3, "cutout", 1, 0.8, "minor revision"),
                             cand("cutout-1", 3, "cutout", 2, 0.5, "major revision"),
                             cand("full_neg-0", 3, "full_neg", -1, 0.0, "reject")]),
    record("B", "image", 0, [cand("perfect-0", 0, "perfect", -1, 1.0, "accept"),
                             cand("erode-0", 0, "erode", 1, 0.85, "minor revision"),
                             cand("merge-0", 0, "merge", -1, 0.4, "major revision"),
                             cand("null-0", 0, "null", -1, 0.0, "reject")]),
]


def P(uid, frame, cand_id, iou, mask_type, action):
    return Prediction(uid, frame, cand_id, iou, mask_type, action)


# A/full_neg-0 has no prediction, B/null-0 has an unparsed IoU, C/perfect-0 matches nothing.
IMAGE_PREDS = {p.key: p for p in [
    P("A", 3, "perfect-0", 0.9, "perfect", "accept"),
    P("A", 3, "cutout-0", 0.7, "cutout", "minor revision"),
    P("A", 3, "cutout-1", 0.6, "erode", "minor revision"),
    P("B", 0, "perfect-0", 0.95, "perfect", "accept"),
    P("B", 0, "erode-0", 0.85, "erode", "accept"),
    P("B", 0, "merge-0", 0.2, "merge", "major revision"),
    P("B", 0, "null-0", None, "null", "reject"),
    P("C", 0, "perfect-0", 0.5, "perfect", "accept"),
]}


@pytest.fixture(scope="module")
def image_result():
    return evaluate_method("toy", ground_truth_table(IMAGE_RECORDS, "test_s", "image"), IMAGE_PREDS)


def test_ground_truth_table_flattens_records():
    gt = ground_truth_table(IMAGE_RECORDS, "test_s", "image")
    assert len(gt) == 8
    assert gt.keys()[1] == ("A", 3, "cutout-0")
    assert gt.setting.tolist() == ["perfect", "cutout_r1", "cutout_r2", "full_neg",
                                   "perfect", "erode_r1", "merge", "null"]
    with pytest.raises(ValueError, match="appears twice"):
        ground_truth_table(IMAGE_RECORDS + IMAGE_RECORDS[:1], "test_s", "image")
    assert len(ground_truth_table([], "test_s", "image")) == 0


def test_missing_predictions_are_filled_and_counted(image_result):
    m, aligned = image_result.metrics, image_result.aligned
    assert m["n_missing"] == 1 and m["n_unmatched"] == 1
    assert m["n_missing_fields"] == {"iou": 2, "mask_type": 1, "action": 1}
    assert aligned.iou[3] == 0.0 and aligned.mask_type[3] == MISSING and aligned.missing[3]


def test_settings_by_hand(image_result):
    s = image_result.metrics["settings"]
    assert list(s) == list(SETTINGS)
    assert s["perfect"]["rmse"] == approx(math.sqrt((0.01 + 0.0025) / 2))
    assert (s["perfect"]["f2_m"]["macro_f"], s["perfect"]["f2_a"]["macro_f"]) == (1.0, 1.0)
    assert s["cutout_r1"]["rmse"] == approx(0.1)
    # cutout predicted as erode: cutout F 0, erode (no truth here) undefined -> macro 0
    assert s["cutout_r2"]["f2_m"]["macro_f"] == 0.0
    assert s["cutout_r2"]["f2_m"]["per_class"]["erode"]["fbeta"] is None
    assert s["cutout_r2"]["f2_a"]["labels"] == ["major revision"]
    assert s["erode_r1"]["rmse"] == approx(0.0) and s["erode_r1"]["f2_a"]["macro_f"] == 0.0
    assert s["erode_r2"]["n"] == 0 and s["erode_r2"]["rmse"] is None
    assert s["erode_r2"]["f2_m"]["macro_f"] is None
    assert s["merge"]["rmse"] == approx(0.2)
    # the missing full_neg: IoU 0 equals the truth, but both classes are wrong
    assert s["full_neg"]["rmse"] == 0.0 and s["full_neg"]["n_missing"] == 1
    assert s["full_neg"]["f2_m"]["macro_f"] == 0.0 and s["full_neg"]["f2_a"]["macro_f"] == 0.0


def test_overall_and_breakdowns_by_hand(image_result):
    m = image_result.metrics
    o = m["overall"]
    assert o["rmse"] == approx(math.sqrt(0.0725 / 8))
    # types: perfect 1, cutout 5*.5/4.5, erode 5*.5/3, merge 1, full_neg 0, null 1
    assert o["f2_m"]["macro_f"] == approx((1 + 2.5 / 4.5 + 2.5 / 3 + 1 + 0 + 1) / 6)
    # actions: accept 10/11, minor .5, major 2.5/4.5, reject 2.5/4.5
    assert o["f2_a"]["macro_f"] == approx((10 / 11 + 0.5 + 2 * 2.5 / 4.5) / 4)
    assert (o["accuracy_m"], o["accuracy_a"]) == approx((6 / 8, 5 / 8))
    assert m["per_type"]["cutout"]["rmse"] == approx(0.1)
    assert m["per_type"]["merge"]["rmse"] == approx(0.2)
    assert set(m["per_type"]) == {"perfect", "cutout", "erode", "merge", "full_neg", "null"}
    assert m["per_rank"]["H"] == {"n": 2, "rmse": approx(math.sqrt(0.01 / 2))}
    assert m["per_rank"]["M"] == {"n": 1, "rmse": approx(0.1)}
    best = o["best_of_candidates"]
    assert (best["n_groups"], best["pick"], best["oracle"]) == (2, 1.0, 1.0)
    assert best["random"] == approx((2.3 / 4 + 2.25 / 4) / 2)
    assert o["confusion_m"]["matrix"][4] == [0, 0, 0, 0, 0, 0, 1]  # full_neg -> <missing>
    assert o["iou_interval"]["n"] == 0


def test_unusual_ranks_count_only_in_overall():
    """A cutout/erode/dilate of rank 0, 3 or -1 (or missing, read as -1) is in no H/M setting."""
    odd = record("D", "image", 0, [
        cand("cutout-0", 0, "cutout", 1, 0.8, "minor revision"),
        cand("cutout-1", 0, "cutout", 0, 0.7, "minor revision"),
        cand("cutout-2", 0, "cutout", 3, 0.3, "major revision"),
        cand("erode-0", 0, "erode", -1, 0.5, "major revision"),
        cand("dilate-0", 0, "dilate", 3, 0.65, "minor revision"),
        cand("merge-0", 0, "merge", 7, 0.4, "major revision")])
    gt = ground_truth_table([odd], "test_s", "image")
    preds = {key: P(*key, 0.5, "cutout", "minor revision") for key in gt.keys()}
    m = evaluate_method("toy", gt, preds).metrics
    assert {s: v["n"] for s, v in m["settings"].items() if v["n"]} == {"cutout_r1": 1, "merge": 1}
    assert m["overall"]["n"] == m["n_samples"] == 6
    # IoU errors 0.3, 0.2, 0.2, 0, 0.15, 0.1 over all six samples.
    assert m["overall"]["rmse"] == approx(math.sqrt((0.09 + 0.04 + 0.04 + 0.0225 + 0.01) / 6))
    assert m["per_rank"] == {"H": {"n": 1, "rmse": approx(0.3)}}
    assert {t: v["n"] for t, v in m["per_type"].items()} == {"cutout": 3, "erode": 1, "dilate": 1,
                                                            "merge": 1}


VIDEO_RECORDS = [
    record("A", "video", 0, [cand("perfect-0", 0, "perfect", -1, 1.0, "accept"),
                             cand("cutout-0", 0, "cutout", 1, 0.8, "minor revision"),
                             cand("perfect-0", 1, "perfect", -1, 1.0, "accept"),
                             cand("cutout-0", 1, "cutout", 1, 0.7, "minor revision")]),
    record("B", "video", 0, [cand("perfect-0", 0, "perfect", -1, 1.0, "accept"),
                             cand("cutout-0", 0, "cutout", 1, 0.9, "minor revision")]),
]
VIDEO_IOUS = {("A", 0, "perfect-0"): 0.8, ("A", 0, "cutout-0"): 0.6, ("A", 1, "perfect-0"): 1.0,
              ("A", 1, "cutout-0"): 0.9, ("B", 0, "perfect-0"): 0.7, ("B", 0, "cutout-0"): 0.9}


def test_video_mode_rmse_is_per_uid():
    gt = ground_truth_table(VIDEO_RECORDS, "test_s", "video")
    preds = {k: P(*k, iou, "cutout" if "cut" in k[2] else "perfect",
                  "minor revision" if "cut" in k[2] else "accept")
             for k, iou in VIDEO_IOUS.items()}
    m = evaluate_method("toy", gt, preds).metrics
    assert m["rmse_level"] == "video"
    # A: mean pred .825 vs true .875 ; B: .8 vs .95
    assert m["overall"]["rmse"] == approx(math.sqrt((0.05 ** 2 + 0.15 ** 2) / 2))
    assert m["overall"]["rmse_samples"] == approx(math.sqrt(0.21 / 6))
    # cutout: A (.6 + .9) / 2 = .75 = truth, B exact: video level 0, sample level not
    assert m["settings"]["cutout_r1"]["rmse"] == approx(0.0)
    assert m["settings"]["cutout_r1"]["rmse_samples"] == approx(math.sqrt(0.08 / 3))
    assert m["settings"]["perfect"]["rmse"] == approx(math.sqrt((0.01 + 0.09) / 2))
    assert m["settings"]["perfect"]["n_uids"] == 2
    assert m["overall"]["best_of_candidates"]["n_groups"] == 3  # one group per (uid, frame)


def test_report_files_and_terminal_width(image_result, tmp_path):
    empty = evaluate_method("a-method-with-a-very-long-name", image_result.gt, {})
    groups = {("test_s", "image"): [image_result, empty]}
    text = format_tables(groups)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "0.079 100.0 100.0" in text  # toy's perfect group: RMSE, F2-M, F2-A
    assert "a-method-with~" in text
    written = write_report(groups, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["confusion_a-method-with-a-very-long-name_test_s_image.png",
                     "confusion_toy_test_s_image.png", "results.json", "results.md",
                     "scatter_a-method-with-a-very-long-name_test_s_image.png",
                     "scatter_toy_test_s_image.png"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in data["results"]] == ["toy", "a-method-with-a-very-long-name"]
    assert data["results"][0]["overall"]["f2_m"]["micro_f"] == approx(
        image_result.metrics["overall"]["f2_m"]["micro_f"])
    md = (tmp_path / "results.md").read_text()
    assert "| toy | 0.079 / 100.0 / 100.0 |" in md
    assert all((tmp_path / n).stat().st_size > 1000 for n in names if n.endswith(".png"))


# ------------------------------------------------------------------ CLI on a benchmark directory

def _candidate_json(iou, rank, action):
    return {"mask_path": "m.png", "iou_to_gt": iou, "rank": rank, "action": action}


def write_bench(root: Path) -> Path:
    meta = root / "train_test_meta_files"
    meta.mkdir(parents=True)
    (meta / "metadata.csv").write_text("vid,uid,split,fid,exp,kfid\n"
                                       "vid1,vid1_cello_0,test_s,0,the cello,3\n")
    frame = {"gt_mask_path": {"mask_path": "gt.png"},
             "part_neg_masks": {"cutout": [_candidate_json(0.8, 1, "minor revision")]},
             "full_neg_masks": [_candidate_json(0.0, 1, "reject")], "null_masks": []}
    item = {"uid": "vid1_cello_0", "vid": "vid1", "exp": "the cello", "kfid": 3}
    (meta / "test_s_image_filtered.json").write_text(json.dumps([{**item, **frame}]))
    video = {**item, "frames": [{"frame": 3, **frame}, {"frame": 4, **frame}]}
    (meta / "test_s_video_filtered.json").write_text(json.dumps([video]))
    return root


def test_eval_command_end_to_end(tmp_path):
    bench = write_bench(tmp_path / "bench")
    rows = [(3, "perfect-0", 0.9, "perfect", "accept"), (3, "cutout-0", 0.8, "cutout",
            "minor revision"), (3, "full_neg-0", 0.1, "full_neg", "reject"),
            (4, "perfect-0", 1.0, "perfect", "accept")]
    good = tmp_path / "lite.jsonl"
    write_predictions(good, [P("vid1_cello_0", f, c, i, t, a) for f, c, i, t, a in rows])
    other = tmp_path / "other.jsonl"
    write_predictions(other, [{**P("vid1_cello_0", 3, "perfect-0", 0.5, "cutout",
                                   "reject").to_json(), "mode": "image"}])
    out = tmp_path / "out"
    result = CliRunner().invoke(eval_cmd, ["--bench", str(bench), "--pred", str(good), "--pred",
                                           str(other), "--name", "lite", "--name", "other",
                                           "--out", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "== test_s / image ==" in result.output and "== test_s / video ==" in result.output
    assert "other.jsonl has no prediction for test_s/video" in result.output
    assert "lite: 2 of 6 candidates of test_s/video have no prediction" in result.output
    data = json.loads((out / "results.json").read_text())
    cells = {(r["method"], r["mode"]): r for r in data["results"]}
    assert set(cells) == {("lite", "image"), ("other", "image"), ("lite", "video")}
    assert cells[("lite", "image")]["settings"]["perfect"]["rmse"] == approx(0.1)
    assert cells[("other", "image")]["n_missing"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]


def test_eval_command_reads_unusual_ranks(tmp_path):
    bench = write_bench(tmp_path / "bench")
    path = bench / "train_test_meta_files" / "test_s_image_filtered.json"
    data = json.loads(path.read_text())
    data[0]["part_neg_masks"]["cutout"].append(_candidate_json(0.5, 3, "major revision"))
    data[0]["part_neg_masks"]["erode"] = [{"mask_path": "m.png", "iou_to_gt": 0.7}]  # no rank
    data[0]["full_neg_masks"][0]["rank"] = -1
    path.write_text(json.dumps(data))
    pred = tmp_path / "lite.jsonl"
    write_predictions(pred, [P("vid1_cello_0", 3, c, 0.5, "cutout", "minor revision")
                             for c in ("perfect-0", "cutout-0", "cutout-1", "erode-0", "full_neg-0")])
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the reader's note on the two odd ranks
        result = CliRunner().invoke(eval_cmd, ["--bench", str(bench), "--pred", str(pred),
                                               "--split", "test_s", "--mode", "image",
                                               "--out", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    (cell,) = json.loads((out / "results.json").read_text())["results"]
    counts = {s: v["n"] for s, v in cell["settings"].items() if v["n"]}
    assert counts == {"perfect": 1, "cutout_r1": 1, "full_neg": 1}
    assert cell["overall"]["n"] == 5


def test_eval_command_errors(tmp_path):
    bench = write_bench(tmp_path / "bench")
    stranger = tmp_path / "stranger.jsonl"
    write_predictions(stranger, [P("someone_else_0", 0, "perfect-0", 1.0, "perfect", "accept")])
    runner = CliRunner()
    res = runner.invoke(eval_cmd, ["--bench", str(bench), "--pred", str(stranger)])
    assert res.exit_code == 1 and "none of its 1 predictions matches" in res.output
    assert "('someone_else_0', 0, 'perfect-0')" in res.output
    res = runner.invoke(eval_cmd, ["--bench", str(bench), "--pred", str(stranger),
                                   "--split", "test_u"])
    assert res.exit_code == 1 and "no test JSON for test_u" in res.output
    res = runner.invoke(eval_cmd, ["--bench", str(bench), "--pred", str(stranger), "--name", "a",
                                   "--name", "b"])
    assert res.exit_code == 2 and "2 --name given for 1 --pred" in res.output
    res = runner.invoke(eval_cmd, ["--bench", str(bench), "--pred", str(stranger), "--pred",
                                   str(stranger)])
    assert res.exit_code == 2 and "used twice" in res.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"uid": "x", "frame": 0, "cand_id": "perfect-0", "iou": 0.5, '
                      '"mask_type": "perfekt", "action": "accept"}\n')
    res = runner.invoke(eval_cmd, ["--bench", str(bench), "--pred", str(broken)])
    assert res.exit_code == 1 and "line 1" in res.output and "perfekt" in res.output
