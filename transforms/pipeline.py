"""The job as one composite transform: batches of clips in, one committed shard per batch out.

::

    BatchRef (a byte range of the run's clip listing, planned on the launcher)
        --PerceiveFitCommitFn--> ShardSummary
        (each clip perceived, the batch's tracks bundle-adjusted, every clip's rows written
         as one shard + manifest: committed as soon as the batch is fitted)

The graph uses only what every Beam runner translates: ``Create`` of the batch
references, ``Reshuffle`` and one ``ParDo`` that emits from ``process`` only. There is no
``ReadFromText`` (the DaskRunner cannot translate it), no side input (the DaskRunner
computes only the last collection of the graph) and no output from ``finish_bundle`` (the
DaskRunner collects a DoFn's outputs before ``finish_bundle`` runs). The selection over the
whole output, the dataset card and the end-of-run accounting run on the launcher after the
pipeline has finished (:mod:`beam_jobs.pseudo_gt`).
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from pipeline.dataset import schema
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.writer import WriterConfig
from pipeline.perception.inputs import clip_from_json, clip_to_json
from pipeline.records import ClipRef
from transforms.commit import FitAndCommitFn
from transforms.perceive import PerceiveClipFn
from transforms.provenance import check_worker_source
from transforms.stages import BundleAdjustStage, PerceptionStage
from transforms.storage import BeamStorage


@dataclass(frozen=True)
class BatchRef:
    """One fit batch: the clips on lines ``[first_clip, first_clip + num_clips)`` of the
    run's listing, stored as the bytes ``[start, end)`` of the JSON-lines file ``listing``.

    Only these few numbers travel in the job graph, so a listing of hundreds of thousands
    of clips never has to be embedded in it.
    """

    listing: str
    start: int
    end: int
    index: int
    first_clip: int
    num_clips: int


def read_batch(ref: BatchRef, storage=None) -> list[ClipRef]:
    """The clips of one batch, read from its byte range of the listing.

    Raises:
        ValueError: the listing changed since the launcher planned the batch (its line
            count differs), naming the listing; rerun the job to plan it again.
    """
    data = (storage or BeamStorage()).read_bytes(ref.listing)[ref.start:ref.end]
    lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    if len(lines) != ref.num_clips:
        raise ValueError(f"{ref.listing}: batch {ref.index} holds {len(lines)} clips where the launcher planned "
                         f"{ref.num_clips}; the listing was changed during the run: run the job again")
    return [clip_from_json(line) for line in lines]


@dataclass(frozen=True)
class JobSettings:
    """Everything the composite transform needs besides its stages.

    Attributes:
        selection: track selection settings.
        writer: output folder and Parquet settings.
        run: run metadata for the schemas (body model, config, code version).
        frames_mode: "eligible" (alias "selected"), "inliers" or "all" (see
            ``pipeline.dataset.selection.commit.commit_outcome``).
        batch_max_frames, batch_max_tracks: the bundle-adjustment chunk bounds inside a
            batch (a batch's tracks are fitted in chunks of at most these sizes).
        heartbeat_s: seconds between "BA batch running" lines while a batch runs.
        torch_threads: torch intra-op threads set in each worker (0: leave torch's default).
        source_hash: the launcher's :func:`transforms.provenance.source_hash`; each worker
            checks its own code against it before processing (None: no check).
        allow_source_mismatch: log a mismatch instead of failing on it.
    """

    selection: SelectionConfig
    writer: WriterConfig
    run: schema.RunMetadata
    frames_mode: str = "eligible"
    batch_max_frames: int = 32768
    batch_max_tracks: int = 256
    heartbeat_s: float = 60.0
    torch_threads: int = 0
    source_hash: str | None = None
    allow_source_mismatch: bool = False


class PerceiveFitCommitFn(beam.DoFn):
    """BatchRef -> ShardSummary: perceive every clip of the batch (a rejected or failed clip
    becomes its outcome, never an exception), bundle-adjust the batch's tracks and commit
    every clip's rows as one shard. A batch that yields no outcome yields nothing."""

    def __init__(self, perception: PerceptionStage, bundle_adjust: BundleAdjustStage, settings: JobSettings):
        s = settings
        self._source = (s.source_hash, s.allow_source_mismatch)
        self._perceive = PerceiveClipFn(perception)
        self._commit = FitAndCommitFn(bundle_adjust, s.selection, s.frames_mode, s.writer, s.run,
                                      s.batch_max_frames, s.batch_max_tracks, s.heartbeat_s, s.torch_threads)

    def setup(self):
        check_worker_source(*self._source)
        self._perceive.setup()
        self._commit.setup()

    def process(self, ref: BatchRef):
        items = [item for clip in read_batch(ref) for item in self._perceive.process(clip)]
        yield from self._commit.process(items)


class PseudoGroundTruth(beam.PTransform):
    """PCollection[BatchRef] -> PCollection[ShardSummary] (one per committed batch).

    Args:
        perception: the per-clip perception stage.
        bundle_adjust: the batched bundle-adjustment stage.
        settings: selection, writer and run settings.
    """

    def __init__(self, perception: PerceptionStage, bundle_adjust: BundleAdjustStage, settings: JobSettings):
        super().__init__()
        self._perception = perception
        self._bundle_adjust = bundle_adjust
        self._settings = settings

    def expand(self, batches):
        return batches | "PerceiveFitCommit" >> beam.ParDo(
            PerceiveFitCommitFn(self._perception, self._bundle_adjust, self._settings))


def listing_bytes(clips: list[ClipRef]) -> list[bytes]:
    """One JSON line per clip, as stored in the run's listing (see :class:`BatchRef`)."""
    return [(clip_to_json(c) + "\n").encode("utf-8") for c in clips]


def plan_batches(listing: str, lines: list[bytes], clips_per_batch: int) -> list[BatchRef]:
    """Consecutive runs of at most ``clips_per_batch`` clips of the listing, in listing order
    (deterministic: the same input and settings give the same batches)."""
    refs, offset, size = [], 0, max(1, clips_per_batch)
    for index, first in enumerate(range(0, len(lines), size)):
        chunk = lines[first:first + size]
        length = sum(len(line) for line in chunk)
        refs.append(BatchRef(listing, offset, offset + length, index, first, len(chunk)))
        offset += length
    return refs

