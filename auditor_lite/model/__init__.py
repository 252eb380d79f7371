"""The grounded auditor's torch models (the ``train`` extra): stage A, the grounder
(:mod:`.grounder`), stage B, the per-mask scorer (:mod:`.scorer`), both together for export
(:mod:`.grounded`), and the MiniLM text encoder (:mod:`.text`).

Preprocessing lives outside this package, in :mod:`auditor_lite.preprocess`, for the torch-free
edge runtime. Nothing is imported here, so ``import auditor_lite.model.checkpoint`` stays light.
"""
