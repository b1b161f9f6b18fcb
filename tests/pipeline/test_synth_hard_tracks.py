"""The hard-track generator (``pipeline.synth.hard_tracks``) makes what it says: occlusion gaps
without any candidate of the person, a same-size look-alike beside a switch, ground truth
that follows the detections."""

from __future__ import annotations

import numpy as np

from pipeline.synth.hard_tracks import FPS, GAP_SECONDS, KINDS, SCENES, make_hard_track, make_hard_tracks


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


def test_kinds_and_scenes_take_turns(body_model):
    tracks = make_hard_tracks(body_model, 5, (30, 40), seed=3)
    assert [t.kind for t in tracks] == [*KINDS, KINDS[0]]
    assert [t.scene for t in tracks] == [SCENES[0]] * 4 + [SCENES[1]]
    assert all(30 <= t.problem.num_frames <= 40 for t in tracks)


def test_an_occlusion_gap_has_no_candidate_of_the_person(body_model):
    track = make_hard_track(body_model, KINDS.index("gap"), 120, seed=7)
    p = track.problem
    skipped = p.selected < 0
    assert _longest_run(skipped) >= round(min(GAP_SECONDS[0] * FPS, 120 // 3))
    # the person is gone, the bystander stays: one candidate on skipped frames, two elsewhere
    assert (p.candidate_mask[skipped].sum(-1) == 1).all() and (p.candidate_mask[~skipped].sum(-1) == 2).all()
    assert track.switch == -1 and (track.identity == 0).all()


def test_a_switch_goes_to_a_lookalike_and_the_truth_follows(body_model):
    track = make_hard_track(body_model, KINDS.index("switch"), 60, seed=11)
    p, s = track.problem, track.switch
    assert 0.3 * 60 <= s <= 0.7 * 60 and 0.1 <= track.lookalike_heights <= 0.4
    assert (track.identity[:s] == 0).all() and (track.identity[s:] == 1).all()
    scale = p.init_camera[np.arange(60), np.maximum(p.selected, 0), 0]
    before, after = np.mean(scale[s - 3 : s]), np.mean(scale[s : s + 3])
    assert abs(np.log(after / before)) < 0.15  # the same size across the switch (init scale: 5 % noise)
    assert not np.allclose(track.gt_joints[s - 1], track.gt_joints[s], atol=1e-3)  # another person's pose
