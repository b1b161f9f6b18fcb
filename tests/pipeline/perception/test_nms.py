"""One person, one track: OKS NMS within a frame and duplicate tracks across a clip."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.video import pattern_video

from models.pose_detector import FrameDetections
from pipeline.perception.decode import DecodeConfig
from pipeline.perception.nms import duplicate_tracks, object_keypoint_similarity, oks_nms
from pipeline.perception.perceive import PerceptionConfig, PerceptionModels, load_perception_models, perceive_clip
from pipeline.perception.track import TrackingConfig
from pipeline.records import ClipRef

W, H, FPS, N = 160, 120, 25, 30


def _person(x: float, y: float, height: float = 80.0) -> np.ndarray:
    """(17, 3) keypoints of an upright person, hips at (x, y), all seen."""
    rel = np.stack([np.linspace(-6, 6, 17), np.linspace(-0.6, 0.4, 17)], 1) * [1.0, height]
    return np.concatenate([rel + [x, y], np.full((17, 1), 0.9)], 1).astype(np.float32)


def _frame(people: list[np.ndarray], scores: list[float]) -> FrameDetections:
    kp = np.stack(people).astype(np.float32)
    boxes = np.stack([[k[:, 0].min() - 5, k[:, 1].min() - 5, k[:, 0].max() + 5, k[:, 1].max() + 5] for k in kp])
    return FrameDetections(kp, boxes.astype(np.float32), np.asarray(scores, np.float32))


def test_oks_is_one_for_the_same_pose_and_falls_with_distance():
    a = _person(50, 60)[None]
    area = np.array([20.0 * 90.0])
    assert object_keypoint_similarity(a, a, area)[0, 0] == pytest.approx(1.0)
    near, far = (object_keypoint_similarity(a, _person(50 + dx, 60)[None], area)[0, 0] for dx in (2, 25))
    assert 0.8 < near < 1.0 and far < 0.2
    unseen = _person(50, 60)
    unseen[:, 2] = 0
    assert object_keypoint_similarity(a, unseen[None], area)[0, 0] == 0


def test_oks_nms_keeps_the_stronger_of_a_duplicate_and_both_neighbours():
    rng = np.random.default_rng(0)
    one, twin = _person(40, 60), _person(40, 60) + np.r_[rng.normal(0, 1.0, (17, 2)).T, np.zeros((1, 17))].T
    other = _person(100, 62)
    found = _frame([twin, one, other], [0.6, 0.9, 0.8])
    kept = oks_nms(found, 0.5)
    assert len(kept) == 2 and sorted(kept.scores.tolist()) == pytest.approx([0.8, 0.9])
    assert len(oks_nms(found, 1.0)) == 3  # OKS never exceeds 1
    assert len(oks_nms(_frame([one, other], [0.9, 0.8]), 0.5)) == 2


def test_duplicate_tracks_drop_the_shorter_follower():
    T = 20
    walk = np.stack([_person(20 + 3 * t, 60) for t in range(T)])
    boxes = np.stack([[k[:, 0].min(), k[:, 1].min(), k[:, 0].max(), k[:, 1].max()] for k in walk]).astype(np.float32)
    follower = walk[5:15] + np.array([2.0, 1.0, 0.0], np.float32)  # the same hips, 2 px off, frames 5..14
    apart = walk + np.array([60.0, 0.0, 0.0], np.float32)
    assert duplicate_tracks([walk, follower, apart], [boxes, boxes[5:15], boxes], [0, 5, 0]) == [1]
    gaps = boxes[5:15].copy()
    gaps[2:] = np.nan  # detected on 2 common frames only
    assert duplicate_tracks([walk, follower, apart], [boxes, gaps, boxes], [0, 5, 0]) == []


class _TwiceDetector:
    """Every person of the clip detected twice: a full box and a jittered, weaker copy."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.frame = 0

    def detect(self, frames):
        out = []
        for _ in frames:
            t = self.frame
            people = [_person(30 + 2 * t, 70), _person(130 - 2 * t, 74)]
            twins = [p + np.c_[self.rng.normal(0, 1.5, (17, 2)), np.zeros(17)].astype(np.float32) for p in people]
            out.append(_frame(people + twins, [0.9, 0.85, 0.7, 0.65]))
            self.frame += 1
        return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return pattern_video(tmp_path_factory.mktemp("twice") / "twice.mp4", W, H, FPS, N)


@pytest.mark.parametrize("oks_threshold", [0.5, 1.0], ids=["oks_nms", "duplicate_tracks_only"])
def test_people_detected_twice_give_one_track_each(video, body_model, oks_threshold):
    """Two walkers, each detected twice per frame with 1.5 px jitter: two tracks, whether the
    duplicates go at the frame (OKS NMS) or, with NMS off, as duplicate tracks."""
    config = PerceptionConfig(decode=DecodeConfig(target_fps=FPS), keypoints_source="detect",
                              tracking=TrackingConfig(min_track_length=10), oks_threshold=oks_threshold)  # fmt: skip
    models = load_perception_models(PerceptionConfig(), body_model)
    models = PerceptionModels(_TwiceDetector(), None, models.keypoint_init)
    result = perceive_clip(ClipRef(clip_id="twice", uri=str(video)), config, models)
    assert result.ok, result.message
    assert len(result.problems) == 2
    starts = sorted(float(p.keypoints[np.flatnonzero(p.has_detection)[0], 11, 0]) for p in result.problems)
    assert starts == pytest.approx([30, 130], abs=8)
    if oks_threshold < 1:
        assert result.detections_max == 2 and result.duplicate_tracks == 0
    else:
        assert result.detections_max == 4 and result.duplicate_tracks == 2
    assert result.max_people == result.detections_max and result.smallest_person_px == pytest.approx(90, abs=5)
