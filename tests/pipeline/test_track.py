"""Shortest-path tracking: skips, several people, crossings, false positives, crowd-free."""

from __future__ import annotations

import numpy as np
import pytest

from models.pose_detector import FrameDetections
from pipeline.track import TrackingConfig, pad_detections, track_people

OFFSETS = np.stack([np.linspace(-20, 20, 17), np.linspace(-80, 80, 17)], 1)


def _person(x, y, conf=0.9):
    kp = np.concatenate([OFFSETS + [x, y], np.full((17, 1), conf)], 1).astype(np.float32)
    return kp


def _frames(people_per_frame):
    out = []
    for people in people_per_frame:
        kp = np.stack(people).astype(np.float32) if people else np.zeros((0, 17, 3), np.float32)
        boxes = np.stack([[k[:, 0].min(), k[:, 1].min(), k[:, 0].max(), k[:, 1].max()] for k in kp]) if people else np.zeros((0, 4))
        out.append(FrameDetections(kp, boxes.astype(np.float32), np.ones(len(kp), np.float32)))
    return out


def _identity(tracks, truth):
    """Per track, the true ids of its kept detections."""
    return [[truth[t.start + o][j] for o, j in enumerate(t.selected) if j >= 0] for t in tracks]


def test_single_person_with_missed_frames():
    frames, truth = [], []
    for t in range(40):
        people = [] if t in (10, 11, 12, 25) else [_person(100 + 3 * t, 200)]
        frames.append(people)
        truth.append([0] * len(people))
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5))
    assert len(tracks) == 1
    track = tracks[0]
    assert track.start == 0 and track.stop == 40 and track.num_detections == 36
    assert (track.selected[[10, 11, 12, 25]] == -1).all()


def test_two_people_crossing_with_false_positives_keep_identities():
    rng = np.random.default_rng(0)
    frames, truth = [], []
    for t in range(60):
        people, ids = [_person(100 + 8 * t, 300), _person(580 - 8 * t, 320, 0.8)], [0, 1]
        if 28 <= t <= 31:  # the person behind is hidden while they cross
            people, ids = people[:1], ids[:1]
        if t % 7 == 0:
            people.append(_person(rng.uniform(0, 600), rng.uniform(0, 400), 0.5))
            ids.append(-1)
        order = rng.permutation(len(ids))
        frames.append([people[i] for i in order])
        truth.append([ids[i] for i in order])
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=10))
    assert len(tracks) == 2
    ids = _identity(tracks, truth)
    assert {len(set(i)) for i in ids} == {1}
    assert sorted(i[0] for i in ids) == [0, 1]
    assert sorted(len(i) for i in ids) == [56, 60]


def test_short_paths_are_dropped_and_skip_penalty_is_used():
    frames = [[_person(50, 50)] if t < 4 else [] for t in range(30)]
    assert track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5)) == []
    # A jump far beyond the gate is never linked.
    frames = [[_person(50 if t < 15 else 500, 200)] for t in range(30)]
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5))
    assert sorted((t.start, t.stop) for t in tracks) == [(0, 15), (15, 30)]


@pytest.mark.slow
def test_speed_shape_three_hundred_by_twenty():
    """300 frames x 20 people: runs and gives one track per person (timing in bench.tracking)."""
    frames, truth = [], []
    for t in range(300):
        frames.append([_person(60 + 60 * p + 0.5 * t, 100 + 20 * p) for p in range(20)])
        truth.append(list(range(20)))
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(max_people=None, refine_passes=0))
    ids = _identity(tracks, truth)
    assert len(tracks) == 20 and all(len(set(i)) == 1 and len(i) == 300 for i in ids)
