"""INT8 calibration and score calibration of exported auditor graphs (docs/calibration.md).

- :mod:`.score`: isotonic IoU recalibration + split-conformal interval; torch- and sklearn-free at
  import, so the edge runtime imports :func:`.score.apply_score_calibration` from it.
- :mod:`.inputs`, :mod:`.dataset`: graph inputs from the benchmark (the runtime's preprocessing),
  stratified calibration samples and their ``.npz``.
- :mod:`.quantize`: ``quant_pre_process`` + Optimum calibration + QDQ quantization (CPU / TensorRT).
- :mod:`.sensitivity`, :mod:`.gate`, :mod:`.latency`: per-node report, accuracy gate, timings.
- :mod:`.pipeline`, :mod:`.cli`: ``auditor-lite export int8``.

Nothing is imported here, so that ``import auditor_lite.calibration.score`` stays light.
"""
