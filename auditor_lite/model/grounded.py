"""The grounded auditor: stage A (where is the referent, once per clip and frame) + stage B (score
each mask against it). The unit that is trained, saved, and exported as two graphs:

- ``context``: frames (1, 10, 3, S, S) in [0, 1], key_index (1,) int64, log_mel (1, 64, 501) dB,
  tokens (1, T, 384) MiniLM token states, token_mask (1, T), and for grounders that read it
  cell_motion (1, 10, N, 4) from :func:`auditor_lite.motion.cell_motion` -> context (1, 1025): the
  key frame's 32 x 32 referent-map logits and the null logit;
- ``masks``: context, masks (N, 1, S, S), key_frame (1, 3, S, S) -> iou, type_logits,
  action_logits, one row per mask, each computed from its own mask only.

A checkpoint directory holds ``grounder.safetensors`` + ``grounder_config.json`` (stage A, as
``train-grounding`` writes them) and ``scorer.safetensors`` + ``scorer_config.json`` (stage B).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from auditor_lite.model.grounder import NUM_SECONDS, Grounder, GrounderConfig
from auditor_lite.motion import CELL, NUM_MOTION_FEATURES
from auditor_lite.model.scorer import MAP_SIZE, MaskScorer, ScorerConfig

CONTEXT_SIZE = MAP_SIZE * MAP_SIZE + 1
GROUNDER_FILES = ("grounder.safetensors", "grounder_config.json")
SCORER_FILES = ("scorer.safetensors", "scorer_config.json")


class GroundedAuditor(nn.Module):
    def __init__(self, grounder: Grounder, scorer: MaskScorer):
        super().__init__()
        self.grounder = grounder
        self.scorer = scorer

    @property
    def key_size(self) -> int:
        return self.grounder.config.key_size

    @property
    def max_tokens(self) -> int:
        return self.grounder.config.max_tokens

    @property
    def reads_cell_motion(self) -> bool:
        return self.grounder.config.cell_motion

    def encode_context(self, frames: torch.Tensor, key_index: torch.Tensor, log_mel: torch.Tensor,
                       tokens: torch.Tensor, token_mask: torch.Tensor,
                       cell_motion: torch.Tensor | None = None) -> torch.Tensor:
        out = self.grounder(frames * 255.0, key_index, log_mel, tokens, token_mask, cell_motion)
        return torch.cat([out["target_logits"].flatten(1), out["null_logit"][:, None]], 1)

    def audit_masks(self, context: torch.Tensor, masks: torch.Tensor, key_frame: torch.Tensor):
        return self.scorer(context, masks, key_frame)

    def example_inputs(self, num_masks: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
        """Realistically ranged inputs for export and checks (a few words, a blob mask)."""
        g = torch.Generator().manual_seed(seed)
        s, t = self.key_size, self.max_tokens
        frames = torch.rand(1, NUM_SECONDS, 3, s, s, generator=g)
        mask = torch.zeros(1, t)
        mask[:, :7] = 1
        masks = (torch.rand(num_masks, 1, s // 8, s // 8, generator=g) > 0.6).float()
        masks = torch.nn.functional.interpolate(masks, size=(s, s), mode="nearest")
        inputs = {"frames": frames, "key_index": torch.tensor([3]),
                  "log_mel": torch.rand(1, self.grounder.config.n_mels, 501, generator=g) * 60 - 80,
                  "tokens": torch.randn(1, t, self.grounder.config.text_dim, generator=g) * 0.5,
                  "token_mask": mask, "masks": masks, "key_frame": frames[:, 3]}
        if self.reads_cell_motion:
            inputs["cell_motion"] = torch.rand(1, NUM_SECONDS, (s // CELL) ** 2, NUM_MOTION_FEATURES,
                                               generator=g) - 0.5
        return inputs


def save_scorer(scorer: MaskScorer, out_dir) -> None:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in scorer.state_dict().items()},
              str(out_dir / SCORER_FILES[0]))
    (out_dir / SCORER_FILES[1]).write_text(json.dumps(scorer.config.to_dict(), indent=2))


def load_scorer(model_dir) -> MaskScorer:
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    path = model_dir / SCORER_FILES[1]
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {SCORER_FILES[1]} (train stage B with "
                                "`auditor-lite train-scorer`)")
    scorer = MaskScorer(ScorerConfig(**json.loads(path.read_text())))
    scorer.load_state_dict(load_file(str(model_dir / SCORER_FILES[0])))
    return scorer.eval()


def load_grounded(model_dir) -> GroundedAuditor:
    """Stage A and stage B from one checkpoint directory."""
    from auditor_lite.training.grounding_train import load_grounder

    return GroundedAuditor(load_grounder(model_dir), load_scorer(model_dir)).eval()


__all__ = ["CONTEXT_SIZE", "GroundedAuditor", "GrounderConfig", "load_grounded", "load_scorer", "save_scorer"]
