"""optimize.uncertainty: the selected inverse against a dense inverse, and the predicted error of fits."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers.blocks import random_bordered_system
from models.gmm_prior import GMMPrior
from optimize.blocks import assemble_dense
from optimize.bundle_adjust import bundle_adjust
from optimize.config import BAConfig
from optimize.uncertainty import joint_variances, predicted_joint_error_mm, selected_inverse
from pipeline.synth.tracks import DetectionNoise, make_track


def _bordered_spd(B: int, T: int, n: int, m: int, seed: int):
    H, blocks, _ = random_bordered_system(B, T, n, m, seed)
    return H, blocks


@pytest.mark.parametrize("T", [1, 2, 5, 9])
def test_selected_inverse_matches_the_dense_inverse(T):
    B, n, m = 3, 6, 4
    H, blocks = _bordered_spd(B, T, n, m, seed=T)
    dense = torch.linalg.inv(H)
    got = selected_inverse(*blocks)
    assert got.ok.all()
    for t in range(T):
        rows = slice(t * n, (t + 1) * n)
        torch.testing.assert_close(got.frames[:, t], dense[:, rows, rows], rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(got.cross[:, t], dense[:, rows, T * n:], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(got.border, dense[:, T * n:, T * n:], rtol=1e-9, atol=1e-11)


def test_masked_frames_are_decoupled():
    """Padded frames: the real frames' blocks are those of the unpadded system."""
    B, T, n, m = 2, 6, 5, 3
    H, blocks = _bordered_spd(B, T, n, m, seed=7)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 4:] = False
    got = selected_inverse(*blocks, frame_mask=mask)
    short = [b[1:2, :4] for b in blocks[:3]] + [blocks[3][1:2]]
    dense = torch.linalg.inv(assemble_dense(*short))
    for t in range(4):
        rows = slice(t * n, (t + 1) * n)
        torch.testing.assert_close(got.frames[1, t], dense[0, rows, rows], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(got.border[1], dense[0, 4 * n:, 4 * n:], rtol=1e-9, atol=1e-11)


def test_propagated_variance_matches_the_dense_product():
    B, T, n, m, R = 2, 4, 5, 3, 6
    H, blocks = _bordered_spd(B, T, n, m, seed=3)
    g = torch.Generator().manual_seed(0)
    jf = torch.randn(B, T, R, n, generator=g, dtype=torch.float64)
    jb = torch.randn(B, T, R, m, generator=g, dtype=torch.float64)
    trace, ok = joint_variances(*blocks, torch.ones(B, T, dtype=torch.bool), jf, jb)
    dense = torch.linalg.inv(H)
    for t in range(T):
        J = torch.zeros(B, R, T * n + m, dtype=torch.float64)
        J[:, :, t * n:(t + 1) * n] = jf[:, t]
        J[:, :, T * n:] = jb[:, t]
        rows = torch.diagonal(J @ dense @ J.transpose(1, 2), dim1=-2, dim2=-1)
        torch.testing.assert_close(trace[:, t], rows.view(B, R // 3, 3).sum(-1))
    assert ok.all()


def test_a_singular_normal_matrix_is_undetermined_never_small():
    B, T, n, m = 2, 4, 5, 3
    _, (diagonal, lower, border, corner) = _bordered_spd(B, T, n, m, seed=1)
    diagonal = diagonal.clone()
    lower = lower.clone()
    border = border.clone()
    # track 1: frame 2's first variable touches nothing (a zero row and column)
    diagonal[1, 2, 0, :] = diagonal[1, 2, :, 0] = 0.0
    lower[1, 2, 0, :] = lower[1, 3, :, 0] = 0.0
    border[1, 2, 0, :] = 0.0
    jf = torch.ones(B, T, 3, n, dtype=torch.float64)
    jb = torch.zeros(B, T, 3, m, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.bool)
    trace, ok = joint_variances(diagonal, lower, border, corner, mask, jf, jb)
    assert ok.tolist() == [True, False]
    error = predicted_joint_error_mm(trace, ok, mask)
    assert torch.isfinite(error[0]).all() and torch.isinf(error[1]).all()
    # an indefinite matrix too
    _, (diagonal, lower, border, corner) = _bordered_spd(1, T, n, m, seed=2)
    trace, ok = joint_variances(-diagonal, lower, border, corner, mask[:1], jf[:1], jb[:1])
    assert not ok.any() and torch.isinf(predicted_joint_error_mm(trace, ok, mask[:1])).all()


# --- fits ---------------------------------------------------------------------------------

STILL = DetectionNoise(jitter=0.1, miss_keypoint=0.0, outlier=0.0, body_swap=0.0, limb_swap=0.0, drop_frame=0.0,
                       distractor=False)


@pytest.fixture(scope="module")
def prior(standin):
    return GMMPrior.from_file(standin.gmm)


def _fit(problem, body_model, prior):
    (fit,) = bundle_adjust([problem], body_model, prior, BAConfig())
    assert fit.status == "ok"
    return fit


def test_a_fit_has_a_finite_predicted_error_and_inf_without_a_detection(body_model, prior):
    track = make_track(body_model, "walking", 16, seed=2, detection=STILL)
    selected = track.problem.selected.copy()
    selected[7] = -1  # the tracker lost the person on frame 7
    fit = _fit(track.problem.replace(selected=selected), body_model, prior)
    assert fit.pred_err_mm.shape == (16,) and fit.pred_err_mm.dtype == np.float32
    assert math.isinf(fit.pred_err_mm[7])
    others = np.delete(fit.pred_err_mm, 7)
    assert np.isfinite(others).all() and (others > 1.0).all() and (others < 500.0).all()


def test_removing_keypoints_raises_the_predicted_error(body_model, prior):
    track = make_track(body_model, "boxing", 16, seed=4, detection=STILL)
    base = _fit(track.problem, body_model, prior)
    # frames 5-9 lose their arm and leg keypoints (confidence 0): those limbs are then
    # determined by the prior and the neighbouring frames only
    candidates = track.problem.candidates.copy()
    limbs = [7, 8, 9, 10, 13, 14, 15, 16]
    candidates[5:10, :, limbs, 2] = 0.0
    keypoints = track.problem.keypoints.copy()
    keypoints[5:10, limbs, 2] = 0.0
    blind = _fit(track.problem.replace(candidates=candidates, keypoints=keypoints), body_model, prior)
    ratio = blind.pred_err_mm / base.pred_err_mm
    assert (ratio[5:10] > 1.05).all()  # the init and temporal terms still hold the limbs
    assert ratio[5:10].min() > ratio[:2].max() and ratio[5:10].min() > ratio[-2:].max()


def test_track_summary_is_the_mean_over_determined_frames_and_inf_when_they_are_few():
    from types import SimpleNamespace

    from optimize.track_metrics import predicted_error

    fit = lambda values, status="ok": SimpleNamespace(status=status, pred_err_mm=np.asarray(values, np.float32))  # noqa: E731
    assert predicted_error(fit([10.0, 20.0, np.inf, 30.0])) == pytest.approx(20.0)
    assert math.isinf(predicted_error(fit([10.0, np.inf, np.inf, 30.0])))  # half undetermined
    assert math.isinf(predicted_error(fit([10.0, 20.0], status="diverged")))
    assert math.isinf(predicted_error(SimpleNamespace(status="ok", pred_err_mm=None)))


def test_a_detection_gap_counts_against_the_track(body_model, prior):
    """The track summary covers the frames a gap leaves to the priors: their propagated error
    grows away from the gap's edges, and the track's predicted error rises with it, where
    a mean over the detected frames alone would not see the gap."""
    from optimize.track_metrics import predicted_error

    track = make_track(body_model, "walking", 24, seed=3, detection=STILL)
    full = _fit(track.problem, body_model, prior)
    selected = track.problem.selected.copy()
    selected[8:16] = -1  # the person is hidden for 8 frames
    gap = _fit(track.problem.replace(selected=selected), body_model, prior)
    assert np.isinf(gap.pred_err_mm[8:16]).all()  # the per-frame column says undetermined
    assert math.isfinite(gap.pred_err_track_mm)
    detected_only = float(np.mean(gap.pred_err_mm[np.isfinite(gap.pred_err_mm)]))
    assert predicted_error(gap) > 1.1 * detected_only  # the gap frames: about 1.4x the detected ones
    assert predicted_error(gap) > 1.1 * predicted_error(full)
    summary = SimpleNamespace(status="ok", pred_err_mm=np.asarray([10.0, np.inf, 30.0], np.float32), pred_err_track_mm=50.0)
    assert predicted_error(summary) == 50.0


def test_a_fit_without_an_inlier_frame_is_undetermined_and_a_short_sound_one_is_not(body_model, prior):
    """Every frame capped (reprojection energy above tau_R: the term is constant there) leaves
    the camera's common offset to no term, so H is singular and the whole track is inf; the
    same 12-frame track fitted with the default continuation is determined."""
    from optimize.track_metrics import predicted_error

    track = make_track(body_model, "walking", 12, seed=5, detection=STILL)
    sound = _fit(track.problem, body_model, prior)
    assert np.isfinite(sound.pred_err_mm).all() and 1.0 < predicted_error(sound) < 500.0
    (capped,) = bundle_adjust([track.problem], body_model, prior, BAConfig(tau_r_px=1e-3, tau_r_schedule=(1.0,)))
    assert capped.status == "ok"
    assert np.isinf(capped.pred_err_mm).all() and math.isinf(predicted_error(capped))
