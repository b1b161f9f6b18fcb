"""The dataset: track selection, Parquet rows and schemas, the writer and the reader.

Modules: ``schema`` (versioned Arrow schemas of ``frames/``, ``tracks/``, ``rejected/``),
``selection`` (E_norm threshold, inlier rules, verdicts), ``rows`` (fits to rows),
``writer`` (idempotent shards, manifests, dataset card) and ``reader`` (PyTorch / HF access
for ML teams).

May import: ``pipeline.perception``, ``pipeline.records``, ``optimize``, ``models``. Never
``pipeline.qa`` (``tests/test_layering.py`` checks it).
"""
