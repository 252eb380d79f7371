"""``auditor-lite bench``: end-to-end latency, throughput, size and accuracy of every way to run a
model directory, measured side by side in one process (docs: bench/README.md).

- :mod:`.timing`: percentiles, latency statistics, the interleaved (round-robin) timing loop and
  the machine description recorded with every result.
- :mod:`.variants`: the things timed -- ONNX Runtime FP32 / INT8 in the fused (production), naive
  (MQ-Auditor's one-context-per-mask) and cached-context layouts -- all through the
  production runtime API (:mod:`auditor_lite.runtime`), from decoded media to ``AuditResult``.
- :mod:`.profile`: where the time of one call goes (preprocessing stages, ONNX Runtime op types).
- :mod:`.accuracy`: each artifact scored on a benchmark's test split beside its speed.
- :mod:`.suite`: runs all of it and checks the speed goals; :mod:`.report` / :mod:`.plot`
  write the table, ``bench.json``, ``bench.md`` and ``bench.png``; :mod:`.cli`: the command.

Nothing is imported here: ``import auditor_lite.benchmark.timing`` stays light.
"""
