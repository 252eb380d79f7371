"""Stage A (grounding): the generator's sidecar, the decoded set, the model, training and diagnostics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from auditor_lite.cli import main  # noqa: E402
from auditor_lite.data import synth  # noqa: E402
from auditor_lite.media import load_mask  # noqa: E402
from auditor_lite.data.reader import Benchmark  # noqa: E402
from auditor_lite.data.sidecar import SIDECAR_DIR, read_sidecar, sidecar_path  # noqa: E402
from auditor_lite.model.grounder import Grounder, GrounderConfig  # noqa: E402
from auditor_lite.motion import cell_motion  # noqa: E402
from auditor_lite.training.grounding_data import grounding_set  # noqa: E402
from auditor_lite.training.grounding_batches import (batch_tensors, clip_groups, group_batch,  # noqa: E402
                                                     model_inputs)
from auditor_lite.training.grounding_train import (grounding_losses, name_vectors,  # noqa: E402
                                                   referent_predictions, referent_report)

SIZE = 64


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grounding") / "bench"
    synth.synthesize(root, clips=10, seed=11, size=SIZE, procedural=True, progress=False, workers=1)
    return root


def test_sidecar_matches_the_official_files(bench):
    bench_reader = Benchmark(bench)
    checked = 0
    for record in bench_reader.records("train", "train"):
        side = read_sidecar(bench, record.vid)
        assert side is not None
        info = side.expression(record.uid)
        assert info is not None and info["null"] == record.is_null
        if record.is_null:
            continue
        assert info["target"] == record.fid
        gt = load_mask(record.gt_masks[record.kfid])
        assert np.array_equal(side.instance[record.kfid] == record.fid + 1, gt)
        assert side.sounding.shape == (side.num_objects, 10)
        assert info["cue"]
        if info["anchor"] is not None:
            assert info["anchor"] != info["target"] and info["relation"]
        checked += 1
    assert checked >= 3


def test_reader_ignores_the_sidecar(bench, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bench, copy)
    shutil.rmtree(copy / SIDECAR_DIR)
    with_side = [r.uid for r in Benchmark(bench).records("test_s", "image")]
    without = [r.uid for r in Benchmark(copy).records("test_s", "image")]
    assert with_side == without
    assert read_sidecar(copy, with_side[0].rsplit("_", 2)[0]) is None


def test_corrupt_sidecar_is_a_clear_error(bench, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bench, copy)
    vid = next(Benchmark(copy).records("train", "train")).vid
    sidecar_path(copy, vid).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=vid):
        read_sidecar(copy, vid)


def test_grounder_shapes_and_budget():
    from torch.utils.flop_counter import FlopCounterMode

    model = Grounder(GrounderConfig(cell_motion=True)).eval()
    frames = torch.randint(0, 255, (2, 10, 3, 128, 128)).float()
    mel = torch.full((2, 64, 501), -60.0)
    tokens, mask = torch.randn(2, 24, 384), torch.ones(2, 24)
    motion = torch.from_numpy(np.stack([cell_motion(f) for f in frames.numpy()]))
    with FlopCounterMode(display=False) as counter:
        out = model(frames[:1], torch.tensor([3]), mel[:1], tokens[:1], mask[:1], motion[:1])
    assert out["target_logits"].shape == (1, 32, 32)
    assert out["anchor_logits"].shape == (1, 16, 16)
    assert out["null_logit"].shape == (1,)
    # the budget: at most 0.5 GFLOP per clip, everything included
    assert counter.get_total_flops() < 0.45e9
    # padding words are ignored
    mask2 = mask.clone()
    mask2[:, 12:] = 0
    tokens2 = tokens.clone()
    tokens2[:, 12:] = 100.0
    a = model(frames, torch.tensor([3, 4]), mel, tokens, mask2, motion)["target_logits"]
    b = model(frames, torch.tensor([3, 4]), mel, tokens2, mask2, motion)["target_logits"]
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="cell_motion"):
        model(frames, torch.tensor([3, 4]), mel, tokens, mask2)


@pytest.fixture(scope="module")
def data(bench, tmp_path_factory):
    return grounding_set(bench, "train", "train", tmp_path_factory.mktemp("cache"), size=SIZE,
                         max_tokens=16, progress=False)


def test_grounding_set(data, bench):
    assert len(data) == len(list(Benchmark(bench).records("train", "train")))
    assert data.frames.shape[1:] == (10, SIZE, SIZE, 3)
    assert data.log_mel.shape[1:] == (64, 501)
    assert data.tokens.shape[1:] == (16, 384)
    assert data.motion.shape == (len(data.frames), 10, (SIZE // 8) ** 2, 4)
    np.testing.assert_allclose(data.motion[0].astype(np.float32), cell_motion(data.frames[0]), atol=2e-2)
    for e in range(len(data)):
        if data.target[e] >= 0:
            c, k = data.clip[e], data.kfid[e]
            assert (data.instance[c, k] == data.target[e] + 1).any()
    assert all(data.meta["has_sidecar"])


def test_losses_fall_when_training(data):
    torch.manual_seed(0)
    model = Grounder(GrounderConfig(key_size=SIZE, track_size=SIZE // 2, max_tokens=16, cell_motion=True))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    names = name_vectors(data.categories)
    rows = np.arange(len(data))
    rng = np.random.default_rng(0)
    first = None
    for _ in range(25):
        b = batch_tensors(data, rows, rng, augment=False)
        out = model(*model_inputs(b))
        losses = grounding_losses(model, out, b, names, data.sounding.shape[1])
        total = sum(losses.values())
        first = total.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert {"referent", "map", "null", "sounding", "motion_sounding"} <= set(losses)
    assert total.item() < 0.8 * first
    pred = referent_predictions(model, data, rows)
    report = referent_report(data, rows, pred)
    assert report["overall"]["n"] == len(rows)
    assert 0.0 < report["overall"]["chance"] <= 1.0


def test_a_clip_group_shares_one_encoding_with_the_same_outputs(data):
    """group_batch encodes each clip once for several of its expressions; every expression must
    get exactly what a batch of its own (same key frame, no augmentation) gives it."""
    torch.manual_seed(0)
    model = Grounder(GrounderConfig(key_size=SIZE, track_size=SIZE // 2, max_tokens=16, cell_motion=True)).eval()
    groups = clip_groups(data, np.arange(len(data)))
    assert sum(len(g) for g in groups) == len(data)
    for g in groups:   # one (clip, audio) per group
        assert len({(int(data.clip[r]), int(data.mel_row[r])) for r in g}) == 1
    b, rows = group_batch(data, groups[:3], np.random.default_rng(1), per_group=3, augment=False)
    assert len(rows) == len(b["clip_index"]) == len(b["target"]) and len(b["frames"]) == 3
    with torch.no_grad():
        clip = model.encode_clip(b["frames"], b["key_index"], b["log_mel"], b["cell_motion"])
        grouped = model.ground(clip, b["tokens"], b["token_mask"], b["clip_index"])
        keys = b["key_index"][b["clip_index"]].numpy()
        alone = model(*model_inputs(batch_tensors(data, rows, None, augment=False, key_frames=keys)))
    for name in ("target_logits", "anchor_logits", "null_logit"):
        torch.testing.assert_close(grouped[name], alone[name], rtol=1e-4, atol=1e-4)
    assert torch.equal(b["target"], torch.from_numpy(data.target[rows].astype(np.int64)))


def test_train_and_diagnose_commands(bench, tmp_path):
    runner = CliRunner()
    out = tmp_path / "grounder"
    result = runner.invoke(main, ["train-grounding", "--bench", str(bench), "--out", str(out),
                                  "--max-minutes", "1.05", "--batch-size", "4", "--threads", "1",
                                  "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert (out / "grounder.safetensors").is_file() and (out / "training_summary.json").is_file()
    report = tmp_path / "diag.json"
    result = runner.invoke(main, ["diagnose", "grounding", "--model", str(out), "--bench", str(bench),
                                  "--cache", str(tmp_path / "cache"), "--threads", "1",
                                  "--shuffle-expressions", "1", "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "referent accuracy" in result.output and "chance" in result.output
    numbers = json.loads(report.read_text())
    assert numbers["shuffle_expressions"] == 1 and "overall" in numbers["splits"]["test_s"]


def test_diagnose_refuses_a_directory_without_a_grounder(bench, tmp_path):
    result = CliRunner().invoke(main, ["diagnose", "grounding", "--model", str(tmp_path),
                                       "--bench", str(bench)])
    assert result.exit_code != 0
    assert "grounder_config.json" in result.output and "Traceback" not in result.output


def test_sidecar_facts_rebuild_the_generators_expressions(bench):
    """The resolver on facts rebuilt from the sidecar phrases the benchmark's own expression again,
    so extra training expressions mean what they say."""
    from auditor_lite.data.expressions import candidate_expressions
    from auditor_lite.training.extra_expressions import extra_expressions, facts_from_sidecar

    checked = 0
    for record in Benchmark(bench).records("train", "train"):
        if record.is_null:
            continue
        side = read_sidecar(bench, record.vid)
        facts = facts_from_sidecar(side)
        texts = {e.text for _, e in candidate_expressions(facts, record.fid)}
        assert record.exp in texts
        extra = extra_expressions(side, np.random.default_rng(0), 3, exclude={record.exp})
        for item in extra:
            assert item["text"] != record.exp
            assert 0 <= item["target"] < side.num_objects
        checked += 1
    assert checked >= 3


def test_extra_expressions_in_the_training_set(bench, tmp_path):
    data = grounding_set(bench, "train", "train", tmp_path, size=SIZE, max_tokens=16, progress=False,
                         extra_per_clip=2)
    extra = np.array(data.meta["extra"])
    assert extra.sum() > 0 and (~extra).sum() == len(list(Benchmark(bench).records("train", "train")))
    for e in np.nonzero(extra)[0]:
        assert data.target[e] >= 0
        assert (data.instance[data.clip[e], data.kfid[e]] == data.target[e] + 1).any()


def test_committed_grounder_checkpoint_loads_and_runs():
    from auditor_lite.training.grounding_train import load_grounder

    root = Path(__file__).resolve().parents[1] / "auditor_lite" / "assets" / "grounded_checkpoint"
    model = load_grounder(root)
    summary = json.loads((root / "training_summary.json").read_text())
    # the summary counts the model without its training-only heads (aux_*)
    assert summary["parameters"] == sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_"))
    assert model.config.cell_motion
    c = model.config
    with torch.no_grad():
        out = model(torch.full((1, 10, 3, c.key_size, c.key_size), 128.0), torch.tensor([0]),
                    torch.full((1, c.n_mels, 501), -60.0), torch.zeros(1, c.max_tokens, c.text_dim),
                    torch.ones(1, c.max_tokens), torch.zeros(1, 10, (c.key_size // 8) ** 2, 4))
    assert torch.isfinite(out["target_logits"]).all() and torch.isfinite(out["null_logit"]).all()


def test_fine_tuning_with_cell_motion_starts_where_the_old_grounder_was(tmp_path):
    from auditor_lite.training.grounding_train import fine_tune_start, load_grounder, save_grounder

    torch.manual_seed(0)
    old = Grounder(GrounderConfig(key_size=SIZE, track_size=SIZE // 2, max_tokens=16, width=32, heads=2,
                                  track_dim=8, audio_dim=8, decoder_dim=8, motion_energy=False,
                                  sound_tokens=False, cell_motion=False)).eval()
    save_grounder(old, tmp_path)
    assert not load_grounder(tmp_path).config.cell_motion
    new = fine_tune_start(tmp_path).eval()
    assert new.config.cell_motion
    frames = torch.randint(0, 255, (2, 10, 3, SIZE, SIZE)).float()
    args = (frames, torch.tensor([2, 7]), torch.full((2, 64, 501), -50.0), torch.randn(2, 16, 384), torch.ones(2, 16))
    motion = torch.from_numpy(np.stack([cell_motion(f) for f in frames.numpy()]))
    with torch.no_grad():
        before, after = old(*args), new(*args, motion)
    for key in ("target_logits", "anchor_logits", "null_logit"):
        torch.testing.assert_close(after[key], before[key])
    assert after["moved"].shape == (2, (SIZE // 8) ** 2, 10, 1)
