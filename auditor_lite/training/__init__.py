"""Training of the grounded auditor: stage A (the grounder, ``train-grounding``) and stage B (the
per-mask scorer, ``train-scorer``); docs/grounding.md and docs/grounded-auditor.md.

Submodules import torch; the command line (``auditor_lite.training.grounding_cli``) imports them
lazily.
"""
