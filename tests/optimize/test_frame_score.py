"""The frame form of the selection score: the fit-to-init disagreement and frame_score_mm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.gmm_prior import GMMPrior
from optimize.bundle_adjust import bundle_adjust
from optimize.config import BAConfig
from optimize.track_metrics import frame_score_mm, init_disagreement_mm, predicted_error
from pipeline.synth.tracks import DetectionNoise, make_track


def test_frame_score_is_the_geometric_mean_of_three_errors_in_mm():
    p = np.array([20.0, 20.0, 40.0])
    d = np.array([0.0, 15.0, 30.0])
    got = frame_score_mm(p, 30.0, d)
    np.testing.assert_allclose(got, np.cbrt(p * 30.0 * np.sqrt(p**2 + d**2)))
    assert got[0] == pytest.approx(np.cbrt(20.0 * 20.0 * 30.0))  # no disagreement: p, p and P
    # millimetres in, millimetres out: scaling every input scales the score
    np.testing.assert_allclose(frame_score_mm(p * 1000.0, 30.0 * 1000.0, d * 1000.0), got * 1000.0)
    # between the smallest and the largest of its three estimates
    assert (got >= np.minimum(p, 30.0) - 1e-9).all() and (got <= np.maximum(np.hypot(p, d), 30.0) + 1e-9).all()
    # a larger disagreement never lowers it
    assert (np.diff(frame_score_mm(np.full(4, 20.0), 30.0, np.array([0.0, 5.0, 50.0, 500.0]))) > 0).all()


def test_undetermined_frames_and_tracks_stay_inf():
    p = np.array([20.0, np.inf, np.nan, 20.0], np.float32)
    d = np.array([10.0, 10.0, 10.0, np.nan])
    got = frame_score_mm(p, 30.0, d)
    assert math.isfinite(got[0]) and np.isinf(got[1:3]).all()
    assert got[3] == pytest.approx(np.cbrt(20.0 * 20.0 * 30.0))  # no init on the frame: d counts 0
    assert np.isinf(frame_score_mm(p, math.inf, d)).all()  # the track is undetermined: every frame is
    assert np.isinf(frame_score_mm(p, math.nan, d)).all()
    assert np.isinf(frame_score_mm(np.array([20.0]), 30.0, np.array([np.inf]))).all()


def test_init_disagreement_is_a_pelvis_aligned_mean_joint_distance():
    g = torch.Generator().manual_seed(0)
    fit = torch.randn(1, 3, 24, 3, generator=g, dtype=torch.float64) * 0.3
    init = torch.randn(1, 3, 2, 24, 3, generator=g, dtype=torch.float64)  # two candidates
    init[0, 0, 1] = fit[0, 0] + torch.tensor([0.5, -0.2, 1.0], dtype=torch.float64)  # the same pose moved
    init[0, 1, 0] = fit[0, 1]
    init[0, 1, 0, 5, 0] += 0.024  # one joint 24 mm off: 1 mm over 24 joints
    selected = torch.tensor([[1, 0, -1]])
    got = init_disagreement_mm(fit, init, selected)
    assert got.shape == (1, 3) and got.dtype == torch.float64
    assert got[0, 0].item() == pytest.approx(0.0, abs=1e-9)  # a translation is no disagreement
    assert got[0, 1].item() == pytest.approx(1.0, rel=1e-6)
    assert math.isnan(got[0, 2].item())  # no detection on the frame


STILL = DetectionNoise(jitter=0.1, miss_keypoint=0.0, outlier=0.0, body_swap=0.0, limb_swap=0.0, drop_frame=0.0,
                       distractor=False)


@pytest.fixture(scope="module")
def prior(standin):
    return GMMPrior.from_file(standin.gmm)


def test_a_fit_carries_its_frame_score(body_model, prior):
    track = make_track(body_model, "walking", 16, seed=2, detection=STILL)
    selected = track.problem.selected.copy()
    selected[7] = -1  # the tracker lost the person on frame 7
    (fit,) = bundle_adjust([track.problem.replace(selected=selected)], body_model, prior, BAConfig())
    assert fit.status == "ok"
    assert fit.frame_score_mm.shape == (16,) and fit.frame_score_mm.dtype == np.float32
    assert fit.init_disagreement_mm.shape == (16,) and math.isnan(fit.init_disagreement_mm[7])
    assert math.isinf(fit.frame_score_mm[7])  # undetermined stays inf
    others = np.delete(np.arange(16), 7)
    assert np.isfinite(fit.init_disagreement_mm[others]).all() and (fit.init_disagreement_mm[others] > 0).all()
    np.testing.assert_allclose(
        fit.frame_score_mm[others],
        frame_score_mm(fit.pred_err_mm, predicted_error(fit), fit.init_disagreement_mm)[others], rtol=1e-5)
    # never below the smallest of its parts
    floor = np.minimum(fit.pred_err_mm[others], predicted_error(fit))
    assert (fit.frame_score_mm[others] >= floor * (1 - 1e-5)).all()
