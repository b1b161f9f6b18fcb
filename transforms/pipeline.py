"""The job as one composite transform: clips in, shards and a dataset card out.

::

    ClipRef --PerceiveClipFn--> TrackProblem --BatchElements--> [TrackProblem]
        --BundleAdjustBatchFn--> (clip_id, (problem, fit)) --CoGroupByKey with headers-->
        --SelectClipFn(threshold side input)--> ClipOutcome
    input rejects + perception rejects + outcomes --> WriteShards --> WriteCard
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import apache_beam as beam

from pipeline.dataset import schema
from pipeline.records import PerceptionResult
from pipeline.dataset.rows import outcome_from_rejection
from pipeline.dataset.selection import SelectionConfig
from pipeline.dataset.writer import WriterConfig
from transforms import metrics
from transforms.bundle_adjust import BundleAdjustBatchFn, batch_problems
from transforms.perceive import HEADERS, OUTCOMES, PerceiveClipFn
from transforms.select import RunThreshold, SelectClipFn, count_outcome
from transforms.stages import BundleAdjustStage, PerceptionStage
from transforms.write import WriteCard, WriteShards


@dataclass(frozen=True)
class JobSettings:
    """Everything the composite transform needs besides its stages.

    Attributes:
        selection: track selection settings.
        writer: output folder and Parquet settings.
        run: run metadata for the schemas (body model, config, code version).
        frames_mode: "selected", "inliers" or "all" (see ``pipeline.dataset.rows.outcome_from_fits``).
        num_buckets: shards of this run (clips are hashed into them).
        batch_max_frames, batch_max_tracks: the BA batching boundary (batches fill up to
            these bounds within a bundle).
        torch_threads: torch intra-op threads set in each bundle-adjustment worker (0: leave
            torch's default).
        card_extra: extra entries for ``stats.json`` (e.g. the input description).
    """

    selection: SelectionConfig
    writer: WriterConfig
    run: schema.RunMetadata
    frames_mode: str = "selected"
    num_buckets: int = 1
    batch_max_frames: int = 32768
    batch_max_tracks: int = 256
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
        perceived = clips | "Perceive" >> beam.ParDo(PerceiveClipFn(self._perception)).with_outputs(
            HEADERS, OUTCOMES, main="problems"
        )
        fits = (
            perceived.problems
            | "BatchTracks" >> batch_problems(s.batch_max_frames, s.batch_max_tracks)
            | "BundleAdjust" >> beam.ParDo(BundleAdjustBatchFn(self._bundle_adjust, s.torch_threads))
        )
        threshold = fits | "RunThreshold" >> RunThreshold(s.selection)
        selected = (
            {"headers": perceived[HEADERS], "fits": fits}
            | "JoinTracks" >> beam.CoGroupByKey()
            | "Select" >> beam.ParDo(SelectClipFn(s.selection, s.frames_mode), threshold=beam.pvalue.AsSingleton(threshold))
        )
        input_rejects = (
            clips.pipeline
            | "InputRejects" >> beam.Create(self._input_rejects, reshuffle=False)
            | "RejectRows" >> beam.Map(_input_reject_outcome)
        )
        outcomes = (
            (input_rejects, perceived[OUTCOMES], selected)
            | "AllOutcomes" >> beam.Flatten()
            | "CountOutcomes" >> beam.Map(count_outcome)
        )
        shards = outcomes | "WriteShards" >> WriteShards(s.writer, s.run, s.num_buckets)
        return shards | "WriteCard" >> WriteCard(s.writer, s.run, s.card_extra)


def _input_reject_outcome(result: PerceptionResult):
    metrics.inc("clips_in")
    return outcome_from_rejection(result, "input")
