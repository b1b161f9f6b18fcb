"""The shared records validate their shapes and derive with replace()."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optimize.problem import TrackProblem
from pipeline.records import ClipRef, PerceptionResult, clip_id_for


def make_problem(T: int = 5, P: int = 2) -> TrackProblem:
    return TrackProblem(
        clip_id="abc_000001_000011",
        track_id=0,
        image_size=(320, 240),
        fps=25.0,
        frame_index=np.arange(T, dtype=np.int32),
        frame_time=np.arange(T) / 25.0,
        selected=np.zeros(T, dtype=np.int32),
        keypoints=np.zeros((T, 17, 3), np.float32),
        boxes=np.zeros((T, 4), np.float32),
        candidates=np.zeros((T, P, 17, 3), np.float32),
        candidate_mask=np.ones((T, P), bool),
        init_pose=np.zeros((T, P, 72), np.float32),
        init_betas=np.zeros((T, P, 10), np.float32),
        init_camera=np.zeros((T, P, 3), np.float32),
    )


def test_valid_problem_passes_and_reports_sizes():
    problem = make_problem()
    problem.validate()
    assert problem.num_frames == 5 and problem.num_candidates == 2
    assert problem.has_detection.all()


def test_wrong_shape_names_the_field():
    problem = make_problem()
    bad = problem.replace(init_pose=np.zeros((5, 2, 69), np.float32))
    with pytest.raises(ValueError, match="init_pose"):
        bad.validate()


def test_records_are_frozen():
    clip = ClipRef(clip_id="x", uri="/v.mp4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        clip.uri = "/other.mp4"  # type: ignore[misc]
    assert clip.replace(label="jump").label == "jump"


def test_clip_id_is_deterministic_kinetics_style():
    assert clip_id_for("abc", 10.0, 20.0) == "abc_000010_000020"
    assert clip_id_for("abc", 10.0, 20.0) == clip_id_for("abc", 10, 20)


def test_perception_result_ok_only_with_problems():
    clip = ClipRef(clip_id="x", uri="/v.mp4")
    assert not PerceptionResult(clip=clip, reject_reason="no_person").ok
    assert PerceptionResult(clip=clip, problems=(make_problem(),)).ok
