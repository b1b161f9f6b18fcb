"""pipeline.synth.motions: every motion is deterministic, within joint limits and moving."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline.synth import motions

TIMES = np.arange(100) / 10.0  # 10 s at 10 fps


@pytest.mark.parametrize("name", sorted(motions.MOTIONS))
def test_motion_shapes_limits_and_determinism(name):
    a = motions.sample_motion(name, TIMES, np.random.default_rng(3))
    b = motions.sample_motion(name, TIMES, np.random.default_rng(3))
    assert a.body_pose.shape == (100, 69) and a.heading.shape == (100,)
    assert a.speed.shape == (100,) and a.lift.shape == (100,)
    assert np.array_equal(a.body_pose, b.body_pose) and np.array_equal(a.heading, b.heading)
    assert np.isfinite(a.body_pose).all()
    for key, values in a.angles.items():
        dof = key.removeprefix("left_").removeprefix("right_")
        lo, hi = motions.JOINT_LIMITS[dof]
        assert values.min() >= lo - 1e-9 and values.max() <= hi + 1e-9, key
    # Every joint rotation stays below 180 degrees and the body actually moves.
    angles = np.linalg.norm(a.body_pose.reshape(100, 23, 3), axis=-1)
    assert angles.max() < np.pi
    assert np.ptp(a.body_pose, axis=0).max() > 0.05
    assert (a.lift >= 0).all() and (a.speed >= 0).all()


def test_knees_and_elbows_only_bend_one_way():
    for name in motions.LABEL_MOTIONS:
        m = motions.sample_motion(name, TIMES, np.random.default_rng(5))
        rot = Rotation.from_rotvec(m.body_pose.reshape(-1, 23, 3)[:, [3, 4]].reshape(-1, 3)).as_rotvec()
        # Knee (SMPL joints 4, 5) flexion is a positive rotation about x.
        assert (rot[:, 0] >= -1e-6).all(), name
        assert np.abs(rot[:, 1:]).max() < 1e-6, name


def test_walkers_move_and_in_place_motions_do_not():
    walk = motions.sample_motion("walking", TIMES, np.random.default_rng(0))
    assert 0.9 < walk.speed.mean() < 1.8 and not walk.pin_feet
    run = motions.sample_motion("running", TIMES, np.random.default_rng(0))
    assert run.speed.mean() > 2.0 and run.lift.max() > 0
    squat = motions.sample_motion("squatting", TIMES, np.random.default_rng(0))
    assert squat.speed.max() == 0 and squat.pin_feet
    assert squat.angles["left_knee_flexion"].max() > 70
    jump = motions.sample_motion("jumping", TIMES, np.random.default_rng(0))
    assert jump.lift.max() > 0.1
    sit = motions.sample_motion("sitting_down", TIMES, np.random.default_rng(0))
    assert sit.props == ("stool",) and sit.prop_body_pose.shape == (69,)
    turn = motions.sample_motion("turning", TIMES, np.random.default_rng(0))
    assert np.ptp(turn.heading) > np.pi / 3


def test_split_is_recorded_and_disjoint():
    split = motions.motion_split()
    tuning, heldout = set(split["tuning"]), set(split["heldout"])
    assert tuning and heldout and not tuning & heldout
    assert tuning | heldout == set(motions.LABEL_MOTIONS)
    assert set(motions.MOTIONS) == set(motions.LABEL_MOTIONS) | set(split["background"])


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="unknown motion"):
        motions.sample_motion("moonwalk", TIMES, np.random.default_rng(0))
    with pytest.raises(ValueError, match="times"):
        motions.sample_motion("walking", np.zeros((0,)), np.random.default_rng(0))
