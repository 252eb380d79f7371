"""A tiny model directory in the docs/artifact.md layout, for the runtime tests (needs torch).

A randomly initialised GroundedAuditor (every part of the real one, real 128-px inputs, narrow
layers) is exported to its context and masks graphs by ``auditor_lite.export``; the text encoder is
a stand-in (a 97-row embedding table
over ``input_ids % 97``, mean-pooled and L2-normalised: the real MiniLM graph is 90 MB) behind the
real MiniLM ``tokenizer.json``. A score calibration with hand-checkable knots is included. Built
once (cached by source hash, see :func:`tiny_artifact`) and shared by the runtime test modules.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

TINY_GROUNDER = dict(width=32, heads=2, track_dim=8, audio_dim=8, decoder_dim=8, cell_motion=True)
TEXT_ROWS = 97
# Recalibration knots and conformal half-width of the fixture (tests compute expectations from them).
CALIBRATION = {"method": "isotonic", "fit_on": "test fixture", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.4, 1.0],
               "conformal": {"coverage": 0.9, "q": 0.1, "n": 100, "score": "abs residual after recalibration"}}


def tiny_model():
    import torch

    from auditor_lite.model.grounded import GroundedAuditor
    from auditor_lite.model.grounder import Grounder, GrounderConfig
    from auditor_lite.model.scorer import MaskScorer, ScorerConfig

    torch.manual_seed(0)
    model = GroundedAuditor(Grounder(GrounderConfig(**TINY_GROUNDER)),
                            MaskScorer(ScorerConfig(hidden=16, crop_dim=8)))
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _text_encoder():
    import torch

    class HashedBagOfTokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.table = torch.nn.Embedding(TEXT_ROWS, 384)

        def forward(self, input_ids, attention_mask):
            weights = attention_mask.unsqueeze(-1).float()
            summed = (self.table(input_ids % TEXT_ROWS) * weights).sum(dim=1)
            mean = summed / weights.sum(dim=1).clamp(min=1e-9)
            states = self.table(input_ids % TEXT_ROWS)          # stand-in per-token states
            return torch.nn.functional.normalize(mean, dim=-1), states

    return HashedBagOfTokens().eval()


def minilm_tokenizer_json() -> Path:
    from auditor_lite.model.text import minilm_model_dir

    return minilm_model_dir() / "tokenizer.json"


def export_tiny_artifact(out: Path, model) -> Path:
    """Write the model directory for ``model`` into ``out`` with the project's exporter
    (``export_model_dir``: fp32 context + masks graphs, checked against torch), then add the
    stand-in text encoder, the MiniLM tokenizer and the score calibration, re-hashing the manifest."""
    import torch

    from auditor_lite.export.contract import text_encoder_contract
    from auditor_lite.export.model_dir import export_model_dir
    from auditor_lite.manifest import update_manifest
    from auditor_lite.model.grounded import save_scorer
    from auditor_lite.training.grounding_train import save_grounder

    checkpoint = out.parent / "checkpoint"
    checkpoint.mkdir(parents=True)
    save_grounder(model.grounder, checkpoint)
    save_scorer(model.scorer, checkpoint)
    summary = export_model_dir(checkpoint, out, with_text=False, name="tiny-test")
    assert all(row["ok"] for row in summary.comparison)
    ids = torch.tensor([[101, 1996, 3899, 102]])
    torch.onnx.export(_text_encoder(), (ids, torch.ones_like(ids)), str(out / "text_encoder.onnx"),
                      dynamo=False, opset_version=17, input_names=["input_ids", "attention_mask"],
                      output_names=["text_embedding", "token_states"],
                      dynamic_axes={"input_ids": {1: "T"}, "attention_mask": {1: "T"}, "token_states": {1: "T"}})
    shutil.copy(minilm_tokenizer_json(), out / "tokenizer.json")
    vocab = len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"])
    (out / "score_calibration.json").write_text(json.dumps(CALIBRATION))
    update_manifest(out, graphs={"text_encoder": {"fp32": "text_encoder.onnx"}},
                    contract={"text_encoder": text_encoder_contract(vocab)},
                    score_calibration="score_calibration.json")
    return out


def _source_key() -> str:
    """Hash of everything the artifact is built from: a change to any of it builds a new one."""
    root = Path(__file__).resolve().parent.parent / "auditor_lite"
    sources = sorted([*root.glob("model/*.py"), *root.glob("export/*.py"), root / "manifest.py",
                      root / "preprocess.py", root / "motion.py", root / "graph_io.py",
                      root / "training" / "grounding_train.py", Path(__file__).resolve()])
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + path.read_bytes())
    import torch

    digest.update(torch.__version__.encode())
    return digest.hexdigest()[:16]


@functools.cache
def tiny_artifact() -> tuple[Path, object]:
    """``(model_dir, torch_model)``. The directory is built once and kept in the system temp folder
    under the hash of its sources (an export takes ~15 s on two cores; the runtime test files would
    each pay it). Tests must not modify it: copy it (``copy_artifact``) to tamper with files.
    """
    model = tiny_model()  # seeded: the same weights the cached directory was exported from
    cache = Path(tempfile.gettempdir()) / "auditor-lite-test-artifacts" / _source_key()
    if not (cache / "model" / "manifest.json").is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache.parent))
        export_tiny_artifact(staging / "model", model)
        try:
            staging.rename(cache)  # atomic: a concurrent builder's finished copy is as good
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return cache / "model", model


def copy_artifact(dest: Path) -> Path:
    source, _ = tiny_artifact()
    shutil.copytree(source, dest)
    return dest
