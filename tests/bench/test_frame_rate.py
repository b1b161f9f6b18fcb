"""The synthetic tracks at other frame rates and with the keypoint-only init, and the
frame-rate benchmark that uses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.synth.tracks import make_track, with_keypoint_init
from optimize.bundle_adjust import bundle_adjust
from optimize.config import BAConfig


def test_a_track_at_another_frame_rate_keeps_its_clock(body_model):
    for fps in (10.0, 23.976, 60.0):
        track = make_track(body_model, "walking", 12, seed=3, fps=fps)
        assert track.problem.fps == fps
        np.testing.assert_allclose(track.problem.frame_time, np.arange(12) / fps)
    # the same motion over the same seconds: a walker drifts as far in 1 s at 10 as at 50 fps
    slow = make_track(body_model, "walking", 11, seed=3, fps=10.0)
    fast = make_track(body_model, "walking", 51, seed=3, fps=50.0)
    assert slow.gt_camera[-1, 1] == pytest.approx(fast.gt_camera[-1, 1], abs=0.1 * slow.gt_camera[0, 0])


def test_keypoint_init_replaces_every_candidates_init(body_model):
    track = make_track(body_model, "walking", 20, seed=5)
    swapped = with_keypoint_init(track, body_model)
    problem = swapped.problem
    assert problem.init_source == "keypoints" and track.problem.init_source == "hmr"
    mask = problem.candidate_mask
    np.testing.assert_array_equal(problem.init_betas[mask], 0.0)  # the mean shape
    np.testing.assert_array_equal(problem.init_pose[mask][:, 3:], 0.0)  # the (stand-in) mean body pose
    assert (problem.init_camera[mask][:, 0] > 0).all()
    np.testing.assert_array_equal(problem.candidates, track.problem.candidates)  # detections unchanged
    assert swapped.init_joints.shape == track.init_joints.shape
    assert not np.allclose(swapped.init_joints, track.init_joints)
    fit = bundle_adjust([problem], body_model, None, BAConfig(solver="lm", use_prior=False))[0]
    assert fit.status == "ok"


def test_frame_rate_bench_quick_reports_every_row(standin, monkeypatch):
    from bench import frame_rate

    monkeypatch.setenv("VID2MESH_STANDIN_DIR", str(Path(standin.neutral).parent))
    result = frame_rate.main(["--quick", "--rates", "10,30", "--seconds", "1", "--tracks", "1"])
    rows = [r for r in result["rows"] if r["solver"] != "init"]
    assert [(r["fps"], r["frames"], r["widths"]) for r in rows] == [
        (10.0, 10, "per_second"), (10.0, 10, "per_frame"), (30.0, 30, "per_second"), (30.0, 30, "per_frame")]
    for row in rows:
        assert row["tracks"] >= 1 and row["failed_or_diverged"] == 0
        assert np.isfinite(row["mpjpe_mm"]) and row["mpjpe_mm"] > 0
        assert 0 < max(row["iterations"]) <= 2 * BAConfig().lm_max_iter
