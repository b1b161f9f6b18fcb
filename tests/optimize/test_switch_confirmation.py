"""Candidate identity-switch cuts are confirmed by re-fitting a window around each, whole and
in two (``optimize.bundle_adjust.confirmation_gains``): a look-alike switch is split, a
heavy-noise track's false candidate is not, and an unconfirmed candidate costs no piece fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

import optimize.bundle_adjust as ba
from optimize.bundle_adjust import bundle_adjust, confirmation_windows
from optimize.config import BAConfig
from pipeline.synth.hard_tracks import KINDS, make_hard_track

SWITCH, NOISY = KINDS.index("switch"), KINDS.index("noisy")
SIDE = 2  # scene position: index // 4 % 4 in make_hard_track
CONFIG = BAConfig(lm_max_iter=5)  # the full fits short: the test is about the cuts


@pytest.fixture(scope="module")
def prior(standin):
    from models.gmm_prior import GMMPrior

    return GMMPrior.from_file(standin.gmm)


def _fit_with_calls(monkeypatch, body_model, prior, problem):
    """The fit of ``problem`` and, per solver call, (LM iterations per stage, frames per track)."""
    calls = []
    solve = ba._solve_batch

    def spy(problems, *args, **kwargs):
        calls.append((args[3].lm_max_iter, [p.num_frames for p in problems]))
        return solve(problems, *args, **kwargs)

    monkeypatch.setattr(ba, "_solve_batch", spy)
    (fit,) = bundle_adjust([problem], body_model, prior, CONFIG)
    return fit, calls


def test_a_lookalike_switch_is_confirmed_and_split(monkeypatch, body_model, prior):
    track = make_hard_track(body_model, SWITCH + 4 * SIDE, 90, seed=46)  # a side view, 0.19 heights apart
    assert track.kind == "switch" and 0.15 <= track.lookalike_heights <= 0.25
    fit, calls = _fit_with_calls(monkeypatch, body_model, prior, track.problem)
    assert fit.status == "split", fit.message
    (cut,) = fit.switch_frames
    assert abs(cut - track.switch) <= 5
    assert cut in fit.switch_candidates
    gain = fit.switch_gain[fit.switch_candidates.index(cut)]
    assert gain > CONFIG.switch_confirm_gain
    # each side of the cut was fitted as a track of its own, from the cut on
    assert [p.num_frames for p in fit.pieces] == [cut, track.problem.num_frames - cut]
    full = [frames for iters, group in calls if iters == CONFIG.lm_max_iter for frames in group]
    assert sorted(full) == sorted(p.num_frames for p in fit.pieces)


@pytest.fixture(scope="module")
def noisy_track(body_model):
    """A heavy-noise side view with a look-alike beside the person all along, no switch; its
    detections give a (false) candidate cut."""
    track = make_hard_track(body_model, NOISY + 4 * SIDE, 90, seed=72)
    assert track.kind == "noisy" and track.switch == -1
    assert ba._identity_switches(track.problem, CONFIG), "the detections must give a candidate"
    return track


def test_a_false_candidate_on_a_heavy_noise_track_is_not_confirmed_and_costs_no_piece_fit(
        monkeypatch, body_model, prior, noisy_track):
    problem = noisy_track.problem
    fit, calls = _fit_with_calls(monkeypatch, body_model, prior, problem)
    assert fit.status == "ok" and fit.switch_frames == () and not fit.pieces
    assert fit.switch_candidates and len(fit.switch_gain) == len(fit.switch_candidates)
    assert all(g <= CONFIG.switch_confirm_gain for g in fit.switch_gain), fit.switch_gain
    # the confirmation fits are short windows with their own iteration cap; the only full
    # fit is the whole track's
    confirm = [frames for iters, group in calls if iters == CONFIG.switch_confirm_max_iter for frames in group]
    full = [frames for iters, group in calls if iters == CONFIG.lm_max_iter for frames in group]
    assert full == [problem.num_frames]
    assert len(confirm) == 3 * len(fit.switch_candidates)
    assert max(confirm) <= 2 * CONFIG.switch_confirm_window + 10  # detected frames a side, plus skipped ones
    # without confirmation the same candidate cuts the track
    (unconfirmed,) = bundle_adjust([problem], body_model, prior, CONFIG.replace(switch_confirm=False, lm_max_iter=1))
    assert unconfirmed.status == "split"
    assert unconfirmed.switch_frames == fit.switch_candidates
    assert all(math.isnan(g) for g in unconfirmed.switch_gain)


def test_confirmation_windows_stop_at_neighbouring_candidates(noisy_track):
    problem = noisy_track.problem
    detected = np.flatnonzero(problem.selected >= 0)
    cuts = [int(detected[10]), int(detected[30]), int(detected[32])]
    first, second, third = confirmation_windows(problem, cuts, window=15)
    # the first window: 10 detected frames before (the track starts), 15 after, up to the next cut
    assert first.before.frame_index[0] == problem.frame_index[0]
    assert (first.before.selected >= 0).sum() == 10 and (first.after.selected >= 0).sum() == 15
    assert first.detected_frames == 25
    assert first.whole.frame_index[first.after_start] == problem.frame_index[cuts[0]]
    # the second: 15 before, but only 2 detected frames after before the third cut: untested
    assert second is None
    # the third starts after the second cut (2 detected frames before it): untested too
    assert third is None
