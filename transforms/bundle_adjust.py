"""Batching boundary and the batched bundle-adjustment DoFn."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.utils.shared import Shared

from pipeline.records import TrackFit, TrackProblem
from pipeline.dataset.rows import failed_fit
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
            fits[i] = failed_fit(problem, f"invalid track problem: {exc}")
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
                fits[i] = failed_fit(problems[i], f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    return [fits[i] for i in range(len(problems))]


def set_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads of this worker process (0: leave torch's default), logged."""
    if threads > 0:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        LOGGER.info("bundle-adjustment worker: torch intra-op threads %d", torch.get_num_threads())


class BundleAdjustBatchFn(beam.DoFn):
    """list[TrackProblem] -> (clip_id, (problem, fit)) for each track of the batch."""

    def __init__(self, stage: BundleAdjustStage, torch_threads: int = 0):
        self._stage = stage
        self._torch_threads = torch_threads
        self._shared = Shared()

    def setup(self):
        set_torch_threads(self._torch_threads)
        self._loaded = self._shared.acquire(lambda: _Loaded(self._stage), tag=repr(self._stage.describe()))

    def process(self, problems: list[TrackProblem]):
        start = time.perf_counter()
        fits = fit_tracks(self._loaded.stage, problems)
        elapsed = time.perf_counter() - start
        metrics.seconds("bundle_adjust", elapsed)
        LOGGER.info("bundle-adjusted %d tracks (%d frames) in %.1f s: %d ok", len(problems),
                    sum(p.num_frames for p in problems), elapsed, sum(f.status == "ok" for f in fits))
        metrics.inc("ba_batches")
        metrics.observe("ba_batch_tracks", len(problems))
        metrics.observe("ba_batch_frames", sum(p.num_frames for p in problems))
        for problem, fit in zip(problems, fits):
            metrics.inc(f"tracks_{'fitted' if fit.status == 'ok' else fit.status}")
            if fit.status == "ok":
                metrics.observe("ba_iterations", fit.iterations)
            yield problem.clip_id, (problem, fit)


def batch_problems(max_frames: int = 32768, max_tracks: int = 256) -> beam.PTransform:
    """The batching boundary in front of bundle adjustment.

    Batches hold up to ``max_frames`` frames and ``max_tracks`` tracks. Their size is
    Beam's adaptive one (it grows while a batch takes well under Beam's target duration),
    so the first tracks are fitted while perception still runs instead of waiting for a full
    ``max_frames`` batch or the end of the bundle; a fit does not depend on its batch
    (``optimize.bundle_adjust``), so batch sizes change only the speed. Inside a batch the
    solver groups tracks by length.
    """
    return beam.BatchElements(
        min_batch_size=1,
        max_batch_size=max_frames,
        element_size_fn=lambda problem: problem.num_frames,
    ) | "CapTracks" >> beam.FlatMap(lambda batch: [batch[i : i + max_tracks] for i in range(0, len(batch), max_tracks)])
