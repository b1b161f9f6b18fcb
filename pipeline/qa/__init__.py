"""Quality assurance: overlays, the HTML report, accuracy against ground truth, metrics.

Modules: ``overlay`` (mesh overlays on the source video), ``report`` (the run's HTML QA
report), ``evaluate`` (``vid2mesh evaluate`` against a synthetic corpus's ground truth) and
``metrics`` (MPJPE, PA-MPJPE, PCK, acceleration error, tracking purity).

May import: ``pipeline.dataset``, ``pipeline.perception``, ``pipeline.synth``,
``pipeline.records``, ``optimize``, ``models`` (top of ``pipeline/``: nothing imports it but
the commands and the layers above).
"""
