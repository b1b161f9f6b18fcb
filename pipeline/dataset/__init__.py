"""The dataset: track selection, Parquet rows and schemas, the writer and the reader.

Modules: ``schema`` (versioned Arrow schemas of ``frames/``, ``tracks/``, ``rejected/``),
``selection`` (a package: the verdict rules, the commit-time verdict, the ``selection/``
table), ``rows`` (fits to rows), ``fs`` (paths, filesystems and the ``Storage`` the writers
use), ``writer`` (idempotent shards), ``manifests`` (each shard's commit record), ``card``
(``stats.json`` and the dataset card), ``progress`` (progress lines from the manifests) and
``reader`` (PyTorch / HF access for ML teams).

May import: ``pipeline.perception``, ``pipeline.records``, ``optimize``, ``models``. Never
``pipeline.qa`` (``tests/test_layering.py`` checks it).
"""
