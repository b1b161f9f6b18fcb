"""Per-clip perception DoFn: models loaded once per worker process, rejects to a dead letter."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import traceback

import apache_beam as beam
from apache_beam.utils.shared import Shared

from pipeline.dataset.rows import ClipOutcome, failed_outcome, outcome_from_rejection
from pipeline.perception.keypoint_source import choose_keypoints, with_file_source
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from pipeline.perception.stage_timer import StageTimer
from transforms import metrics, storage
from transforms.stages import PerceptionStage

LOGGER = logging.getLogger(__name__)


class _Loaded:
    """Holder of a set-up stage (weak-referenceable, as ``Shared`` needs)."""

    def __init__(self, stage):
        stage.setup()
        self.stage = stage


class PerceiveClipFn(beam.DoFn):
    """ClipRef -> one element per clip: its PerceptionResult with every track problem, or the
    :class:`pipeline.dataset.rows.ClipOutcome` of a rejected or failed clip (the dead letter:
    never an exception out of the DoFn for one bad clip).

    The clip's keypoint source is decided by
    :func:`pipeline.perception.keypoint_source.choose_keypoints`; a clip without keypoints
    whose video is also missing or unreadable is rejected for its video.
    """

    def __init__(self, stage: PerceptionStage):
        self._stage = stage
        self._shared = Shared()

    def setup(self):
        key = repr(self._stage.describe())
        self._loaded = self._shared.acquire(lambda: _Loaded(self._stage), tag=key)

    def process(self, clip: ClipRef):
        metrics.inc("clips_in")
        timer = StageTimer()
        try:
            with timer.stage("perceive"):
                result, perceived = self._perceive(clip)
        except Exception as exc:  # a bug or an unexpected input: record it, keep going
            LOGGER.exception("perception failed for clip %s (%s)", clip.clip_id, clip.uri)
            metrics.inc("clips_failed_perceive")
            yield failed_outcome(clip, "perceive", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return
        if perceived:
            _count_perceived(result, timer.seconds["perceive"])
        if not result.ok:
            if result.reject_reason is None:  # no problem and no reason: a stage bug
                result = dataclasses.replace(result, reject_reason=RejectReason.NO_PERSON,
                                             message=result.message or "perception returned no track")
            yield _rejected(result)
            return
        metrics.inc("clips_perceived")
        metrics.inc("tracks_found", len(result.problems))
        for problem in result.problems:
            metrics.observe("track_frames", problem.num_frames)
        yield result

    def _perceive(self, clip: ClipRef) -> tuple[PerceptionResult, bool]:
        """The clip's result (reporting the clip as given), and whether the stage ran on it."""
        stage = self._loaded.stage
        workdir = None
        try:
            if any(storage.is_remote(p) for p in (clip.uri, clip.keypoints_uri, stage.keypoints_root)):
                workdir = storage.temporary_folder()  # decoders read local files
            chosen = choose_keypoints(clip, stage.keypoints_source, stage.has_detector, stage.keypoints_root,
                                      storage.exists)
            if isinstance(chosen, PerceptionResult):
                bad_video = stage.video_rejection(clip.replace(uri=_staged(clip.uri, workdir)))
                return (dataclasses.replace(bad_video, clip=clip) if bad_video else chosen), False
            ready = chosen.replace(uri=_staged(chosen.uri, workdir), keypoints_uri=_staged(chosen.keypoints_uri, workdir))
            result = stage(ready)
            if ready.keypoints_uri != chosen.keypoints_uri:  # a local copy was read: name the file as given
                result = with_file_source(result, chosen.keypoints_uri)
            return dataclasses.replace(result, clip=clip), True  # report the original uri
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)


def _staged(path: str | None, workdir: str | None) -> str | None:
    """A local copy of ``path`` in ``workdir`` (None: ``path`` is local already)."""
    return storage.stage_local(path, workdir) if workdir and path else path


def _count_perceived(result: PerceptionResult, seconds: float) -> None:
    """Metrics of a clip the perception stage ran on: its wall seconds, per stage and in all."""
    metrics.seconds("perceive", seconds)
    LOGGER.debug("perceived %s: %s, %d frames, %.1f s", result.clip.clip_id,
                 f"{len(result.problems)} tracks" if result.ok else f"rejected ({result.reject_reason})",
                 result.num_frames, seconds)
    for name, value in result.stage_seconds.items():
        metrics.seconds(name, value)
    if result.num_frames > 0:
        metrics.inc("clips_decoded")
        metrics.inc("frames_decoded", result.num_frames)
    if result.duplicate_tracks:
        metrics.inc("tracks_duplicate", result.duplicate_tracks)


def _rejected(result: PerceptionResult) -> ClipOutcome:
    reason = result.reject_reason
    if reason == RejectReason.NO_PERSON:
        metrics.inc("clips_no_person")
    elif reason == RejectReason.CROWDED:
        metrics.inc("clips_crowded")
    return outcome_from_rejection(result, "perceive")
