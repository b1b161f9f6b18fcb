"""Selection and rows: the run's E_norm threshold, then per-clip outcomes with their rows."""

from __future__ import annotations

import time

import apache_beam as beam

from pipeline.dataset.rows import ClipOutcome, failed_outcome, outcome_from_fits
from pipeline.dataset.selection import SelectionConfig, eligibility, run_threshold
from transforms import metrics


class RunThreshold(beam.PTransform):
    """(clip_id, (problem, fit)) -> one float: the E_norm threshold of the run (fixed, or
    the best-fraction threshold over every eligible track of the run)."""

    def __init__(self, config: SelectionConfig):
        super().__init__()
        self._config = config

    def expand(self, fits):
        config = self._config
        return (
            fits
            | "EligibleENorm" >> beam.FlatMap(lambda kv: [kv[1][1].e_norm] if eligibility(kv[1][0], kv[1][1], config) is None else [])
            | "AllENorms" >> beam.combiners.ToList()
            | "Threshold" >> beam.Map(lambda values: run_threshold(values, config))
        )


class SelectClipFn(beam.DoFn):
    """(clip_id, {"headers": [PerceptionResult], "fits": [(problem, fit), ...]}) -> ClipOutcome."""

    def __init__(self, config: SelectionConfig, frames_mode: str):
        self._config = config
        self._frames_mode = frames_mode

    def process(self, element, threshold: float):
        clip_id, grouped = element
        headers, fits = list(grouped["headers"]), list(grouped["fits"])
        start = time.perf_counter()
        if len(headers) != 1:  # cannot happen unless a stage emits a track of an unknown clip
            from pipeline.records import ClipRef

            clip = headers[0].clip if headers else ClipRef(clip_id=clip_id, uri="")
            yield failed_outcome(clip, "select", f"clip {clip_id}: {len(headers)} perception headers for {len(fits)} fits")
            return
        outcome = outcome_from_fits(headers[0], fits, self._config, threshold, self._frames_mode)
        metrics.seconds("select", time.perf_counter() - start)
        if any(fit.status == "ok" for _, fit in fits):
            metrics.inc("clips_fitted")
        metrics.inc("tracks_selected", outcome.num_selected_tracks)
        yield outcome


def count_outcome(outcome: ClipOutcome) -> ClipOutcome:
    """Count where each clip ended (kept + rejected + failed = clips in)."""
    metrics.inc(f"clips_{outcome.outcome}")
    if outcome.outcome != "kept":
        metrics.inc(f"rejected_{outcome.reason}")
    metrics.inc("frames_written", outcome.num_frames_written)
    metrics.inc("inlier_frames", outcome.num_inlier_frames)
    return outcome
