"""The job as one composite transform: clips in, committed shards, then the selection and a
dataset card out.

::

    ClipRef --PerceiveWholeClipFn--> PerceptionResult | ClipOutcome (rejects)
        (+ input rejects) --BatchClips--> [work] --FitAndCommitFn--> ShardSummary
        (BA of the batch, rows, shard + manifest: committed as soon as the batch is fitted)
    all ShardSummaries --Finish--> selection/ over the whole output, _common_metadata,
        stats.json, README.md

See :mod:`transforms.commit` for why no GroupByKey stands before the write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import apache_beam as beam

from pipeline.dataset import schema
from pipeline.dataset.rows import outcome_from_rejection
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.writer import WriterConfig
from pipeline.records import PerceptionResult
from transforms import metrics
from transforms.commit import FitAndCommitFn, PerceiveWholeClipFn, batch_clips
from transforms.stages import BundleAdjustStage, PerceptionStage
from transforms.write import WriteCard


@dataclass(frozen=True)
class JobSettings:
    """Everything the composite transform needs besides its stages.

    Attributes:
        selection: track selection settings.
        writer: output folder and Parquet settings.
        run: run metadata for the schemas (body model, config, code version).
        frames_mode: "eligible" (alias "selected"), "inliers" or "all" (see
            ``pipeline.dataset.selection.commit.commit_outcome``).
        clips_per_shard: most clips (about) of one batch, hence of one shard.
        batch_max_frames, batch_max_tracks: the BA batching boundary (batches fill up to
            these bounds within a bundle; a batch holds whole clips).
        heartbeat_s: seconds between "BA batch running" lines while a batch runs.
        torch_threads: torch intra-op threads set in each bundle-adjustment worker (0: leave
            torch's default).
        card_extra: extra entries for ``stats.json`` (e.g. the input description).
    """

    selection: SelectionConfig
    writer: WriterConfig
    run: schema.RunMetadata
    frames_mode: str = "eligible"
    clips_per_shard: int = 64
    batch_max_frames: int = 32768
    batch_max_tracks: int = 256
    heartbeat_s: float = 60.0
    torch_threads: int = 0
    card_extra: dict = field(default_factory=dict)


class PseudoGroundTruth(beam.PTransform):
    """PCollection[ClipRef] -> PCollection[dict] (one element: the output's stats).

    Args:
        perception: the per-clip perception stage.
        bundle_adjust: the batched bundle-adjustment stage.
        settings: selection, writer and run settings.
        input_rejects: clips rejected while reading the input (bad rows): they are
            written to ``rejected/`` and counted as clips in.
    """

    def __init__(
        self,
        perception: PerceptionStage,
        bundle_adjust: BundleAdjustStage,
        settings: JobSettings,
        input_rejects: Sequence[PerceptionResult] = (),
    ):
        super().__init__()
        self._perception = perception
        self._bundle_adjust = bundle_adjust
        self._settings = settings
        self._input_rejects = list(input_rejects)

    def expand(self, clips):
        s = self._settings
        perceived = clips | "Perceive" >> beam.ParDo(PerceiveWholeClipFn(self._perception))
        input_rejects = (
            clips.pipeline
            | "InputRejects" >> beam.Create(self._input_rejects, reshuffle=False)
            | "RejectRows" >> beam.Map(_input_reject_outcome)
        )
        shards = (
            (input_rejects, perceived)
            | "AllClips" >> beam.Flatten()
            | "BatchClips" >> batch_clips(s.batch_max_frames, s.clips_per_shard)
            | "FitAndCommit" >> beam.ParDo(FitAndCommitFn(
                self._bundle_adjust, s.selection, s.frames_mode, s.writer, s.run,
                s.batch_max_frames, s.batch_max_tracks, s.heartbeat_s, s.torch_threads))
        )
        return shards | "Finish" >> WriteCard(s.writer, s.run, s.card_extra, s.selection)


def _input_reject_outcome(result: PerceptionResult):
    metrics.inc("clips_in")
    return outcome_from_rejection(result, "input")
