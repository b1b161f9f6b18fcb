"""The per-clip log line says what the detector saw of the clip."""

from __future__ import annotations

from pipeline.dataset.rows import outcome_from_rejection
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from transforms.commit import _clip_line


def test_the_clip_line_names_people_per_frame_and_the_smallest():
    clip = ClipRef(clip_id="c1", uri="/videos/c1.mp4")
    crowded = PerceptionResult(clip, reject_reason=RejectReason.CROWDED, message="up to 9 people", num_frames=100,
                               max_people=9, detections_median=4.0, detections_max=11, smallest_person_px=31.6,
                               duplicate_tracks=0)  # fmt: skip
    line = _clip_line(outcome_from_rejection(crowded))
    assert line == ("clip c1: rejected (crowded, stage perceive): up to 9 people; people per frame median 4, "
                    "max 11, smallest 32 px")  # fmt: skip
    unread = PerceptionResult(clip, reject_reason=RejectReason.UNREADABLE, message="not a video")
    assert _clip_line(outcome_from_rejection(unread)) == "clip c1: rejected (unreadable, stage perceive): not a video"
