"""optimize.bundle_adjust: the starting point of frames whose init is front/back flipped."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pipeline.synth.tracks import InitNoise, make_track, make_tracks
from optimize.bundle_adjust import FLIP_COST, PackedTracks, flipped_start_frames


def _yaw(degrees: np.ndarray) -> np.ndarray:
    """Roots (axis-angle) facing the given headings: a rotation about the camera's vertical
    (y) axis after a small tilt."""
    tilt = Rotation.from_rotvec([0.1, 0.0, 0.05])
    return (Rotation.from_euler("y", np.asarray(degrees, np.float64)[:, None], degrees=True) * tilt).as_rotvec()


def test_a_steady_turn_is_not_flagged():
    # a full turn and a half in 100 frames (5.4 degrees per frame), and a fast one
    for per_frame in (5.4, 25.0):
        headings = (np.arange(100) * per_frame + 180.0) % 360.0 - 180.0
        assert not flipped_start_frames(_yaw(headings), np.ones(100, bool)).any()


@pytest.mark.parametrize("run", [slice(40, 46), slice(0, 7), slice(90, 100), slice(30, 31)])
def test_a_short_flipped_run_is_flagged_exactly(run):
    headings = 20.0 + 3.0 * np.sin(np.arange(100) / 7.0)  # a person swaying a little
    headings[run] += 180.0
    flagged = flipped_start_frames(_yaw(headings), np.ones(100, bool))
    expected = np.zeros(100, bool)
    expected[run] = True
    assert np.array_equal(flagged, expected)


def test_a_long_run_and_the_majority_are_kept():
    # runs longer than about 2 pi / FLIP_COST frames are a real orientation, not a flip
    long = int(2 * np.pi / FLIP_COST) + 6
    headings = np.full(100, 10.0)
    headings[30:30 + long] += 180.0
    assert not flipped_start_frames(_yaw(headings), np.ones(100, bool)).any()
    # the labels are symmetric: the smaller group is the one flagged
    headings = np.full(20, 10.0)
    headings[:8] += 180.0
    assert np.flatnonzero(flipped_start_frames(_yaw(headings), np.ones(20, bool))).tolist() == list(range(8))


def test_frames_without_a_usable_init_are_skipped():
    headings = np.full(60, -30.0)
    headings[20:25] += 180.0
    roots = _yaw(headings)
    usable = np.ones(60, bool)
    usable[[22, 40]] = False
    roots[40] = np.nan  # a missing detection's init: ignored, never flagged
    flagged = flipped_start_frames(roots, usable)
    assert np.flatnonzero(flagged).tolist() == [20, 21, 23, 24]
    assert not flipped_start_frames(roots[:2], usable[:2]).any()  # too short to judge


def test_the_synthetic_regressor_flips_are_found_without_false_alarms(body_model):
    tracks = make_tracks(body_model, "heldout", 8, 150, seed=3)
    found = missed = false = 0
    for track in tracks:
        p = track.problem
        selected = p.selected.astype(np.int64)
        root = p.init_pose[np.arange(p.num_frames), np.maximum(selected, 0), :3]
        flagged = flipped_start_frames(root, selected >= 0)
        truth = np.asarray(track.flipped, bool) & (selected >= 0)
        found += int((flagged & truth).sum())
        missed += int((truth & ~flagged).sum())
        false += int((flagged & ~truth).sum())
    assert found > 10 and missed == 0 and false == 0


def test_flipped_frames_start_from_an_agreeing_frame_and_keep_their_init_term(body_model):
    flips = InitNoise(flip_on=0.05, flip_off=0.3)
    track = make_track(body_model, "walking", 60, seed=5, regressor=flips)
    p = track.problem
    selected = p.selected.astype(np.int64)
    flagged = flipped_start_frames(p.init_pose[np.arange(60), np.maximum(selected, 0), :3], selected >= 0)
    assert flagged.any()
    packed = PackedTracks([p], body_model, "cpu", torch.float64)
    pose, _, _ = packed.decode(packed.x0)
    pose = pose[0, :60].numpy()
    own = p.init_pose[np.arange(60), np.maximum(selected, 0)]
    agree = ~flagged & (selected >= 0)
    assert np.allclose(pose[agree], own[agree])
    for t in np.flatnonzero(flagged):  # the nearest agreeing frame's pose
        nearest = np.flatnonzero(agree)[np.abs(np.flatnonzero(agree) - t).argmin()]
        assert np.allclose(pose[t], own[nearest])
    # the objective is unchanged: the init term still holds every frame's own estimate
    init_joints = body_model.joints(torch.as_tensor(p.init_pose), torch.as_tensor(p.init_betas)).double()
    present = torch.as_tensor(p.candidate_mask)
    held = packed.batch.init_joints[0, :60, : p.num_candidates].double()
    assert torch.allclose(held[present], init_joints[present], atol=1e-5)
    assert not np.allclose(pose[flagged, :3], own[flagged, :3], atol=0.5)  # while the start is not flipped


def test_a_keypoint_only_init_is_not_restarted(body_model):
    # its facing comes from the keypoints themselves (shoulder order): a change there is the
    # data's (a turn at a low frame rate looks exactly like a flip), so the start keeps it
    flips = InitNoise(flip_on=0.05, flip_off=0.3)
    problem = dataclasses.replace(make_track(body_model, "walking", 60, seed=5, regressor=flips).problem,
                                  init_source="keypoints")
    selected = problem.selected.astype(np.int64)
    packed = PackedTracks([problem], body_model, "cpu", torch.float64)
    pose, _, _ = packed.decode(packed.x0)
    kept = selected >= 0
    own = problem.init_pose[np.arange(60), np.maximum(selected, 0)]
    assert np.allclose(pose[0, :60].numpy()[kept], own[kept])
