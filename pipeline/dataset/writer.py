"""Parquet shards, commit manifests, the dataset card and the stats JSON.

Layout under the output folder (see ``docs/schema.md``)::

    frames/shard-<digest>.parquet   tracks/shard-<digest>.parquet   rejected/shard-<digest>.parquet
    <dataset>/_common_metadata      _manifests/shard-<digest>.json  README.md   stats.json

A shard holds every row of a set of clips (all three datasets). Its name is a digest of
its sorted clip ids, so writing the same clips again (a retried bundle) replaces the same
files, byte for byte, and never duplicates rows. Files are written whole and moved into
place; the shard's manifest is written last and is its commit record: a resumed run skips
the clips of committed manifests and removes shard files no manifest names (left by a run
that died between a data file and its manifest).

File access goes through a :class:`Storage` so the Beam layer can pass one backed by
Beam's ``FileSystems`` (gs://...); :class:`LocalStorage` serves local folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dataset import schema
from pipeline.dataset.rows import ClipOutcome

LOGGER = logging.getLogger(__name__)
MANIFESTS = "_manifests"
COMMON_METADATA = "_common_metadata"
STATS_FILE = "stats.json"
CARD_FILE = "README.md"


class Storage(Protocol):
    """The few file operations the writer needs (paths are strings: local or URLs)."""

    def join(self, *parts: str) -> str: ...
    def write_bytes(self, path: str, data: bytes) -> None: ...  # whole file, moved into place
    def read_bytes(self, path: str) -> bytes: ...
    def list(self, folder: str) -> list[str]: ...  # files directly inside folder (full paths)
    def delete(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...


_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{8}$")


class LocalStorage:
    """:class:`Storage` on the local disk; writes go to a temporary name then ``os.replace``."""

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def write_bytes(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def list(self, folder: str) -> list[str]:
        if not os.path.isdir(folder):
            return []
        return sorted(os.path.join(folder, name) for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name)))

    def delete(self, path: str) -> None:
        if os.path.exists(path):
            os.remove(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)


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


@dataclass(frozen=True)
class ShardSummary:
    """What one shard holds (also the body of its manifest).

    Attributes:
        name: shard name (``shard-<digest>``).
        clips: clip id -> {"outcome", "reason", "label", "tracks", "selected_tracks",
            "frames", "inlier_frames", "stage"}.
        files: dataset -> file name written (datasets without rows have none).
        rows: dataset -> rows written.
    """

    name: str
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"shard": self.name, "schema_version": schema.SCHEMA_VERSION, "files": self.files,
                "rows": self.rows, "clips": self.clips}


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
    storage = storage or LocalStorage()
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
        }
        for o in ordered
    }
    summary = ShardSummary(name, clips, files, rows)
    storage.write_bytes(storage.join(config.output, MANIFESTS, f"{name}.json"),
                        json.dumps(summary.to_json(), sort_keys=True, indent=1).encode())
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


def manifest_files(manifest: dict[str, Any], dataset: str) -> list[str]:
    """File names of ``dataset`` a manifest commits (a name or a list of names)."""
    value = manifest.get("files", {}).get(dataset)
    return [] if not value else [value] if isinstance(value, str) else list(value)


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
    storage = storage or LocalStorage()
    for dataset in datasets:
        sink = pa.BufferOutputStream()
        pq.write_metadata(schema.schema_for(dataset, run, crops=config.store_crops), sink)
        storage.write_bytes(storage.join(config.output, dataset, COMMON_METADATA), sink.getvalue().to_pybytes())


def read_manifests(output: str, storage: Storage | None = None) -> list[dict[str, Any]]:
    """Every committed shard manifest under ``output`` (sorted by shard name)."""
    storage = storage or LocalStorage()
    manifests = []
    for path in storage.list(storage.join(output, MANIFESTS)):
        if path.endswith(".json"):
            manifests.append(json.loads(storage.read_bytes(path)))
    return sorted(manifests, key=lambda m: m["shard"])


def completed_clips(output: str, storage: Storage | None = None) -> dict[str, dict[str, Any]]:
    """clip id -> its manifest entry, for every clip a committed shard holds (resume)."""
    done: dict[str, dict[str, Any]] = {}
    for manifest in read_manifests(output, storage):
        done.update(manifest["clips"])
    return done


def failed_clips(output: str, storage: Storage | None = None,
                 completed: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Sorted ids of the committed clips whose outcome is ``failed`` (a fault of the run,
    not a verdict on the input: a rerun tries them again).

    ``completed``: :func:`completed_clips` of the output when the caller already read it.
    """
    completed = completed_clips(output, storage) if completed is None else completed
    return sorted(k for k, v in completed.items() if v.get("outcome") == "failed")


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
    storage = storage or LocalStorage()
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
            summary = ShardSummary(new, {k: manifest["clips"][k] for k in keep}, files, rows)
            storage.write_bytes(storage.join(output, MANIFESTS, f"{new}.json"),
                                json.dumps(summary.to_json(), sort_keys=True, indent=1).encode())
        for dataset in schema.DATASETS:
            for name in manifest_files(manifest, dataset):
                storage.delete(storage.join(output, dataset, name))
        retired += len(gone)
    return retired


def remove_orphan_shards(output: str, storage: Storage | None = None) -> list[str]:
    """Delete shard files no manifest commits (a run died between writing a data file and
    its manifest) and half-written temporary files (a writer killed mid-file); returns the
    deleted paths. Run before a job starts, never during one."""
    storage = storage or LocalStorage()
    removed = []
    # Half-written files of a killed writer (LocalStorage's temporary names) go first.
    for folder in (output, storage.join(output, MANIFESTS), *(storage.join(output, d) for d in schema.DATASETS)):
        for path in storage.list(folder):
            if _TEMPORARY.search(os.path.basename(path)):
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


def dataset_stats(output: str, storage: Storage | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts over every committed shard of the output (all runs that wrote into it)."""
    manifests = read_manifests(output, storage)
    clips: dict[str, dict[str, Any]] = {}
    rows = Counter()
    files = Counter()
    splits: dict[str, set[str]] = {}
    for manifest in manifests:
        clips.update(manifest["clips"])
        rows.update(manifest["rows"])
        files.update({d: 1 for d in manifest["files"]})
        for d in manifest["files"]:
            splits.setdefault(d, set()).update(f.split(".")[1] for f in manifest_files(manifest, d) if f.count(".") == 2)
    from pipeline.dataset.selection_table import read_selection_outcomes  # the selection/ table decides kept

    final = read_selection_outcomes(output, storage) or {}
    clips = {k: {**v, **final.get(k, {})} for k, v in clips.items()}
    outcomes = Counter(c["outcome"] for c in clips.values())
    reasons = Counter(c["reason"] for c in clips.values() if c["outcome"] != "kept")
    kept_labels = Counter(c["label"] or "(none)" for c in clips.values() if c["outcome"] == "kept")
    stats = {
        "schema_version": schema.SCHEMA_VERSION,
        "clips": len(clips),
        "clips_kept": outcomes.get("kept", 0),
        "clips_rejected": outcomes.get("rejected", 0),
        "clips_failed": outcomes.get("failed", 0),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "tracks_fitted": sum(c["tracks"] for c in clips.values()),
        "tracks_selected": sum(c["selected_tracks"] for c in clips.values()),
        "frames_written": rows.get("frames", 0),
        "inlier_frames_selected": sum(c["inlier_frames"] for c in clips.values()),
        "rows": {d: rows.get(d, 0) for d in schema.DATASETS},
        "files": {d: files.get(d, 0) for d in schema.DATASETS},
        "splits": {d: sorted(splits.get(d, ())) for d in schema.DATASETS},
        "shards": len(manifests),
        "kept_clips_per_label": dict(sorted(kept_labels.items())),
    }
    if extra:
        stats.update(extra)
    return stats


HF_SPLIT_NAMES = {"val": "validation", "valid": "validation", "validate": "validation"}
CITATION = """@inproceedings{arnab2019exploiting,
  title     = {Exploiting Temporal Context for {3D} Human Pose Estimation in the Wild},
  author    = {Arnab, Anurag and Doersch, Carl and Zisserman, Andrew},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019}
}"""


def size_category(n: int) -> str:
    """HuggingFace ``size_categories`` value of a row count."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return name
    return "1B<n<10B"


def _yaml_feature(value: dict[str, Any]) -> Any:
    """HF features JSON (``{"_type": "List", ...}``) -> the card's YAML form
    (``{"list": "float32", "length": 3}``, as ``datasets`` writes it)."""
    kind = value.get("_type")
    if kind == "Value":
        return value["dtype"]
    if kind in ("List", "LargeList", "Sequence"):
        inner = value.get("feature")
        out: dict[str, Any] = {"list": _yaml_feature(inner) if isinstance(inner, dict) and "_type" in inner
                               else [{"name": k, **_yaml_entry(v)} for k, v in inner.items()]}
        if value.get("length", -1) not in (-1, None):
            out["length"] = value["length"]
        return out
    return {"dtype": kind}


def _yaml_entry(value: dict[str, Any]) -> dict[str, Any]:
    converted = _yaml_feature(value)
    return {"dtype": converted} if isinstance(converted, str) else converted


def hf_card_metadata(stats: dict[str, Any], features: dict[str, dict[str, Any]] | None = None) -> str:
    """The YAML front matter of the card: licence placeholder, task and size categories,
    ``configs`` with one HF split per source split (``val`` -> ``validation``), the
    features of each config, and tags. JSON values are valid YAML."""
    lines = ["---", "license: other", "license_name: fill-in-the-licence-of-your-videos-and-body-model",
             "license_link: LICENSE", "pretty_name: vid2mesh pseudo-ground-truth SMPL fits",
             "task_categories:", "- keypoint-detection", "- image-to-3d",
             "size_categories:", f"- {size_category(int(stats.get('rows', {}).get('frames', 0)))}",
             "tags:", "- 3d-human-pose", "- smpl", "- human-mesh-recovery", "- pseudo-ground-truth", "configs:"]
    configs = [d for d in schema.DATASETS if stats["files"].get(d)]
    for dataset in configs:
        lines += [f"- config_name: {dataset}", "  data_files:"]
        for tag in stats.get("splits", {}).get(dataset) or []:
            lines += [f"  - split: {HF_SPLIT_NAMES.get(tag, tag)}", f"    path: {dataset}/*.{tag}.parquet"]
        if not (stats.get("splits", {}).get(dataset)):
            lines += ["  - split: train", f"    path: {dataset}/*.parquet"]
        if dataset == "frames":
            lines.append("  default: true")
    if features:
        lines.append("dataset_info:")
        for dataset in configs:
            lines += [f"- config_name: {dataset}", "  features:"]
            lines += [f"  - {json.dumps({'name': name, **_yaml_entry(value)})}" for name, value in features[dataset].items()]
    lines.append("---")
    return "\n".join(lines) + "\n" if configs else ""


def dataset_card(stats: dict[str, Any], run: schema.RunMetadata, features: dict[str, dict[str, Any]] | None = None) -> str:
    """README.md of the output: the HF metadata block (:func:`hf_card_metadata`), the counts,
    how to load it and the citation. ``features``: dataset -> HF features JSON (default:
    the schema's)."""
    features = features or {d: schema.hf_features(d) for d in schema.DATASETS}
    front = hf_card_metadata(stats, features)
    body = run.body_model
    reasons = "\n".join(f"| {r} | {n} |" for r, n in stats["rejected_by_reason"].items()) or "| (none) | 0 |"
    labels = "\n".join(f"| {label} | {n} |" for label, n in stats["kept_clips_per_label"].items()) or "| (none) | 0 |"
    return f"""{front}
# vid2mesh pseudo-ground-truth dataset

SMPL fits of the people in video clips by whole-clip bundle adjustment (Arnab, Doersch,
Zisserman, CVPR 2019), written by `vid2mesh run`. Schema version {schema.SCHEMA_VERSION};
the columns, units and joint orders are documented in `docs/schema.md` of vid2mesh and in
each file's schema metadata.

Body model: **{body.variant}** ({body.gender}, `{body.file_name}`, sha256 `{body.sha256[:16]}...`){" - a generated stand-in, NOT the licensed SMPL model: for pipeline testing only" if body.variant == "standin" else ""}.
Code: {run.code_version}.

| | count |
| --- | --- |
| clips in | {stats["clips"]} |
| clips kept | {stats["clips_kept"]} |
| clips rejected | {stats["clips_rejected"]} |
| clips failed | {stats["clips_failed"]} |
| tracks fitted | {stats["tracks_fitted"]} |
| tracks selected | {stats["tracks_selected"]} |
| frames written (`frames/` rows) | {stats["frames_written"]} |
| inlier frames of selected tracks | {stats["inlier_frames_selected"]} |
| shards | {stats["shards"]} |

Rejections and failures by reason:

| reason | clips |
| --- | --- |
{reasons}

Kept clips per label:

| label | clips |
| --- | --- |
{labels}

Load with HuggingFace `datasets`:

```python
import datasets
frames = datasets.load_dataset("parquet", data_files="frames/*.parquet", split="train").with_format("numpy")
# or, from this folder, one HF split per source split (train, validation, ...; unsplit when unknown):
# datasets.load_dataset("<this folder>", "frames")
```

Which tracks are selected is in `selection/tracks.parquet` (the whole-output selection;
join it on `clip_id, track_id`, or read with vid2mesh's `FramesDataset`).

Licence: fill in `license` above with the terms of the source videos and of the body model
(SMPL's licence forbids redistribution of fits made with it without permission).

Citation of the method:

```bibtex
{CITATION}
```
"""


def _written_features(output: str, storage: Storage) -> dict[str, dict[str, Any]]:
    """HF features of each dataset as its ``_common_metadata`` records them (the run's
    optional columns included), else the schema's."""
    features = {}
    for dataset in schema.DATASETS:
        features[dataset] = schema.hf_features(dataset)
        path = storage.join(output, dataset, COMMON_METADATA)
        try:
            if storage.exists(path):
                meta = pq.read_schema(pa.BufferReader(storage.read_bytes(path))).metadata or {}
                hf = json.loads(meta.get(schema.KEY_HUGGINGFACE.encode(), b"{}"))
                features[dataset] = hf.get("info", {}).get("features") or features[dataset]
        except (OSError, ValueError, pa.ArrowException):
            pass
    return features


def write_card(output: str, run: schema.RunMetadata, storage: Storage | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``stats.json`` and ``README.md`` from every committed shard; returns the stats."""
    storage = storage or LocalStorage()
    stats = dataset_stats(output, storage, extra)
    storage.write_bytes(storage.join(output, STATS_FILE), (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode())
    storage.write_bytes(storage.join(output, CARD_FILE), dataset_card(stats, run, _written_features(output, storage)).encode())
    return stats
