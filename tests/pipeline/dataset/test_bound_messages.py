"""A clip rejected by a selection bound says which option and value (issue 16.3)."""

from __future__ import annotations

from pipeline.dataset.rows import outcome_from_fits
from pipeline.dataset.selection import SelectionConfig
from pipeline.records import ClipRef, PerceptionResult
from transforms.testing import make_fit, make_problem


def _message(config: SelectionConfig, threshold: float, e_norm: float = 2.0) -> str:
    clip = ClipRef("a_000000_000010", "/v/a.mp4", "walk", "train")
    problem = make_problem(clip.clip_id, 0, 12, seed=1)
    outcome = outcome_from_fits(PerceptionResult(clip, num_frames=20), [(problem, make_fit(problem, e_norm))], config, threshold)
    assert outcome.outcome == "rejected"
    return outcome.table("rejected").column("message")[0].as_py()


def test_selection_rejections_name_the_option_and_value():
    assert "--min_track_frames 100" in _message(SelectionConfig(mode="threshold", e_norm_threshold=10, min_frames=100), 10)
    assert "--min_inlier_fraction 1" in _message(SelectionConfig(mode="threshold", e_norm_threshold=10, min_inlier_fraction=1.0), 10)
    assert "--e_norm_threshold 1" in _message(SelectionConfig(mode="threshold", e_norm_threshold=1, min_inlier_fraction=0), 1.0)
    assert "--keep_fraction 0.1" in _message(SelectionConfig(min_inlier_fraction=0), 1.0)


def test_commit_time_rejections_name_the_option_and_value():
    from pipeline.dataset.selection_table import commit_outcome

    clip = ClipRef("a_000000_000010", "/v/a.mp4", "walk", "train")
    problem = make_problem(clip.clip_id, 0, 12, seed=1)
    outcome = commit_outcome(PerceptionResult(clip, num_frames=20), [(problem, make_fit(problem, 2.0))],
                             SelectionConfig(min_frames=100))
    assert "--min_track_frames 100" in outcome.table("rejected").column("message")[0].as_py()
