"""Beam Metrics of the job: one namespace, named counters and distributions per stage.

Counters (namespace :data:`NAMESPACE`): ``clips_in``, ``clips_decoded``, ``clips_no_person``,
``clips_crowded``, ``clips_perceived``, ``clips_fitted``, ``clips_kept``, ``clips_rejected``,
``clips_failed``, ``rejected_<reason>`` (one per reason code), ``tracks_found``,
``tracks_fitted``, ``tracks_diverged``, ``tracks_failed``, ``tracks_selected``,
``frames_decoded``, ``frames_written``, ``inlier_frames``, ``ba_batches``, ``ba_batch_retries``,
``shards_written``; as clips are committed, ``clips_committed`` and ``clips_pending`` (with an
eligible track: kept or not is decided by the selection at the end, which then counts
``clips_kept``, ``tracks_selected``, ``inlier_frames`` and the ``no_track_selected`` rejections).

Gauges: ``ba_batch_tracks_running`` and ``ba_batch_frames_running`` (the batch a worker is
fitting, 0 between batches), ``clips_committed_last`` (clips of the last committed shard).

Distributions: ``ba_iterations`` (per track), ``ba_batch_tracks``, ``ba_batch_frames``,
``track_frames``, and ``ms_<stage>`` wall milliseconds per stage (``ms_decode``, ``ms_detect``,
``ms_track``, ``ms_init``, ``ms_perceive`` per clip; ``ms_bundle_adjust`` per batch;
``ms_select`` per clip (its rows); ``ms_write`` per shard).

Every input clip ends in exactly one of ``clips_kept``, ``clips_rejected``, ``clips_failed``,
so they sum to ``clips_in``.
"""

from __future__ import annotations

from functools import cache

from apache_beam.metrics import Metrics

NAMESPACE = "vid2mesh"


@cache
def counter(name: str):
    return Metrics.counter(NAMESPACE, name)


@cache
def distribution(name: str):
    return Metrics.distribution(NAMESPACE, name)


def inc(name: str, n: int = 1) -> None:
    if n:
        counter(name).inc(int(n))


def observe(name: str, value: float) -> None:
    distribution(name).update(int(round(value)))


def seconds(stage: str, value: float) -> None:
    """Record a stage's wall time (seconds) as milliseconds in ``ms_<stage>``."""
    observe(f"ms_{stage}", 1000.0 * value)
