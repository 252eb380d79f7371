"""Dataset-scale audits: ``auditor-lite audit --bench DIR | --clips FILE --executor ray|local --out OUT``.

``tasks`` lists the clips (a benchmark or a clip list), ``work`` reads and audits them with the
per-clip code of ``audit --bench`` (``auditor_lite.batch_audit``), ``output`` writes parts that
survive a killed run and merges them, ``run`` drives a run, ``ray_executor`` streams it through
Ray Data (imported only there: the ``scale`` extra). docs/scale.md is the guide.
"""
