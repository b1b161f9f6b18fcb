"""optimize.plausibility: the shape bound, per-joint pose density and anatomical limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.gmm_prior import GMMPrior
from optimize.plausibility import (
    DENSITY_QUANTILE, betas_absmax, density_thresholds, hinge_angles, implausible_fraction, joint_limit_violations,
    joint_log_density, pose_density_outliers,
)
from pipeline.synth.motions import BACKGROUND_MOTIONS, LABEL_MOTIONS, sample_motion


@pytest.fixture(scope="module")
def prior(standin):
    return GMMPrior.from_file(standin.gmm)


def _pose(**joints) -> np.ndarray:
    """(1, 72) pose with the given joints' axis-angles (name: joint index as 'j4')."""
    pose = np.zeros((1, 72))
    for name, value in joints.items():
        j = int(name[1:])
        pose[0, 3 * j:3 * j + 3] = value
    return pose


def test_betas_absmax():
    assert betas_absmax(np.array([0.5, -3.5, 1.0])) == 3.5
    assert math.isnan(betas_absmax(np.array([np.nan, 1.0])))


def test_density_threshold_flags_its_quantile_of_the_priors_own_samples(prior):
    thresholds = density_thresholds(prior)
    assert thresholds.shape == (23,) and density_thresholds(prior) is thresholds  # cached
    g = torch.Generator().manual_seed(123)  # fresh draws, not the ones the thresholds came from
    component = torch.multinomial(prior.weights.double(), 20_000, replacement=True, generator=g)
    chol = torch.linalg.cholesky(prior.covars.double())
    samples = prior.means.double()[component] + (chol[component] @ torch.randn(20_000, 69, 1, generator=g, dtype=torch.float64))[..., 0]
    below = (joint_log_density(prior, samples) < thresholds).double().mean()
    assert 0.2 * DENSITY_QUANTILE < float(below) < 5 * DENSITY_QUANTILE


def test_a_joint_twisted_far_from_the_prior_is_flagged(prior):
    pose = np.concatenate([np.zeros((1, 72)), _pose(j4=[0.0, 2.8, 0.0]), _pose(j18=[2.5, 0.0, 2.5])])
    pose[0, 3:] = prior.means[0].double().numpy()  # the first mixture mean: plausible
    counts = pose_density_outliers(prior, pose)
    assert counts[0] == 0 and counts[1] >= 1 and counts[2] >= 1
    assert (pose_density_outliers(None, pose) == 0).all()


def test_hinge_angles_measure_flexion_in_degrees():
    knee = hinge_angles(_pose(j4=[np.pi / 2, 0, 0]))[4]
    assert knee[0][0] == pytest.approx(90.0) and knee[1][0] == pytest.approx(0.0, abs=1e-9)
    left_elbow = hinge_angles(_pose(j18=[0, -np.pi / 3, 0]))[18][0][0]
    right_elbow = hinge_angles(_pose(j19=[0, np.pi / 3, 0]))[19][0][0]
    assert left_elbow == pytest.approx(60.0) and right_elbow == pytest.approx(60.0)


@pytest.mark.parametrize("pose, flagged", [
    (_pose(), 0),
    (_pose(j4=[2.0, 0, 0], j5=[1.2, 0, 0]), 0),  # deep squat and a bent knee
    (_pose(j18=[0, -2.3, 0], j19=[0, 2.3, 0]), 0),  # elbows fully flexed
    (_pose(j4=[-0.7, 0, 0]), 1),  # knee hyperextended by 40 degrees
    (_pose(j5=[0, 0, 0.7]), 1),  # knee bent 40 degrees sideways
    (_pose(j18=[0, 0.7, 0]), 1),  # left elbow hyperextended
    (_pose(j19=[0, -0.7, 0]), 1),  # right elbow hyperextended
    (_pose(j4=[-0.7, 0, 0], j19=[0, -0.7, 0]), 2),
])
def test_joint_limits(pose, flagged):
    assert joint_limit_violations(pose).tolist() == [flagged]


@pytest.mark.parametrize("motion", LABEL_MOTIONS + BACKGROUND_MOTIONS)
def test_the_motion_library_stays_within_the_limits(motion):
    sample = sample_motion(motion, np.arange(120) / 30.0, np.random.default_rng(1))
    pose = np.zeros((120, 72))
    pose[:, 3:] = sample.body_pose
    assert (joint_limit_violations(pose) == 0).all()


def test_implausible_fraction():
    assert implausible_fraction(np.array([0, 1, 0, 0]), np.array([0, 0, 0, 2])) == 0.5
    assert math.isnan(implausible_fraction(np.zeros(0, np.int32)))
