"""Training, distillation and prediction for the auditor models (docs/training.md).

Submodules import torch; the command line (``auditor_lite.training.cli``) imports them lazily.
"""
