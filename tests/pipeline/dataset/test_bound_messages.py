"""A track's selection reason names the option and value behind it (in ``rejected/`` messages)."""

from __future__ import annotations

from pipeline.dataset.selection.commit import commit_outcome
from pipeline.dataset.selection.rules import SelectionConfig, bound_note, select_track
from pipeline.records import ClipRef, PerceptionResult
from helpers.scripted import make_fit, make_problem

CLIP = ClipRef("a_000000_000010", "/v/a.mp4", "walk", "train")


def _commit_message(config: SelectionConfig, e_norm: float = 2.0, **fit_changes) -> str:
    problem = make_problem(CLIP.clip_id, 0, 12, seed=1)
    fit = make_fit(problem, e_norm).replace(**fit_changes)
    outcome = commit_outcome(PerceptionResult(CLIP, num_frames=20), [(problem, fit)], config)
    assert outcome.outcome == "rejected"
    return outcome.table("rejected").column("message")[0].as_py()


def _note(config: SelectionConfig, threshold: float, e_norm: float = 2.0) -> str:
    problem = make_problem(CLIP.clip_id, 0, 12, seed=1)
    fit = make_fit(problem, e_norm)
    return bound_note(fit, select_track(problem, fit, config, threshold), config)


def test_commit_time_rejections_name_the_option_and_value():
    assert "--min_track_frames 100" in _commit_message(SelectionConfig(min_frames=100))
    assert "--min_inlier_fraction 1" in _commit_message(SelectionConfig(min_inlier_fraction=1.0))
    message = _commit_message(SelectionConfig(), converged=False, iterations=50)
    assert "track 0: not_converged (stopped after 50 iterations" in message and "lm_max_iter" in message


def test_threshold_reasons_name_the_option_and_value():
    assert "--selection_threshold 1" in _note(SelectionConfig(mode="threshold", e_norm_threshold=1, min_inlier_fraction=0), 1.0)
    assert "--keep_fraction 0.1" in _note(SelectionConfig(min_inlier_fraction=0), 1.0)
