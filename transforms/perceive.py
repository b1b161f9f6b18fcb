"""Per-clip perception DoFn: models loaded once per worker process, rejects to a dead letter."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
import traceback

import apache_beam as beam
from apache_beam.utils.shared import Shared

from pipeline.perception.inputs import locate_keypoints
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from pipeline.dataset.rows import failed_outcome, outcome_from_rejection
from transforms import metrics, storage
from transforms.stages import PerceptionStage

LOGGER = logging.getLogger(__name__)
HEADERS = "headers"
OUTCOMES = "outcomes"


class _Loaded:
    """Holder of a set-up stage (weak-referenceable, as ``Shared`` needs)."""

    def __init__(self, stage):
        stage.setup()
        self.stage = stage


class PerceiveClipFn(beam.DoFn):
    """ClipRef -> TrackProblems (main output), plus tagged outputs:

    * ``headers``: (clip_id, PerceptionResult without problems) of each clip with tracks,
      joined with the fits later;
    * ``outcomes``: a :class:`pipeline.dataset.rows.ClipOutcome` for every rejected or failed clip
      (the dead letter: never an exception out of the DoFn for one bad clip).
    """

    def __init__(self, stage: PerceptionStage):
        self._stage = stage
        self._shared = Shared()

    def setup(self):
        key = repr(self._stage.describe())
        self._loaded = self._shared.acquire(lambda: _Loaded(self._stage), tag=key)

    def process(self, clip: ClipRef):
        metrics.inc("clips_in")
        start = time.perf_counter()
        stage = self._loaded.stage
        workdir = None
        try:
            ready = clip
            if any(storage.is_remote(p) for p in (clip.uri, clip.keypoints_uri, stage.keypoints_root)):
                workdir = storage.temporary_folder()  # decoders read local files
            if stage.keypoints_mode != "detect":
                located = locate_keypoints(clip, stage.keypoints_root, storage.exists)
                if isinstance(located, PerceptionResult):
                    if stage.keypoints_mode == "precomputed" or not stage.has_detector:
                        # A missing or broken video is the more useful reason.
                        local = clip.replace(uri=storage.stage_local(clip.uri, workdir) if workdir else clip.uri)
                        bad_video = stage.video_rejection(local)
                        yield from self._reject(dataclasses.replace(bad_video, clip=clip) if bad_video else located)
                        return
                else:
                    ready = located
            if workdir:
                ready = ready.replace(
                    uri=storage.stage_local(ready.uri, workdir),
                    keypoints_uri=storage.stage_local(ready.keypoints_uri, workdir) if ready.keypoints_uri else None,
                )
            result = stage(ready)
            result = dataclasses.replace(result, clip=clip)  # report the original uri
        except Exception as exc:  # a bug or an unexpected input: record it, keep going
            LOGGER.exception("perception failed for clip %s (%s)", clip.clip_id, clip.uri)
            metrics.inc("clips_failed_perceive")
            yield beam.pvalue.TaggedOutput(
                OUTCOMES, failed_outcome(clip, "perceive", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            )
            return
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        elapsed = time.perf_counter() - start
        metrics.seconds("perceive", elapsed)
        LOGGER.debug("perceived %s: %s, %d frames, %.1f s", clip.clip_id,
                    f"{len(result.problems)} tracks" if result.ok else f"rejected ({result.reject_reason})",
                    result.num_frames, elapsed)
        for name, value in result.stage_seconds.items():
            metrics.seconds(name, value)
        if result.num_frames > 0:
            metrics.inc("clips_decoded")
            metrics.inc("frames_decoded", result.num_frames)
        if not result.ok:
            if result.reject_reason is None:  # no problem and no reason: a stage bug
                result = dataclasses.replace(result, reject_reason=RejectReason.NO_PERSON,
                                             message=result.message or "perception returned no track")
            yield from self._reject(result)
            return
        metrics.inc("clips_perceived")
        metrics.inc("tracks_found", len(result.problems))
        for problem in result.problems:
            metrics.observe("track_frames", problem.num_frames)
            yield problem
        yield beam.pvalue.TaggedOutput(HEADERS, (clip.clip_id, dataclasses.replace(result, problems=())))

    def _reject(self, result: PerceptionResult):
        reason = result.reject_reason
        if reason == RejectReason.NO_PERSON:
            metrics.inc("clips_no_person")
        elif reason == RejectReason.CROWDED:
            metrics.inc("clips_crowded")
        yield beam.pvalue.TaggedOutput(OUTCOMES, outcome_from_rejection(result, "perceive"))
