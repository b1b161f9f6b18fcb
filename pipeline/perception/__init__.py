"""Perception: one clip from a video (or precomputed keypoints) to per-person track problems.

Modules: ``decode`` (frames at a fixed rate, probing, truncation check), ``keypoints_io``
(OpenPose / COCO keypoint files), ``track`` (shortest-path linking of keypoints), ``init``
(HMR or keypoint-only SMPL initialisation), ``crops`` (person crops), ``perceive`` (the
per-clip step that chains them) and ``inputs`` (listing clips from globs, CSVs, manifests).

May import: ``pipeline.records``, ``optimize``, ``models``. Never ``pipeline.dataset`` or
``pipeline.qa`` (``tests/test_layering.py`` checks it).
"""
