"""Evaluation: the MQ-RAVSBench protocol, its metrics, the predictions format and reports.

- :mod:`.metrics`: pure metric functions (RMSE, F-beta, correlations, AUROC, best-of-candidates).
- :mod:`.protocol`: the ground-truth table, the nine settings and what is measured on each.
- :mod:`.predictions`: the predictions JSONL (docs/predictions.md): read, validate, write.
- :mod:`.mqauditor`: parse the released MQ-Auditor's generated text into that format.
- :mod:`.report`: terminal and Markdown tables, results.json and PNG plots.
- :mod:`.cli`: ``auditor-lite eval`` and ``auditor-lite convert-mqauditor``.
"""
