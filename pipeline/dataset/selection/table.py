"""The ``selection/`` table: the run's threshold on the selection score and every clip's final outcome.

:func:`select_output` reads every committed shard of the output (all runs that wrote
into it; the commit-time rows of :mod:`pipeline.dataset.selection.commit`), computes the
threshold over the eligible tracks with the rules of :mod:`pipeline.dataset.selection.rules`,
and writes two small Parquet files::

    selection/tracks.parquet   clip_id, track_id, shard, e_norm, selection_score, selected, selection_reason,
                               e_norm_threshold (the threshold on selection_score)
    selection/clips.parquet    clip_id, label, split, shard, outcome, reason, stage, selected_tracks, inlier_frames

The reader (:mod:`pipeline.dataset.reader`) joins ``selection/tracks.parquet`` onto
``frames/`` and ``tracks/``; ``selection/clips.parquet`` is the ledger where every clip of
the output ends (kept, rejected with a reason, or failed). Re-running the selection
(``vid2mesh select OUTPUT --keep_fraction 0.2``) rewrites these files and the selection
columns of the data (:mod:`pipeline.dataset.selection.publish`), so the fraction is global
over the output by construction and never needs a refit.

A clip found in more than one committed shard (a retried bundle that formed a different
batch) is owned by the shard whose name sorts first; the other copies' rows are ignored by
the selection and by the reader.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.fs import ArrowStorage
from pipeline.dataset.manifests import manifest_files, read_manifests
from pipeline.dataset.selection.commit import ELIGIBLE, PENDING
from pipeline.dataset.selection.publish import publish_selection
from pipeline.dataset.selection.rules import SelectionConfig, TrackReason, run_threshold
from pipeline.records import RejectReason

LOGGER = logging.getLogger(__name__)

SELECTION = "selection"
TRACKS_FILE = "tracks.parquet"
CLIPS_FILE = "clips.parquet"
SUMMARY_FILE = "selection.json"

SELECTION_TRACKS_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string()), pa.field("track_id", pa.int32()), pa.field("shard", pa.string()),
    pa.field("e_norm", pa.float64()), pa.field("selection_score", pa.float64()), pa.field("selected", pa.bool_()),
    pa.field("selection_reason", pa.string()),
    pa.field("e_norm_threshold", pa.float64()),
])
SELECTION_CLIPS_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string()), pa.field("label", pa.string()), pa.field("split", pa.string()),
    pa.field("shard", pa.string()), pa.field("outcome", pa.string()), pa.field("reason", pa.string()),
    pa.field("stage", pa.string()), pa.field("selected_tracks", pa.int32()), pa.field("inlier_frames", pa.int64()),
])


@dataclass(frozen=True)
class SelectionSummary:
    """What :func:`select_output` decided over the whole output.

    Attributes:
        threshold: the threshold on the selection score applied (NaN when no track is eligible).
        config: the selection settings.
        clips: clips in the output (each in exactly one outcome).
        clips_kept, clips_rejected, clips_failed: where they ended.
        tracks, tracks_eligible, tracks_selected: committed tracks, eligible ones, selected ones.
        duplicate_clips: clips found in more than one committed shard (copies ignored).
        rejected_by_reason: reason -> clips.
        outcomes: clip id -> {"outcome", "reason", "selected_tracks", "inlier_frames"}.
    """

    threshold: float
    config: SelectionConfig
    clips: int
    clips_kept: int
    clips_rejected: int
    clips_failed: int
    tracks: int
    tracks_eligible: int
    tracks_selected: int
    duplicate_clips: int
    rejected_by_reason: dict[str, int]
    outcomes: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "e_norm_threshold": None if not math.isfinite(self.threshold) else self.threshold,
            "config": asdict(self.config), "clips": self.clips, "clips_kept": self.clips_kept,
            "clips_rejected": self.clips_rejected, "clips_failed": self.clips_failed, "tracks": self.tracks,
            "tracks_eligible": self.tracks_eligible, "tracks_selected": self.tracks_selected,
            "duplicate_clips": self.duplicate_clips, "rejected_by_reason": self.rejected_by_reason,
        }


def clip_owners(manifests: Sequence[dict[str, Any]]) -> dict[str, str]:
    """clip id -> the committed shard that owns it (first shard name holding it)."""
    owners: dict[str, str] = {}
    for manifest in sorted(manifests, key=lambda m: m["shard"]):
        for clip_id in manifest["clips"]:
            owners.setdefault(clip_id, manifest["shard"])
    return owners


def _read_parquet(storage, path: str, columns: Sequence[str]) -> pa.Table:
    """The columns of a Parquet file (those it has: a shard written before a column existed lacks it)."""
    data = io.BytesIO(storage.read_bytes(path))
    present = set(pq.read_schema(data).names)
    data.seek(0)
    return pq.read_table(data, columns=[c for c in columns if c in present])


SCORE = "selection_score"


def _with_score(table: pa.Table) -> pa.Table:
    """tracks/ rows with ``selection_score`` (a shard committed before it existed: its E_norm)."""
    if SCORE in table.column_names:
        return table
    return table.append_column(SCORE, table.column("e_norm").cast(pa.float64()))


def _committed_tracks(output: str, manifests: Sequence[dict[str, Any]], owners: dict[str, str], storage) -> pa.Table:
    """tracks/ rows of the owning shards: clip_id, track_id, shard, e_norm, selection_reason,
    num_inlier_frames."""
    columns = ["clip_id", "track_id", "e_norm", "selection_reason", "num_inlier_frames"]
    parts = []
    for manifest in manifests:
        names = manifest_files(manifest, "tracks")
        if not names:
            continue
        table = pa.concat_tables([_with_score(_read_parquet(storage, storage.join(output, "tracks", n), columns + [SCORE]))
                                  for n in names])
        own = np.array([owners.get(c) == manifest["shard"] for c in table.column("clip_id").to_pylist()], dtype=bool)
        table = table.filter(pa.array(own))
        parts.append(table.append_column("shard", pa.array([manifest["shard"]] * table.num_rows, pa.string())))
    if not parts:
        return pa.table({c: pa.array([], t) for c, t in (("clip_id", pa.string()), ("track_id", pa.int32()),
                                                            ("e_norm", pa.float64()), ("selection_reason", pa.string()),
                                                            (SCORE, pa.float64()),
                                                            ("num_inlier_frames", pa.int32()), ("shard", pa.string()))})
    return pa.concat_tables(parts)


def compute_selection(output: str, config: SelectionConfig, storage=None) -> tuple[SelectionSummary, pa.Table, pa.Table]:
    """The selection over every committed shard of ``output`` (nothing written).

    Returns:
        (summary, selection tracks table, selection clips table).
    """
    storage = storage or ArrowStorage()
    manifests = read_manifests(output, storage)
    owners = clip_owners(manifests)
    tracks = _committed_tracks(output, manifests, owners, storage)
    reasons = tracks.column("selection_reason").to_pylist()
    e_norm = tracks.column("e_norm").to_numpy(zero_copy_only=False).astype(np.float64)
    score = tracks.column(SCORE).to_numpy(zero_copy_only=False).astype(np.float64)
    eligible = np.array([r in (ELIGIBLE, TrackReason.SELECTED, TrackReason.BELOW_BEST_FRACTION,
                               TrackReason.E_NORM_ABOVE_THRESHOLD) for r in reasons], dtype=bool)
    threshold = run_threshold(score[eligible].tolist(), config)
    selected = eligible & np.isfinite(score) & (score <= threshold) if math.isfinite(threshold) else np.zeros(len(score), bool)
    not_selected = TrackReason.BELOW_BEST_FRACTION if config.mode == "fraction" else TrackReason.E_NORM_ABOVE_THRESHOLD
    final_reasons = [TrackReason.SELECTED if s else (not_selected if e else r) for s, e, r in zip(selected, eligible, reasons)]
    selection_tracks = pa.table({
        "clip_id": tracks.column("clip_id"), "track_id": tracks.column("track_id").cast(pa.int32()),
        "shard": tracks.column("shard"), "e_norm": pa.array(e_norm, pa.float64()),
        SCORE: pa.array(score, pa.float64()),
        "selected": pa.array(selected, pa.bool_()), "selection_reason": pa.array(final_reasons, pa.string()),
        "e_norm_threshold": pa.array(np.full(len(e_norm), threshold), pa.float64()),
    }, schema=SELECTION_TRACKS_SCHEMA).sort_by([("clip_id", "ascending"), ("track_id", "ascending")])

    per_clip_selected: dict[str, int] = {}
    per_clip_eligible: dict[str, int] = {}
    per_clip_inliers: dict[str, int] = {}
    inliers = tracks.column("num_inlier_frames").to_numpy(zero_copy_only=False)
    for clip_id, s, e, n in zip(tracks.column("clip_id").to_pylist(), selected, eligible, inliers):
        per_clip_selected[clip_id] = per_clip_selected.get(clip_id, 0) + int(s)
        per_clip_eligible[clip_id] = per_clip_eligible.get(clip_id, 0) + int(e)
        per_clip_inliers[clip_id] = per_clip_inliers.get(clip_id, 0) + (int(n) if s else 0)
    rows: dict[str, list] = {f.name: [] for f in SELECTION_CLIPS_SCHEMA}
    outcomes: dict[str, dict[str, Any]] = {}
    by_shard = {m["shard"]: m for m in manifests}
    for clip_id in sorted(owners):
        entry = by_shard[owners[clip_id]]["clips"][clip_id]
        outcome, reason, stage = entry["outcome"], entry.get("reason"), entry.get("stage") or ""
        reselectable = outcome == "rejected" and reason == RejectReason.NO_TRACK_SELECTED and per_clip_eligible.get(clip_id, 0)
        if outcome in (PENDING, "kept") or reselectable:  # "kept" etc.: a shard written before commit-as-you-go
            if per_clip_selected.get(clip_id, 0):
                outcome, reason = "kept", None
            else:
                outcome, reason = "rejected", RejectReason.NO_TRACK_SELECTED
            stage = "select"
        n_selected = per_clip_selected.get(clip_id, 0)
        outcomes[clip_id] = {"outcome": outcome, "reason": reason, "selected_tracks": n_selected,
                             "inlier_frames": per_clip_inliers.get(clip_id, 0)}
        for name, value in (("clip_id", clip_id), ("label", entry.get("label", "")), ("split", entry.get("split", "")),
                            ("shard", owners[clip_id]), ("outcome", outcome), ("reason", reason), ("stage", stage),
                            ("selected_tracks", n_selected), ("inlier_frames", per_clip_inliers.get(clip_id, 0))):
            rows[name].append(value)
    selection_clips = pa.Table.from_pydict(rows, schema=SELECTION_CLIPS_SCHEMA)
    counts: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for o in outcomes.values():
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
        if o["outcome"] != "kept":
            by_reason[o["reason"]] = by_reason.get(o["reason"], 0) + 1
    duplicates = sum(len(m["clips"]) for m in manifests) - len(owners)
    summary = SelectionSummary(
        threshold=float(threshold), config=config, clips=len(outcomes), clips_kept=counts.get("kept", 0),
        clips_rejected=counts.get("rejected", 0), clips_failed=counts.get("failed", 0), tracks=tracks.num_rows,
        tracks_eligible=int(eligible.sum()), tracks_selected=int(selected.sum()), duplicate_clips=duplicates,
        rejected_by_reason=dict(sorted(by_reason.items())), outcomes=outcomes,
    )
    return summary, selection_tracks, selection_clips


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def select_output(output: str, config: SelectionConfig, storage=None) -> SelectionSummary:
    """Compute the selection over the whole output, (re)write ``selection/``, then write the
    verdicts into the data (:func:`pipeline.dataset.selection.publish.publish_selection`:
    true ``track_selected`` / ``selected`` columns and the ``frames_selected/`` view).

    Args:
        output: the output folder (local path or URL served by ``storage``).
        config: selection settings (mode, keep_fraction or e_norm_threshold).
        storage: a :class:`pipeline.dataset.fs.Storage` (default: local disk).
    """
    storage = storage or ArrowStorage()
    summary, tracks, clips = compute_selection(output, config, storage)
    meta = {b"vid2mesh.selection": json.dumps(summary.to_json(), sort_keys=True).encode()}
    storage.write_bytes(storage.join(output, SELECTION, TRACKS_FILE), _parquet(tracks.replace_schema_metadata(meta)))
    storage.write_bytes(storage.join(output, SELECTION, CLIPS_FILE), _parquet(clips.replace_schema_metadata(meta)))
    storage.write_bytes(storage.join(output, SELECTION, SUMMARY_FILE), (json.dumps(summary.to_json(), indent=1, sort_keys=True) + "\n").encode())
    publish_selection(output, tracks, storage)  # the verdicts into the data files and frames_selected/
    LOGGER.info("selection over %d clips (%d tracks, %d eligible): selection-score threshold %s -> %d tracks selected, "
                "%d clips kept, %d rejected, %d failed", summary.clips, summary.tracks, summary.tracks_eligible,
                f"{summary.threshold:.4g}" if math.isfinite(summary.threshold) else "none", summary.tracks_selected,
                summary.clips_kept, summary.clips_rejected, summary.clips_failed)
    return summary


def read_selection_outcomes(output: str, storage=None) -> dict[str, dict[str, Any]] | None:
    """clip id -> final outcome entry from ``selection/clips.parquet`` (None: no selection yet)."""
    storage = storage or ArrowStorage()
    path = storage.join(output, SELECTION, CLIPS_FILE)
    if not storage.exists(path):
        return None
    table = _read_parquet(storage, path, ["clip_id", "outcome", "reason", "selected_tracks", "inlier_frames"])
    return {r["clip_id"]: r for r in table.to_pylist()}


def read_selection_summary(output: str, storage=None) -> dict[str, Any] | None:
    """``selection/selection.json`` of the output (None: no selection yet)."""
    storage = storage or ArrowStorage()
    path = storage.join(output, SELECTION, SUMMARY_FILE)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else None


def read_selection_track_reasons(output: str, storage=None) -> dict[str, list[str]] | None:
    """clip id -> the ``selection_reason`` of each of its track rows, from ``selection/tracks.parquet``
    (None: no selection yet)."""
    storage = storage or ArrowStorage()
    path = storage.join(output, SELECTION, TRACKS_FILE)
    if not storage.exists(path):
        return None
    table = _read_parquet(storage, path, ["clip_id", "selection_reason"])
    out: dict[str, list[str]] = {}
    for clip_id, reason in zip(table.column("clip_id").to_pylist(), table.column("selection_reason").to_pylist()):
        out.setdefault(clip_id, []).append(reason)
    return out
