"""The commit-time verdict: the rows of a fitted clip, written before the run's threshold is known.

Fits are committed as soon as their clip is done, before the run's score threshold is
known (a best-fraction threshold needs every track of the output). So the job writes, per
clip, rows whose selection is *pending*: every fitted track in ``tracks/`` with
``selection_reason`` = ``eligible`` (any threshold could select it) or the reason no
threshold can (too_short, diverged, ...; :func:`pipeline.dataset.selection.rules.eligibility`),
and the frames of its eligible tracks (or of every ``ok`` track with ``--frames all``) in
``frames/``. A clip none of whose tracks is eligible is final at commit time and gets its
``rejected/`` row then. :mod:`pipeline.dataset.selection.table` decides the pending ones.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace

import pyarrow as pa

from pipeline.dataset.rows import ClipOutcome, failed_outcome, frames_table, rejected_table, tracks_table, truncate_message
from pipeline.dataset.selection.rules import (
    SelectionConfig, TrackReason, bound_note, clip_verdict, expand_pieces, select_track,
)
from pipeline.records import PerceptionResult, RejectReason, TrackFit, TrackProblem

ELIGIBLE = "eligible"
"""``tracks.selection_reason`` at commit time of a track any score threshold could select."""
PENDING = "pending"
"""Manifest outcome of a committed clip with an eligible track: kept or not is decided by
the selection."""
COMMIT_FRAMES_MODES = ("eligible", "inliers", "all")
FRAMES_MODE_ALIASES = {"selected": "eligible"}


def commit_frames_mode(mode: str) -> str:
    """The commit-time frames mode of a ``--frames`` value ("selected" is the old name of
    "eligible": the selection is not known when frames are written)."""
    mode = FRAMES_MODE_ALIASES.get(mode, mode)
    if mode not in COMMIT_FRAMES_MODES:
        raise ValueError(f"--frames {mode!r}: use one of {COMMIT_FRAMES_MODES}")
    return mode


def _pending(problem: TrackProblem, fit: TrackFit, config: SelectionConfig):
    """Commit-time verdict: the eligibility reason, or ``eligible`` (never ``selected``)."""
    verdict = select_track(problem, fit, config, sys.float_info.max)  # any finite score passes
    if verdict.reason == TrackReason.SELECTED:
        return replace(verdict, selected=False, reason=ELIGIBLE, threshold=float("nan"))
    return replace(verdict, threshold=float("nan"))


def commit_outcome(
    header: PerceptionResult,
    fitted: Sequence[tuple[TrackProblem, TrackFit]],
    config: SelectionConfig,
    frames_mode: str = "eligible",
) -> ClipOutcome:
    """The rows of a fitted clip written as soon as its tracks are fitted.

    Args:
        header: the clip's perception result (clip, frame and people counts).
        fitted: (problem, fit) of every track of the clip.
        config: selection settings (only the eligibility checks are applied here).
        frames_mode: "eligible" (every frame of the eligible tracks), "inliers" (their
            inlier frames) or "all" (every frame of every track whose fit is ``ok``).

    Returns:
        A ClipOutcome with outcome "pending" when a track is eligible (the selection
        decides), else "rejected"/"failed" with its ``rejected/`` row.
    """
    frames_mode = commit_frames_mode(frames_mode)
    clip = header.clip
    if not fitted:
        return failed_outcome(clip, "bundle_adjust", f"clip {clip.clip_id}: no track reached bundle adjustment")
    # a track cut at identity switches brings its pieces, each a track with rows of its own
    expanded = [pf for problem, fit in fitted for pf in expand_pieces(problem, fit)]
    verdicts = [(p, f, _pending(p, f, config)) for p, f in sorted(expanded, key=lambda pf: pf[1].track_id)]
    source = header.keypoint_source or next((p.meta["keypoint_source"] for p, _ in fitted if "keypoint_source" in p.meta), "")
    frame_tables = []
    for problem, fit, verdict in verdicts:
        eligible = verdict.reason == ELIGIBLE
        if eligible or (frames_mode == "all" and fit.status == "ok" and verdict.reason not in (TrackReason.DIVERGED, TrackReason.FAILED, TrackReason.SPLIT)):
            frame_tables.append(frames_table(clip, problem, fit, verdict, frames_mode == "inliers", source))
    frames = pa.concat_tables(frame_tables, promote_options="default") if frame_tables else None
    tracks = tracks_table(clip, verdicts, header, source)
    eligible = sum(v.reason == ELIGIBLE for _, _, v in verdicts)
    rejected = None
    if eligible:
        outcome, reason, stage = PENDING, None, "select"
    else:
        outcome, reason = clip_verdict([v for _, _, v in verdicts])
        stage = "bundle_adjust" if outcome == "failed" or reason == RejectReason.ALL_TRACKS_DIVERGED else "select"
        messages = f"{clip.uri}: " + "; ".join(
            f"track {f.track_id}: {v.reason}" + bound_note(f, v, config)
            + (f" ({truncate_message(f.message, 300)})" if f.message and v.reason in (TrackReason.FAILED, TrackReason.DIVERGED) else "")
            for _, f, v in verdicts
        )
        rejected = rejected_table(clip, outcome, reason, stage, messages, header.num_frames, header.max_people,
                                  len(verdicts), header, source)
    return ClipOutcome(
        clip.clip_id, outcome, reason, stage, frames=frames, tracks=tracks, rejected=rejected,
        num_tracks=len(verdicts), num_selected_tracks=0,
        num_frames_written=0 if frames is None else frames.num_rows,
        num_inlier_frames=0, track_reasons=tuple(v.reason for _, _, v in verdicts), keypoint_source=source,
    )
