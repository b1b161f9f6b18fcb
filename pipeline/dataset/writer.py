"""Parquet shards: writing them, committing them with their manifest, retiring clips.

Layout under the output folder (see ``docs/schema.md``)::

    frames/shard-<digest>.parquet   tracks/shard-<digest>.parquet   rejected/shard-<digest>.parquet
    <dataset>/_common_metadata      _manifests/shard-<digest>.json  README.md   stats.json

A shard holds every row of a set of clips (all three datasets). Its name is a digest of
its sorted clip ids, so writing the same clips again (a retried bundle) replaces the same
files, byte for byte, and never duplicates rows. Files are written whole and moved into
place; the shard's manifest is written last and is its commit record: a resumed run skips
the clips of committed manifests and removes shard files no manifest names (left by a run
that died between a data file and its manifest).

Manifests are read and written by :mod:`pipeline.dataset.manifests`, ``stats.json`` and
``README.md`` by :mod:`pipeline.dataset.card`. File access goes through a
:class:`pipeline.dataset.fs.Storage` so the Beam layer can pass one backed by Beam's
``FileSystems`` (gs://...); :class:`pipeline.dataset.fs.ArrowStorage` serves local folders.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dataset import schema
from pipeline.dataset.fs import TEMPORARY_NAME, ArrowStorage, Storage
from pipeline.dataset.manifests import MANIFESTS, ShardSummary, manifest_files, read_manifests, write_manifest
from pipeline.dataset.rows import ClipOutcome

LOGGER = logging.getLogger(__name__)
COMMON_METADATA = "_common_metadata"


@dataclass(frozen=True)
class WriterConfig:
    """How shards are written.

    Attributes:
        output: the output folder (local path or URL).
        row_group_size: rows per Parquet row group (frames ~1.6 KB each: 4096 rows is a
            ~6 MB group, small enough for readers to shard a file across workers).
        compression: Parquet codec (zstd).
        compression_level: zstd level.
        store_crops: ``frames/`` has the ``crop_jpeg`` column (null where a row has no crop).
    """

    output: str
    row_group_size: int = 4096
    compression: str = "zstd"
    compression_level: int = 3
    store_crops: bool = False

    def __post_init__(self) -> None:
        if self.row_group_size < 1:
            raise ValueError(f"row_group_size={self.row_group_size}: must be >= 1")


def shard_name(clip_ids: Iterable[str]) -> str:
    """Deterministic shard name from the set of clip ids it holds."""
    digest = hashlib.sha256("\n".join(sorted(set(clip_ids))).encode()).hexdigest()[:20]
    return f"shard-{digest}"


def shard_bucket(clip_id: str, num_buckets: int) -> int:
    """Stable bucket of a clip (same on every worker and run, unlike ``hash``)."""
    return int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16) % max(1, num_buckets)


def parquet_bytes(table: pa.Table, config: WriterConfig) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink,
        compression=config.compression,
        compression_level=config.compression_level,
        row_group_size=config.row_group_size,
        use_dictionary=["clip_id", "label", "split", "source_uri", "init_source", "fit_status",
                        "selection_reason", "outcome", "reason", "stage"],
        write_statistics=["clip_id", "track_id", "frame_index", "e_norm", "inlier", "track_selected", "selected", "label"],
    )
    return sink.getvalue().to_pybytes()


def _sorted(table: pa.Table, dataset: str) -> pa.Table:
    return table.sort_by([(key, "ascending") for key in schema.SORT_KEYS[dataset]])


def write_shard(
    outcomes: Sequence[ClipOutcome],
    config: WriterConfig,
    run: schema.RunMetadata,
    storage: Storage | None = None,
) -> ShardSummary:
    """Write one shard (rows of every dataset for these clips) and then its manifest.

    Idempotent: the same clips give the same file names and bytes.

    Raises:
        ValueError: two outcomes of the same clip in one shard.
    """
    storage = storage or ArrowStorage()
    ids = [o.clip_id for o in outcomes]
    if len(set(ids)) != len(ids):
        dupes = sorted(k for k, v in Counter(ids).items() if v > 1)
        raise ValueError(f"shard has several outcomes for clips {dupes[:5]}; each clip must end in one place")
    name = shard_name(ids)
    ordered = sorted(outcomes, key=lambda o: o.clip_id)
    files: dict[str, str] = {}
    rows: dict[str, int] = {}
    for dataset in schema.DATASETS:
        tables = [t for o in ordered if (t := o.table(dataset)) is not None and t.num_rows]
        rows[dataset] = sum(t.num_rows for t in tables)
        if not tables:
            continue
        target = schema.schema_for(dataset, run, crops=config.store_crops)
        tables = [_conform(t, target) for t in tables]
        table = _sorted(pa.concat_tables(tables), dataset).replace_schema_metadata(target.metadata)
        names = []
        for split, part in _split_parts(table):  # one file per source split: HF splits follow it
            file_name = f"{name}.{split}.parquet"
            storage.write_bytes(storage.join(config.output, dataset, file_name), parquet_bytes(part, config))
            names.append(file_name)
        files[dataset] = names
    clips = {
        o.clip_id: {
            "outcome": o.outcome, "reason": o.reason, "stage": o.stage,
            "label": _label(o), "tracks": o.num_tracks, "selected_tracks": o.num_selected_tracks,
            "frames": o.num_frames_written, "inlier_frames": o.num_inlier_frames,
            "keypoint_source": o.keypoint_source, "settings_hash": run.settings_hash,
        }
        for o in ordered
    }
    summary = ShardSummary(name, clips, files, rows)
    write_manifest(config.output, summary, storage)
    return summary


UNSPLIT = "unsplit"


def split_file_tag(split: str | None) -> str:
    """The part of a shard file name that names its rows' source split (``train``,
    ``val``, ...; ``unsplit`` when the input had none; other characters become ``-``)."""
    text = "".join(c if c.isalnum() or c in "_-" else "-" for c in (split or "").strip())
    return text or UNSPLIT


def _split_parts(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """(split tag, rows of that split) in tag order (rows keep their order)."""
    splits = [split_file_tag(v) for v in table.column("split").to_pylist()]
    tags = sorted(set(splits))
    if len(tags) == 1:
        return [(tags[0], table)]
    import numpy as np

    values = np.array(splits, dtype=object)
    return [(tag, table.filter(pa.array(values == tag))) for tag in tags]


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """Cast a clip's rows to the dataset schema: an optional column the rows lack is null,
    one the run does not store is dropped."""
    for f in target:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(target.names).cast(target)


def _label(outcome: ClipOutcome) -> str:
    for dataset in ("tracks", "rejected", "frames"):
        table = outcome.table(dataset)
        if table is not None and table.num_rows:
            return str(table.column("label")[0].as_py())
    return ""


def write_common_metadata(config: WriterConfig, run: schema.RunMetadata, storage: Storage | None = None,
                          datasets: tuple[str, ...] = schema.DATASETS) -> None:
    """Schema-only ``_common_metadata`` file in each dataset folder (readers check it)."""
    storage = storage or ArrowStorage()
    for dataset in datasets:
        sink = pa.BufferOutputStream()
        pq.write_metadata(schema.schema_for(dataset, run, crops=config.store_crops), sink)
        storage.write_bytes(storage.join(config.output, dataset, COMMON_METADATA), sink.getvalue().to_pybytes())


def retire_clips(
    output: str,
    clip_ids: Iterable[str],
    config: WriterConfig | None = None,
    storage: Storage | None = None,
) -> int:
    """Take clips out of the committed shards so that a run can write them again.

    Each shard holding one of them is rewritten without their rows, in every dataset, under
    the name of its remaining clips: the new data files first, then the old manifest is
    deleted, then the new manifest written, then the old data files deleted. A crash at any
    point leaves no clip committed twice: at worst the shard's other clips are uncommitted
    and the next run removes the orphan files and processes them again. Launcher only,
    never while a job writes into ``output``.

    Args:
        output: the output folder.
        clip_ids: clips to take out (ids not committed are ignored).
        config: Parquet settings for the rewritten shards (``output`` is taken from here
            when given).
        storage: file access.

    Returns:
        The number of clips taken out.
    """
    storage = storage or ArrowStorage()
    config = config or WriterConfig(output)
    wanted = set(clip_ids)
    retired = 0
    for manifest in read_manifests(output, storage):
        gone = sorted(wanted & set(manifest["clips"]))
        if not gone:
            continue
        keep = sorted(set(manifest["clips"]) - set(gone))
        old, new = manifest["shard"], shard_name(keep) if keep else None
        files: dict[str, list[str]] = {}
        rows: dict[str, int] = {d: 0 for d in schema.DATASETS}
        for dataset in schema.DATASETS:
            tables = [pq.read_table(pa.BufferReader(storage.read_bytes(storage.join(output, dataset, name))))
                      for name in manifest_files(manifest, dataset)]
            if not tables:
                continue
            table = pa.concat_tables(tables)
            mask = pc.invert(pc.is_in(table.column("clip_id"), value_set=pa.array(gone, pa.string())))
            table = table.filter(mask)
            rows[dataset] = table.num_rows
            if table.num_rows and new is not None:
                files[dataset] = []
                for split, part in _split_parts(table):  # the same one-file-per-split layout
                    name = f"{new}.{split}.parquet"
                    storage.write_bytes(storage.join(output, dataset, name), parquet_bytes(part, config))
                    files[dataset].append(name)
        storage.delete(storage.join(output, MANIFESTS, f"{old}.json"))
        if new is not None:
            write_manifest(output, ShardSummary(new, {k: manifest["clips"][k] for k in keep}, files, rows), storage)
        for dataset in schema.DATASETS:
            for name in manifest_files(manifest, dataset):
                storage.delete(storage.join(output, dataset, name))
        retired += len(gone)
    return retired


def remove_orphan_shards(output: str, storage: Storage | None = None) -> list[str]:
    """Delete shard files no manifest commits (a run died between writing a data file and
    its manifest) and half-written temporary files (a writer killed mid-file); returns the
    deleted paths. Run before a job starts, never during one."""
    storage = storage or ArrowStorage()
    removed = []
    # Half-written files of a killed writer (local writes' temporary names) go first.
    for folder in (output, storage.join(output, MANIFESTS), *(storage.join(output, d) for d in schema.DATASETS)):
        for path in storage.list(folder):
            if TEMPORARY_NAME.search(os.path.basename(path)):
                storage.delete(path)
                removed.append(path)
    committed = {m["shard"] for m in read_manifests(output, storage)}
    for dataset in schema.DATASETS:
        for path in storage.list(storage.join(output, dataset)):
            base = os.path.basename(path)
            if base.startswith("shard-") and base.split(".")[0] not in committed:
                storage.delete(path)
                removed.append(path)
    if removed:
        LOGGER.info("removed %d uncommitted shard files under %s (left by an interrupted run)", len(removed), output)
    return removed
