"""The end of a run: the selection over the whole output, ``_common_metadata`` and the
dataset card (shards themselves are written as batches finish: :mod:`transforms.commit`)."""

from __future__ import annotations

import apache_beam as beam

from pipeline.dataset import schema
from pipeline.dataset.card import write_card
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.selection.table import select_output
from pipeline.dataset.writer import WriterConfig, write_common_metadata
from pipeline.records import RejectReason
from transforms import metrics
from transforms.storage import BeamStorage


def finish_run(config: WriterConfig, run: schema.RunMetadata, selection: SelectionConfig | None,
                  extra: dict | None = None, this_run: set[str] | None = None, storage=None) -> dict:
    """The end of a run: the selection over every committed shard of the output (earlier
    runs included), ``_common_metadata``, ``stats.json`` and ``README.md``; returns the stats.

    Args:
        this_run: clip ids this run committed: their final outcomes are counted in the
            ``clips_kept`` / ``clips_rejected`` / ``rejected_no_track_selected`` /
            ``tracks_selected`` counters (inside a pipeline).
    """
    storage = storage or BeamStorage()
    summary = select_output(config.output, selection, storage) if selection is not None else None
    write_common_metadata(config, run, storage)
    extra = dict(extra or {})
    if summary is not None:
        extra["selection"] = summary.to_json()
        for clip_id in this_run or ():
            final = summary.outcomes.get(clip_id)
            if final is None:
                continue
            if final["outcome"] == "kept":
                metrics.inc("clips_kept")
            elif final["reason"] == RejectReason.NO_TRACK_SELECTED:
                metrics.inc("clips_rejected")
                metrics.inc(f"rejected_{RejectReason.NO_TRACK_SELECTED}")
            metrics.inc("tracks_selected", final["selected_tracks"])
            metrics.inc("inlier_frames", final["inlier_frames"])
    return write_card(config.output, run, storage, extra)


class WriteCard(beam.PTransform):
    """After every shard: the selection over the whole output, ``_common_metadata`` files,
    ``stats.json`` and ``README.md`` over all committed shards of the output (earlier runs
    included). Emits the stats dict."""

    def __init__(self, config: WriterConfig, run: schema.RunMetadata, extra: dict | None = None,
                 selection: SelectionConfig | None = None):
        super().__init__()
        self._config, self._run, self._extra, self._selection = config, run, extra or {}, selection

    def expand(self, summaries):
        config, run, extra, selection = self._config, self._run, self._extra, self._selection

        def finish(shards):
            this_run = {clip_id for shard in shards for clip_id in shard.clips}
            return finish_run(config, run, selection, {**extra, "shards_this_run": len(shards)}, this_run)

        return summaries | "AllShards" >> beam.combiners.ToList() | "WriteCard" >> beam.Map(finish)
