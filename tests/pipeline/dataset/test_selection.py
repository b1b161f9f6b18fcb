"""Track selection: eligibility reasons, fixed threshold, best fraction of the run, clip verdicts."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from pipeline.records import RejectReason
from pipeline.dataset.selection.rules import (
    SelectionConfig,
    TrackReason,
    clip_verdict,
    eligibility,
    fraction_threshold,
    run_threshold,
    select_track,
    threshold_from_flags,
)
from helpers.scripted import make_fit, make_problem


@pytest.fixture
def problem():
    return make_problem("c_000000_000010", 0, 20, seed=1)


def test_threshold_mode(problem):
    config = SelectionConfig(mode="threshold", e_norm_threshold=10.0, min_inlier_fraction=0.0)
    good = select_track(problem, make_fit(problem, 9.5), config, run_threshold([], config))
    bad = select_track(problem, make_fit(problem, 10.5), config, run_threshold([], config))
    assert (good.selected, good.reason, good.threshold) == (True, TrackReason.SELECTED, 10.0)
    assert (bad.selected, bad.reason) == (False, TrackReason.E_NORM_ABOVE_THRESHOLD)
    assert good.num_detected_frames == 19  # one skipped frame
    assert good.num_inlier_frames == int(make_fit(problem, 9.5).inlier.sum())


def test_fraction_threshold_keeps_the_best_fraction():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert fraction_threshold(values, 0.1) == 1.0
    assert fraction_threshold(values, 0.25) == 3.0  # ceil(2.5) = 3 tracks
    assert fraction_threshold(values, 1.0) == 10.0
    assert fraction_threshold([7.0], 0.01) == 7.0  # at least one
    assert math.isnan(fraction_threshold([], 0.5))
    assert fraction_threshold([1.0, math.inf, 2.0], 0.5) == 1.0  # inf is never eligible


def test_fraction_mode_reason(problem):
    config = SelectionConfig(mode="fraction", keep_fraction=0.5, min_inlier_fraction=0.0)
    threshold = run_threshold([1.0, 2.0, 3.0, 4.0], config)
    assert threshold == 2.0
    assert select_track(problem, make_fit(problem, 2.0), config, threshold).selected
    verdict = select_track(problem, make_fit(problem, 3.0), config, threshold)
    assert verdict.reason == TrackReason.BELOW_BEST_FRACTION
    assert not select_track(problem, make_fit(problem, 1.0), config, float("nan")).selected


def test_eligibility_reasons(problem):
    config = SelectionConfig(min_frames=8, min_inlier_fraction=0.5)
    assert eligibility(problem, make_fit(problem, 1.0), config) is None
    assert eligibility(problem, make_fit(problem, 1.0, status="diverged"), config) == TrackReason.DIVERGED
    assert eligibility(problem, make_fit(problem, 1.0, status="failed"), config) == TrackReason.FAILED
    nan_fit = make_fit(problem, 1.0).replace(pose=np.full((20, 72), np.nan, np.float32))
    assert eligibility(problem, nan_fit, config) == TrackReason.DIVERGED
    short = make_problem("c_000000_000010", 1, 6, seed=2)
    assert eligibility(short, make_fit(short, 1.0), config) == TrackReason.TOO_SHORT
    still = make_fit(problem, 1.0).replace(trajectory_length=0.0, e_norm=math.inf)
    assert eligibility(problem, still, config) == TrackReason.NOT_MOVING
    outliers = make_fit(problem, 1.0).replace(inlier=np.zeros(20, bool))
    assert eligibility(problem, outliers, config) == TrackReason.TOO_FEW_INLIERS
    verdict = select_track(problem, outliers, config, 1e9)
    assert (verdict.selected, verdict.reason) == (False, TrackReason.TOO_FEW_INLIERS)


def test_a_fit_stopped_at_its_budget_is_rejected_as_not_converged(problem):
    config = SelectionConfig(mode="threshold", e_norm_threshold=5.0, min_inlier_fraction=0.0)
    capped = make_fit(problem, 1.0).replace(converged=False, iterations=50)
    assert eligibility(problem, capped, config) == TrackReason.NOT_CONVERGED
    verdict = select_track(problem, capped, config, 5.0)  # the best score of the run: still not selected
    assert (verdict.selected, verdict.reason) == (False, TrackReason.NOT_CONVERGED)
    assert clip_verdict([verdict]) == ("rejected", RejectReason.NO_TRACK_SELECTED)


def test_clip_verdicts(problem):
    config = SelectionConfig(mode="threshold", e_norm_threshold=5.0, min_inlier_fraction=0.0)
    kept = select_track(problem, make_fit(problem, 1.0), config, 5.0)
    above = select_track(problem, make_fit(problem, 9.0), config, 5.0)
    diverged = select_track(problem, make_fit(problem, 1.0, status="diverged"), config, 5.0)
    failed = select_track(problem, make_fit(problem, 1.0, status="failed"), config, 5.0)
    assert clip_verdict([above, kept]) == ("kept", None)
    assert clip_verdict([above, diverged]) == ("rejected", RejectReason.NO_TRACK_SELECTED)
    assert clip_verdict([diverged, failed]) == ("rejected", RejectReason.ALL_TRACKS_DIVERGED)
    assert clip_verdict([failed, failed]) == ("failed", RejectReason.FAILED)


def test_bad_config():
    with pytest.raises(ValueError, match="selection mode"):
        SelectionConfig(mode="best")
    with pytest.raises(ValueError, match="keep_fraction"):
        SelectionConfig(keep_fraction=0.0)
    with pytest.raises(ValueError, match="pass --selection_threshold"):
        SelectionConfig(mode="threshold")
    assert SelectionConfig().mode == "fraction" and SelectionConfig().keep_fraction == 0.1


def test_the_threshold_flag_and_its_deprecated_old_name(caplog):
    """--selection_threshold, or --e_norm_threshold (its old name) with one warning naming the
    new flag; both at once must agree. `vid2mesh select` parses both."""
    from beam_jobs.cli import build_parser

    with caplog.at_level(logging.WARNING, logger="pipeline.dataset.selection.rules"):
        assert threshold_from_flags(30.0, None) == 30.0 and threshold_from_flags(None, None) is None
        assert not caplog.records
        assert threshold_from_flags(None, 12.5) == 12.5 == threshold_from_flags(12.5, 12.5, warn=False)
    assert len(caplog.records) == 1 and "--selection_threshold 12.5" in caplog.records[0].getMessage()
    with pytest.raises(ValueError, match="pass only --selection_threshold"):
        threshold_from_flags(30.0, 12.5)
    for flag in ("--selection_threshold", "--e_norm_threshold"):
        args = build_parser().parse_args(["select", "out", flag, "7"])
        assert threshold_from_flags(args.selection_threshold, args.e_norm_threshold, warn=False) == 7.0
