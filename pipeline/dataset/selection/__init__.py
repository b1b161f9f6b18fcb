"""Track selection: which fitted tracks become training data, and why the others did not.

"Why was this track dropped?" is answered here, in three modules read in this order:

* :mod:`~pipeline.dataset.selection.rules`: the verdict of one track (``TrackReason``,
  ``SelectionConfig``, eligibility, the selection score and its threshold, the clip's
  verdict from its tracks, and the bound each reason names in messages);
* :mod:`~pipeline.dataset.selection.commit`: the rows a fitted clip commits before the
  run's threshold is known (eligible tracks are *pending*);
* :mod:`~pipeline.dataset.selection.table`: the ``selection/`` table over the whole
  output (the threshold applied, each track's final reason, each clip's final outcome);
* :mod:`~pipeline.dataset.selection.publish`: the verdicts written back into the data
  (true ``track_selected`` / ``selected`` columns, the ``frames_selected/`` view).

The figures the rules read (the predicted error, E_norm, trajectory length, inlier frames,
identity switches) are computed with each fit in :mod:`optimize.track_metrics`;
``SelectionConfig.score`` picks the score. This package imports nothing at import time, so
each module's own imports are its whole dependency set.
"""
