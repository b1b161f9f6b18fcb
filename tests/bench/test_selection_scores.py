"""bench.selection's candidate scores: the default score's frame form is the fit's frame score."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from bench.selection import track_scores


def _fit(pred, score, status="ok"):
    T = len(pred)
    return SimpleNamespace(
        status=status, pose=np.zeros((T, 72)), energies={"total": 10.0 * T}, trajectory_length=1.0,
        frame_energies={"total": np.full(T, 10.0)}, pred_err_mm=np.asarray(pred, np.float32),
        pred_err_track_mm=40.0, frame_score_mm=np.asarray(score, np.float32))


def test_the_default_frame_form_is_the_frame_score_and_its_mean_a_track_candidate():
    fit = _fit([20.0, 30.0, np.inf, 40.0], [25.0, 35.0, np.inf, 45.0])
    track, frame = track_scores(fit, 4)
    np.testing.assert_allclose(frame["predicted_error"], [25.0, 35.0, np.inf, 45.0])
    np.testing.assert_allclose(frame["posterior_only"], [20.0, 30.0, np.inf, 40.0])
    assert track["predicted_error"] == track["posterior_only"] == 40.0  # the track's predicted error
    assert track["frame_score_mean"] == pytest.approx(35.0)  # over the determined frames
    # half or more undetermined: the track's mean frame score is undetermined too
    track, _ = track_scores(_fit([20.0, np.inf, np.inf, 40.0], [25.0, np.inf, np.inf, 45.0]), 4)
    assert math.isinf(track["frame_score_mean"])
