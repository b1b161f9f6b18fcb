"""Identity switches between look-alikes (``pipeline.synth.hard_tracks``): caught when the two
people are 0.15 body heights apart or more, never invented on heavy-noise tracks."""

from __future__ import annotations

import numpy as np
import pytest

from optimize.track_metrics import identity_switches, step_statistic, track_scale
from pipeline.synth.hard_tracks import SCENES, make_hard_track

SWITCH, NOISY = 2, 3  # kind positions in pipeline.synth.hard_tracks.KINDS


def _switches(problem) -> list[int]:
    return identity_switches(problem.keypoints, problem.selected, problem.init_camera, problem.fps)


@pytest.mark.parametrize("scene", range(len(SCENES)))
def test_a_switch_to_a_lookalike_is_found_where_it_happens(body_model, scene):
    track = make_hard_track(body_model, SWITCH + 4 * scene, 90, seed=40 + scene)
    assert track.kind == "switch" and track.switch > 0
    assert 0.1 <= track.lookalike_heights <= 0.4  # same size (0.97-1.03 x), close by
    found = _switches(track.problem)
    if track.lookalike_heights >= 0.15:
        assert len(found) == 1 and abs(found[0] - track.switch) <= 5, (track.scene, track.lookalike_heights, found)
    p = track.problem
    step, _, _ = step_statistic(p.keypoints, p.selected, track_scale(p.init_camera, p.selected, p.keypoints) * 1.7, 6)
    # the step at the switch is about the distance between the two people, and the largest of the track
    near = np.nanmax(step[track.switch - 1 : track.switch + 2])
    assert near == np.nanmax(step)
    assert 0.5 * track.lookalike_heights < near < 1.5 * track.lookalike_heights


def test_heavy_noise_next_to_a_lookalike_is_rarely_cut(body_model):
    """Eight heavy-noise tracks (two per scene) with a look-alike beside them and no switch:
    at most one false cut (a fast side-view run with dropped frames can look like a step)."""
    cuts = []
    for k in range(8):
        track = make_hard_track(body_model, NOISY + 4 * (k % len(SCENES)), 90, seed=50 + k)
        assert track.kind == "noisy" and track.switch == -1
        cuts.extend(_switches(track.problem))
    assert len(cuts) <= 1, cuts
