"""The end of a run, on the launcher after the pipeline: the selection over the whole
output, ``_common_metadata`` and the dataset card (shards themselves are committed as
batches finish: :mod:`transforms.commit`)."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.dataset import schema
from pipeline.dataset.card import write_card
from pipeline.dataset.rows import outcome_from_rejection
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.selection.table import select_output
from pipeline.dataset.writer import WriterConfig, write_common_metadata, write_shard
from pipeline.records import PerceptionResult
from transforms.storage import BeamStorage


def commit_input_rejections(rejected: Sequence[PerceptionResult], config: WriterConfig, run: schema.RunMetadata,
                            storage=None) -> None:
    """Commit the clips rejected while reading the input (bad rows) as one shard, on the
    launcher that read them (nothing to perceive or fit)."""
    if rejected:
        write_shard([outcome_from_rejection(r, "input") for r in rejected], config, run, storage or BeamStorage())


def finish_run(config: WriterConfig, run: schema.RunMetadata, selection: SelectionConfig | None,
               extra: dict | None = None, storage=None) -> dict:
    """The selection over every committed shard of the output (earlier runs included),
    ``_common_metadata``, ``stats.json`` and ``README.md``; returns the stats.

    Each clip is counted once, from the committed rows: the counts of this run alone are
    the launcher's books (:mod:`pipeline.dataset.books`).
    """
    storage = storage or BeamStorage()
    summary = select_output(config.output, selection, storage) if selection is not None else None
    write_common_metadata(config, run, storage)
    extra = dict(extra or {})
    if summary is not None:
        extra["selection"] = summary.to_json()
    return write_card(config.output, run, storage, extra)
