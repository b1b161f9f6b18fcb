"""Bundle adjustment inside the Beam job: fitting a batch with per-track fallback, and the
workers' torch thread count (the DoFn that batches and commits is :mod:`transforms.commit`)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence


from pipeline.records import TrackFit, TrackProblem
from transforms import metrics
from transforms.stages import BundleAdjustStage

LOGGER = logging.getLogger(__name__)


class _Loaded:
    def __init__(self, stage):
        stage.setup()
        self.stage = stage


def fit_tracks(stage: BundleAdjustStage, problems: Sequence[TrackProblem]) -> list[TrackFit]:
    """Fit a batch; if the batched call raises, fit each track alone so one bad track
    fails only itself (recorded as a ``failed`` fit with the error)."""
    valid, fits = [], {}
    for i, problem in enumerate(problems):
        try:
            problem.validate()
            valid.append(i)
        except ValueError as exc:
            fits[i] = TrackFit.failed(problem, f"invalid track problem: {exc}")
    try:
        batch = stage([problems[i] for i in valid]) if valid else []
        if len(batch) != len(valid):
            raise RuntimeError(f"bundle adjustment returned {len(batch)} fits for {len(valid)} problems")
        fits.update(zip(valid, batch))
    except Exception:
        LOGGER.exception("batched bundle adjustment of %d tracks failed; fitting them one by one", len(valid))
        metrics.inc("ba_batch_retries")
        for i in valid:
            try:
                (fits[i],) = stage([problems[i]])
            except Exception as exc:
                fits[i] = TrackFit.failed(problems[i], f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    return [fits[i] for i in range(len(problems))]


def set_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads of this worker process (0: leave torch's default), logged."""
    if threads > 0:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        LOGGER.info("bundle-adjustment worker: torch intra-op threads %d", torch.get_num_threads())
