"""Shortest-path tracking: skips, several people, crossings, false positives, optimality."""

from __future__ import annotations

import numpy as np
import pytest

from models.pose_detector import FrameDetections
from pipeline.perception.track import TrackingConfig, link_costs, pad_detections, track_people
from pipeline.perception.track import _min_cost_paths as min_cost_paths

OFFSETS = np.stack([np.linspace(-20, 20, 17), np.linspace(-80, 80, 17)], 1)


def _person(x, y, conf=0.9, offsets=OFFSETS):
    return np.concatenate([offsets + [x, y], np.full((17, 1), conf)], 1).astype(np.float32)


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


def _shuffled(people, ids, rng):
    order = rng.permutation(len(ids))
    return [people[i] for i in order], [ids[i] for i in order]


def test_single_person_with_missed_frames_is_one_track():
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
    # Cost = skip x frames without a detection + keypoint distances: 3 px per frame with
    # the paper's distance, 0 once the constant-velocity pass predicts the motion.
    assert track.cost == pytest.approx(4 * 100, abs=1e-3)
    paper = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5, motion_passes=0))
    assert paper[0].cost == pytest.approx(4 * 100 + 33 * 3 + 4 * 3 + 2 * 3, abs=1e-3)


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
        people, ids = _shuffled(people, ids, rng)
        frames.append(people)
        truth.append(ids)
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=10))
    assert len(tracks) == 2
    ids = _identity(tracks, truth)
    assert {len(set(i)) for i in ids} == {1}
    assert sorted(i[0] for i in ids) == [0, 1]
    assert sorted(len(i) for i in ids) == [56, 60]


def test_crossing_while_each_is_missed_in_turn_keeps_identities():
    """Two same-shape people cross; A is missed before they meet, B right after.

    Every detection can be linked to either person near the crossing; the joint paths
    (one long gap per person rather than swapped halves) keep both identities.
    """
    rng = np.random.default_rng(3)
    frames, truth = [], []
    for t in range(80):
        a, b = _person(100 + 6 * t, 300), _person(580 - 6 * t, 302)
        people, ids = [], []
        if t not in range(35, 40):  # A missed just before the crossing point (t = 40)
            people.append(a), ids.append(0)
        if t not in range(42, 46):  # B missed just after it
            people.append(b), ids.append(1)
        people, ids = _shuffled(people, ids, rng)
        frames.append(people)
        truth.append(ids)
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=10))
    ids = _identity(tracks, truth)
    assert len(tracks) == 2 and [len(set(i)) for i in ids] == [1, 1]
    assert sorted(len(i) for i in ids) == [75, 76]


def test_partially_occluded_person_bridged_with_completed_keypoints():
    """Only the left half is seen before a gap and only the right half after it."""
    frames, truth = [], []
    for t in range(50):
        kp = _person(100 + 4 * t, 300)
        if 20 <= t < 25:
            kp[:9, 2] = 0.0  # one half hidden
        elif 25 <= t < 30:
            kp = None  # fully hidden
        elif 30 <= t < 35:
            kp[8:, 2] = 0.0  # the other half
        frames.append([] if kp is None else [kp])
        truth.append([] if kp is None else [0])
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5, min_common_keypoints=3))
    assert len(tracks) == 1 and tracks[0].num_detections == 45


def test_false_positives_are_not_tracked():
    """Short-lived and scattered false positives never form a track of their own."""
    rng = np.random.default_rng(1)
    frames, truth = [], []
    for t in range(100):
        people, ids = [_person(200 + 2 * t, 300)], [0]
        for _ in range(rng.poisson(1.5)):
            people.append(_person(rng.uniform(0, 1200), rng.uniform(0, 600), rng.uniform(0.3, 0.7)))
            ids.append(-1)
        people, ids = _shuffled(people, ids, rng)
        frames.append(people)
        truth.append(ids)
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=10))
    assert len(tracks) == 1
    assert set(_identity(tracks, truth)[0]) == {0}


def test_short_paths_are_dropped_and_the_gate_splits_jumps():
    frames = [[_person(50, 50)] if t < 4 else [] for t in range(30)]
    assert track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5)) == []
    # A jump far beyond the gate is never linked.
    frames = [[_person(50 if t < 15 else 500, 200)] for t in range(30)]
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5))
    assert sorted((t.start, t.stop) for t in tracks) == [(0, 15), (15, 30)]
    # A gap longer than max_gap splits the track.
    frames = [[] if 10 <= t < 20 else [_person(50 + t, 200)] for t in range(30)]
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=5, max_gap=5))
    assert sorted((t.start, t.stop) for t in tracks) == [(0, 10), (20, 30)]


def test_joint_paths_beat_greedy_extraction():
    """The first-cheapest path would take B's detections; the joint optimum re-routes it.

    A walks through frames 0-19, B appears at frame 10 right where A is, and A's own
    detections in frames 10-19 are a few pixels off. Greedy one-path-at-a-time extraction
    takes whichever continuation is cheapest for the first path and strands the other
    person; min-cost flow keeps both people.
    """
    frames, truth = [], []
    for t in range(20):
        people, ids = [_person(100 + 2 * t, 200)], [0]
        if t >= 10:
            people.append(_person(100 + 2 * t + 4, 200)), ids.append(1)
        if t >= 10 and t % 2:
            people, ids = people[1:], ids[1:]  # A missed every other frame
        frames.append(people)
        truth.append(ids)
    config = TrackingConfig(min_track_length=5, motion_passes=0, gap_cost=0.0, min_track_fill=0.0)
    padded = pad_detections(_frames(frames))
    paths = min_cost_paths(link_costs(padded, config), padded.mask, config)
    used = np.concatenate(paths)
    assert len(paths) == 2 and len({tuple(p) for p in used}) == len(used) == int(padded.mask.sum())


def test_zero_people_and_config_errors():
    empty = pad_detections(_frames([[] for _ in range(5)]))
    assert track_people(empty) == []
    with pytest.raises(ValueError, match="skip_penalty"):
        TrackingConfig(skip_penalty=0)
    with pytest.raises(ValueError, match="gap_cost"):
        TrackingConfig(gap_cost=-1)
    with pytest.raises(ValueError, match="distance_weight"):
        TrackingConfig(distance_weight=0)
    with pytest.raises(ValueError, match="gap_links_per_detection"):
        TrackingConfig(gap_links_per_detection=0)


@pytest.mark.slow
def test_three_hundred_frames_by_twenty_people():
    """300 frames x 20 people: one track per person (timing in bench.tracking)."""
    frames, truth = [], []
    for t in range(300):
        frames.append([_person(60 + 60 * p + 0.5 * t, 100 + 20 * p) for p in range(20)])
        truth.append(list(range(20)))
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(max_people=None))
    ids = _identity(tracks, truth)
    assert len(tracks) == 20 and all(len(set(i)) == 1 and len(i) == 300 for i in ids)


def test_hidden_persons_track_does_not_borrow_a_neighbours_detection():
    """Two people walk side by side 20 px apart and each is missed in a different frame.

    B's path could fill its own gap with A's detection (no gap for B, a two-frame gap for
    A); the distance weight makes the 2 x 20 px detour cost more than the gap it saves.
    """
    frames, truth = [], []
    for t in range(40):
        people, ids = [], []
        if t != 21:
            people.append(_person(100 + 5 * t, 300)), ids.append(0)
        if t != 20:
            people.append(_person(120 + 5 * t, 300)), ids.append(1)
        frames.append(people[::-1] if t % 2 else people)
        truth.append(ids[::-1] if t % 2 else ids)
    tracks = track_people(pad_detections(_frames(frames)), TrackingConfig(min_track_length=10))
    ids = _identity(tracks, truth)
    assert len(tracks) == 2 and [len(set(i)) for i in ids] == [1, 1]
    assert sorted(len(i) for i in ids) == [39, 39]


def test_long_gap_links_are_pruned_to_the_nearest():
    """Across a gap only each detection's nearest links (as source or destination) are kept."""
    rng = np.random.default_rng(2)
    P = 8
    frames = [[_person(x, 300) for x in rng.uniform(0, 400, P)] for _ in range(12)]
    padded = pad_detections(_frames(frames))
    full = link_costs(padded, TrackingConfig(gap_links_per_detection=None))
    pruned = link_costs(padded, TrackingConfig(gap_links_per_detection=2))
    full_step = full.dst_frame - full.src_frame
    step = pruned.dst_frame - pruned.src_frame
    assert (full_step == 1).sum() == (step == 1).sum()  # consecutive frames: all kept
    assert (step > 1).sum() < (full_step > 1).sum()
    for g in range(2, int(step.max()) + 1):
        f = full_step == g
        f_src, f_dst = full.src_frame[f] * P + full.src_det[f], full.dst_frame[f] * P + full.dst_det[f]
        kept = set()
        for ids in (f_src, f_dst):
            for d in np.unique(ids):
                rows = np.flatnonzero(ids == d)
                kept.update(rows[np.argsort(full.distance[f][rows], kind="stable")[:2]].tolist())
        want = {(int(f_src[r]), int(f_dst[r])) for r in kept}
        k = step == g
        got = set(zip((pruned.src_frame[k] * P + pruned.src_det[k]).tolist(), (pruned.dst_frame[k] * P + pruned.dst_det[k]).tolist()))
        assert got == want
