"""Clip-level records shared by the stages in ``pipeline/`` and the Beam layer.

Track-level records (:class:`optimize.problem.TrackProblem`, :class:`TrackFit`) live in
``optimize/`` because the solver consumes them and may not import ``pipeline``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from optimize.problem import TrackFit, TrackProblem

__all__ = [
    "ClipRef",
    "PerceptionResult",
    "RejectReason",
    "TrackFit",
    "TrackProblem",
    "clip_id_for",
]


class RejectReason:
    """Reason codes for clip-level rejections; the ``reason`` column of ``rejected/``.

    A *rejection* is an expected outcome of the data (no person, crowded, ...); a
    *failure* is an unexpected exception, recorded with reason ``FAILED`` and the error.
    """

    MISSING_FILE = "missing_file"
    NOT_A_FILE = "not_a_file"
    UNREADABLE = "unreadable"
    NO_VIDEO_STREAM = "no_video_stream"
    ZERO_FRAMES = "zero_frames"
    TOO_LONG = "too_long"
    TIMEOUT = "timeout"
    MISSING_KEYPOINTS = "missing_keypoints"
    CORRUPT_KEYPOINTS = "corrupt_keypoints"
    NO_PERSON = "no_person"
    TOO_SMALL = "too_small"
    CROWDED = "crowded"
    BAD_INPUT_ROW = "bad_input_row"
    NO_TRACK_SELECTED = "no_track_selected"
    ALL_TRACKS_DIVERGED = "all_tracks_diverged"
    FAILED = "failed"


def _seconds_text(value: float) -> str:
    """``10`` -> ``000010``; ``1.2`` -> ``000001.2`` (microsecond resolution, no trailing zeros)."""
    micros = int(round(float(value) * 1_000_000))
    whole, fraction = divmod(micros, 1_000_000)
    text = f"{whole:06d}"
    return text if fraction == 0 else f"{text}.{fraction:06d}".rstrip("0")


def clip_id_for(youtube_id: str, time_start: float, time_end: float) -> str:
    """Deterministic clip id, e.g. ``abc123_000010_000020`` (Kinetics file-name style).

    Whole seconds give Kinetics' file stem; a fractional bound keeps its fraction
    (``abc_000001.2_000003.4``, microsecond resolution), so distinct ranges of one video
    never share an id.
    """
    return f"{youtube_id}_{_seconds_text(time_start)}_{_seconds_text(time_end)}"


def stable_hash(text: str) -> str:
    """Short deterministic hash (12 hex chars) used for ids of clips without a youtube id."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class ClipRef:
    """One input clip, as read from a glob, a Kinetics CSV or a manifest.

    Attributes:
        clip_id: deterministic id (see :func:`clip_id_for`); unique within a run.
        uri: path or URL of the video file (local path or gs://...).
        label: action label ("" when unknown).
        split: "train" / "val" / "test" / "" when unknown.
        time_start, time_end: seconds of the source video to use (Kinetics time range);
            ``time_end`` None means to the end. For Kinetics clips that were already cut
            to the range (file names ``<id>_<start>_<end>.mp4``) both are None.
        keypoints_uri: optional precomputed-keypoints file/dir for this clip.
        extra: small string metadata carried to the rows.
    """

    clip_id: str
    uri: str
    label: str = ""
    split: str = ""
    time_start: float | None = None
    time_end: float | None = None
    keypoints_uri: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def replace(self, **changes) -> "ClipRef":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PerceptionResult:
    """What :func:`pipeline.perception.perceive.perceive_clip` returns for one clip.

    Exactly one of ``problems`` (non-empty) or ``reject_reason`` is meaningful.

    Attributes:
        clip: the input clip.
        problems: the per-track problems for bundle adjustment.
        reject_reason: a :class:`RejectReason` code when the clip yields no problem.
        message: human-readable detail (the decoder's error, the frame of a bad JSON...).
        num_frames: decoded frames.
        image_size: (width, height) of decoded frames, pixels (0, 0 if never decoded).
        fps: decoded frame rate.
        max_people: most people in any single frame that the crowd rule counts: detections
            at least ``PerceptionConfig.min_person_height`` tall.
        detections_median: median over the decoded frames of the people detected per frame
            (every size, after the pose-aware NMS).
        detections_max: most people detected in any frame (every size).
        smallest_person_px: box height of the smallest person detected, pixels of the
            decoded frame (NaN: nobody detected).
        duplicate_tracks: tracks dropped as following a person another track follows
            (:func:`pipeline.perception.nms.duplicate_tracks`).
        stage_seconds: wall seconds per stage ("decode", "detect", "track", "init").
        stage_cpu_seconds: process CPU seconds per stage (all threads of the process).
        init_source: "hmr" or "keypoints".
        keypoint_source: where the keypoints came from,
            ``detector:<weights>@sha256:<12 hex>`` or ``keypoints:<path>`` (see
            :mod:`pipeline.perception.keypoint_source`); "" when not decided.
    """

    clip: ClipRef
    problems: tuple[TrackProblem, ...] = ()
    reject_reason: str | None = None
    message: str = ""
    num_frames: int = 0
    image_size: tuple[int, int] = (0, 0)
    fps: float = 0.0
    max_people: int = 0
    detections_median: float = 0.0
    detections_max: int = 0
    smallest_person_px: float = float("nan")
    duplicate_tracks: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
    init_source: str = ""
    keypoint_source: str = ""

    @property
    def ok(self) -> bool:
        return self.reject_reason is None and len(self.problems) > 0
