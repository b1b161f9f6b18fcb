"""Synthetic Kinetics-style corpus with exact ground truth (``vid2mesh synth``).

* :mod:`pipeline.synth.motions`: the procedural motion library and its tuning / held-out split.
* :mod:`pipeline.synth.render`: a vectorised z-buffer renderer (also for QA overlays).
* :mod:`pipeline.synth.scene`: camera paths (zoom, shake, roll) and procedural backgrounds.
* :mod:`pipeline.synth.noise`: simulated keypoint detector and per-frame SMPL regressor.
* :mod:`pipeline.synth.truth`: the ``.gt.npz`` ground-truth record.
* :mod:`pipeline.synth.corpus`: the generator; :mod:`pipeline.synth.sheet`: contact sheets.

See ``docs/synthetic_corpus.md``.
"""

from pipeline.synth.corpus import SynthConfig, generate_corpus
from pipeline.synth.render import Mesh, render, render_meshes
from pipeline.synth.truth import ClipTruth

__all__ = ["ClipTruth", "Mesh", "SynthConfig", "generate_corpus", "render", "render_meshes"]
