"""INT8 calibration and score calibration of exported auditor graphs (docs/calibration.md).

- :mod:`.score`: isotonic IoU recalibration + split-conformal interval (numpy only).
- :mod:`.quantize`: ``quant_pre_process`` + Optimum calibration + QDQ quantization (CPU / TensorRT).
- :mod:`.gate`: the accuracy gate, through the runtime's public path.
- :mod:`.grounded_int8`, :mod:`.cli`: ``auditor-lite export int8``.
- :mod:`.recalibrate`: ``auditor-lite calibrate`` (torch-free).

Nothing is imported here, so that ``import auditor_lite.calibration.score`` stays light.
"""
