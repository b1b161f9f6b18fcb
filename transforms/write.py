"""Shard writing: outcomes grouped into deterministic shards, then the dataset card."""

from __future__ import annotations

import time

import apache_beam as beam

from pipeline.dataset import schema
from pipeline.dataset.writer import WriterConfig, shard_bucket, write_card, write_common_metadata, write_shard
from transforms import metrics
from transforms.storage import BeamStorage


class WriteShardFn(beam.DoFn):
    """(bucket, [ClipOutcome, ...]) -> ShardSummary, after writing the shard's files and
    then its manifest. A retried bundle writes the same names and bytes again."""

    def __init__(self, config: WriterConfig, run: schema.RunMetadata):
        self._config = config
        self._run = run

    def process(self, element):
        _, outcomes = element
        start = time.perf_counter()
        summary = write_shard(list(outcomes), self._config, self._run, BeamStorage())
        metrics.seconds("write", time.perf_counter() - start)
        metrics.inc("shards_written")
        yield summary


class WriteShards(beam.PTransform):
    """ClipOutcomes -> ShardSummaries: ``num_buckets`` shards keyed by a stable hash of the
    clip id (the shard name is a digest of the clips it holds)."""

    def __init__(self, config: WriterConfig, run: schema.RunMetadata, num_buckets: int):
        super().__init__()
        self._config, self._run, self._buckets = config, run, max(1, num_buckets)

    def expand(self, outcomes):
        buckets = self._buckets
        return (
            outcomes
            | "KeyByShard" >> beam.Map(lambda o: (shard_bucket(o.clip_id, buckets), o))
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(WriteShardFn(self._config, self._run))
        )


class WriteCard(beam.PTransform):
    """After every shard: ``_common_metadata`` files, ``stats.json`` and ``README.md`` over all
    committed shards of the output (earlier runs included). Emits the stats dict."""

    def __init__(self, config: WriterConfig, run: schema.RunMetadata, extra: dict | None = None):
        super().__init__()
        self._config, self._run, self._extra = config, run, extra or {}

    def expand(self, summaries):
        config, run, extra = self._config, self._run, self._extra

        def finish(shards):
            storage = BeamStorage()
            write_common_metadata(config, run, storage)
            return write_card(config.output, run, storage, {**extra, "shards_this_run": len(shards)})

        return summaries | "AllShards" >> beam.combiners.ToList() | "WriteCard" >> beam.Map(finish)


