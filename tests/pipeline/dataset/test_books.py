"""The run's books and its one set of track counts."""

from __future__ import annotations

from pipeline.dataset.books import count_track_verdicts, run_books


def test_track_verdicts_add_up_and_read_as_one_line():
    reasons = ["selected", "split", "too_short", "selected", "below_best_fraction", "too_short", "diverged"]
    v = count_track_verdicts(reasons)
    assert (v.kept, v.split, v.rejected, v.total) == (2, 1, 4, 7)
    assert v.rejected_by_reason == {"below_best_fraction": 1, "diverged": 1, "too_short": 2}
    assert v.line() == "7 tracks: 2 kept, 1 split, 4 rejected (below_best_fraction 1, diverged 1, too_short 2)"
    assert v.to_json()["tracks"] == 7


def test_undecided_tracks_wait_for_the_selection():
    v = count_track_verdicts(["eligible", "eligible", "too_short"], undecided="eligible")
    assert v.undecided == 2 and v.total == 3 and v.rejected_by_reason == {"too_short": 1}
    assert v.line().startswith("3 tracks: 2 wait for the selection, 0 split, 1 rejected")


def test_run_books_count_only_the_runs_clips_tracks():
    manifests = [{"shard": "s", "clips": {"a": {"outcome": "pending", "tracks": 2}, "b": {"outcome": "pending", "tracks": 1}}}]
    final = {"a": {"outcome": "kept", "selected_tracks": 1}, "b": {"outcome": "rejected", "reason": "no_track_selected"}}
    reasons = {"a": ["selected", "too_short"], "b": ["below_best_fraction"], "old": ["selected"]}
    books = run_books({"a", "b"}, manifests, final, reasons)
    assert books.balanced and books.tracks == 3 == books.track_verdicts.total
    assert books.track_verdicts.kept == 1 and books.to_json()["track_verdicts"]["rejected"] == 2
