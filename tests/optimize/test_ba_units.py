"""Size-invariant units, inliers on own detections, identity-switch splitting (issues 10 and 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.synth.tracks import DetectionNoise, InitNoise, make_track, make_tracks
from optimize.bundle_adjust import SPLIT_TRACK_ID_STRIDE, bundle_adjust
from optimize.config import BAConfig
from optimize.problem import TrackProblem
from optimize.track_metrics import identity_switches, keypoint_error_px, relative_error, track_scale
from pipeline.dataset.selection.rules import SelectionConfig, TrackReason, expand_pieces, select_track

STEADY = DetectionNoise(body_swap=0.0, limb_swap=0.0, drop_frame=0.0, outlier=0.0, distractor=False)
MILD = InitNoise(joint_bias=0.05, joint_noise=0.05, orient_noise=0.03, flip_on=0.0)


@pytest.fixture(scope="module")
def prior(standin):
    from models.gmm_prior import GMMPrior

    return GMMPrior.from_file(standin.gmm)


def zoomed(problem: TrackProblem, k: float) -> TrackProblem:
    """The same track filmed k times larger: every pixel value (and the frame) x k."""
    def px(a):
        a = np.array(a, dtype=np.float32, copy=True)
        a[..., :2] *= k
        return a

    width, height = problem.image_size
    return problem.replace(
        candidates=px(problem.candidates), keypoints=px(problem.keypoints), boxes=problem.boxes * np.float32(k),
        init_camera=problem.init_camera * np.float32(k), image_size=(width * k, height * k),
    )


@pytest.mark.slow
def test_e_norm_and_inliers_do_not_depend_on_pixel_size(body_model, prior):
    problem = make_track(body_model, "walking", 10, seed=13).problem
    scales = (1.0, 0.5, 2.0, 3.0)
    config = BAConfig(max_iter=15, dtype="float64")
    fits = bundle_adjust([zoomed(problem, k) for k in scales], body_model, prior, config)
    base = fits[0]
    assert base.status == "ok" and base.inlier.any()
    for k, fit in zip(scales[1:], fits[1:]):
        assert fit.status == "ok"
        assert fit.e_norm == pytest.approx(base.e_norm, rel=0.02), k
        assert np.mean(fit.inlier != base.inlier) <= 0.02, k
        # image-space outputs are in the zoomed image's pixels
        assert np.allclose(fit.camera, base.camera * k, rtol=2e-3, atol=2e-2 * k)
        assert np.allclose(fit.reprojection_error_px, base.reprojection_error_px * k, rtol=2e-2, atol=1e-3 * k)
        assert np.allclose(fit.reprojection_error_rel, base.reprojection_error_rel, rtol=2e-2, atol=1e-5)
    # the paper's pixel units are not invariant: the same fit at 3x zoom costs more
    pixels = bundle_adjust([problem, zoomed(problem, 3.0)], body_model, prior, config.replace(units="pixels"))
    assert pixels[1].e_norm > 1.2 * pixels[0].e_norm


def test_track_without_a_valid_scale_fails_with_a_reason(body_model, prior):
    problem = make_track(body_model, "walking", 6, seed=2, detection=STEADY).problem
    no_scale = problem.replace(init_camera=np.zeros_like(problem.init_camera),
                               keypoints=np.zeros_like(problem.keypoints))
    assert track_scale(no_scale.init_camera, no_scale.selected, no_scale.keypoints) is None
    assert track_scale(problem.init_camera, np.full(6, -1), problem.keypoints) is None
    (fit,) = bundle_adjust([no_scale], body_model, prior, BAConfig(max_iter=5))
    assert fit.status == "failed" and "no valid person scale" in fit.message
    assert not math.isnan(fit.e_norm)
    # the keypoint extent is the fallback when the init camera has no scale
    negative = problem.replace(init_camera=-np.abs(problem.init_camera))
    assert track_scale(negative.init_camera, negative.selected, negative.keypoints) > 0


def test_pixel_and_relative_error_helpers():
    keypoints = np.zeros((2, 17, 3))
    keypoints[..., 2] = 1.0
    keypoints[1, :, 2] = 0.0  # no detection
    reprojection = np.zeros((2, 17, 2))
    reprojection[..., 0] = 3.0
    reprojection[..., 1] = 4.0
    error = keypoint_error_px(reprojection, keypoints)
    assert error[0] == pytest.approx(5.0) and math.isnan(error[1])
    assert relative_error(np.array([17.0]), np.array([100.0]))[0] == pytest.approx(0.1)  # 17 px of 170 px


def test_inliers_only_on_own_detections_and_skipped_frames_follow_the_track(body_model, prior):
    noisy = DetectionNoise(drop_frame=0.35)  # a distractor in every frame, a third of the frames skipped
    problem = make_track(body_model, "walking", 16, seed=5, detection=noisy).problem
    has = problem.has_detection
    assert (~has).sum() >= 3 and problem.candidate_mask[~has].any()
    (fit,) = bundle_adjust([problem], body_model, prior, BAConfig(max_iter=15))
    assert fit.status == "ok"
    assert not fit.inlier[~has].any()
    assert fit.inlier.sum() <= has.sum()
    assert (fit.matched_candidate[~has] == -1).all()  # no snapping onto the distractor
    assert np.isnan(fit.reprojection_error_px[~has]).all()
    verdict = select_track(problem, fit, SelectionConfig(min_frames=1), threshold=math.inf)
    assert verdict.num_inlier_frames <= verdict.num_detected_frames


def _two_people(body_model, T: int, switch: int) -> TrackProblem:
    """Track A's detections up to ``switch``, then person B's, 1.5 heights to the side."""
    a = make_track(body_model, "walking", T, seed=31, detection=STEADY, regressor=MILD).problem
    b = make_track(body_model, "boxing", T, seed=32, detection=STEADY, regressor=MILD).problem
    shift = 1.5 * 1.7 * float(np.median(a.init_camera[:, 0, 0]))

    def moved(x, shift_x):
        x = np.array(x, copy=True)
        x[..., 0] += shift_x
        return x

    def cat(x, y):
        return np.concatenate([x[:switch], y[switch:]])

    b_kp = moved(b.keypoints, shift - np.median(b.keypoints[..., 0]) + np.median(a.keypoints[..., 0]))
    offset = float(b_kp[0, 0, 0] - b.keypoints[0, 0, 0])
    b_cam = b.init_camera.copy()
    b_cam[..., 1] += offset
    return a.replace(
        keypoints=cat(a.keypoints, b_kp), candidates=cat(a.candidates, moved(b.candidates, offset)),
        init_pose=cat(a.init_pose, b.init_pose), init_betas=cat(a.init_betas, b.init_betas),
        init_camera=cat(a.init_camera, b_cam), boxes=cat(a.boxes, moved(b.boxes, offset)),
    )


def test_identity_switch_is_split_and_short_pieces_are_rejected(body_model, prior):
    problem = _two_people(body_model, 20, switch=14)
    assert identity_switches(problem.keypoints, problem.selected, problem.init_camera, problem.fps) == [14]
    (fit,) = bundle_adjust([problem], body_model, prior, BAConfig(max_iter=10))
    assert fit.status == "split" and fit.switch_frames == (14,)
    # a jump of 1.5 heights: cut on the detections' evidence, without a confirmation fit
    assert fit.switch_candidates == (14,) and math.isnan(fit.switch_gain[0])
    first, second = fit.pieces
    assert (first.num_frames, second.num_frames) == (14, 6)
    assert {first.track_id, second.track_id} == {SPLIT_TRACK_ID_STRIDE, 2 * SPLIT_TRACK_ID_STRIDE}
    assert first.parent_track_id == second.parent_track_id == 0 and second.split_frame == 14
    assert first.status == second.status == "ok"
    config = SelectionConfig(mode="threshold", e_norm_threshold=1e12, min_frames=8, min_inlier_fraction=0.0)
    reasons = [select_track(p, f, config, threshold=1e12).reason for p, f in expand_pieces(problem, fit)]
    assert reasons == [TrackReason.SPLIT, TrackReason.SELECTED, TrackReason.IDENTITY_SWITCH]
    # the paper's objective follows whoever the detections are: no split, one track
    (paper,) = bundle_adjust([problem], body_model, prior, BAConfig.paper(max_iter=5))
    assert paper.status == "ok" and not paper.pieces


def test_no_switch_on_ordinary_tracks_with_swaps_and_dropped_frames(body_model):
    for track in make_tracks(body_model, "all", 6, 60, seed=3):
        p = track.problem
        assert identity_switches(p.keypoints, p.selected, p.init_camera, p.fps) == [], track.motion
