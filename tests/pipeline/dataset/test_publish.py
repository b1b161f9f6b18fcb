"""The selection is written into the data: true columns and the ``frames_selected/`` view."""

from __future__ import annotations

import glob
import json
import os

import pyarrow.parquet as pq

from dataset_builders import build_run
from pipeline.dataset.card import dataset_stats
from pipeline.dataset.fs import ArrowStorage
from pipeline.dataset.manifests import read_manifests
from pipeline.dataset.reader import FrameFilter, read_frames, read_tracks
from pipeline.dataset.selection.publish import SELECTED_VIEW, publish_selection
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.selection.table import select_output


def _stored(output: str, dataset: str, column: str) -> dict[tuple, bool]:
    table = pq.ParquetDataset(f"{output}/{dataset}").read(columns=["clip_id", "track_id", column])
    return {(c, t): s for c, t, s in zip(*(table.column(n).to_pylist() for n in ("clip_id", "track_id", column)))}


def _truth(output: str) -> dict[tuple, bool]:
    table = pq.read_table(f"{output}/selection/tracks.parquet")
    return {(r["clip_id"], r["track_id"]): r["selected"] for r in table.to_pylist()}


def _view_rows(output: str) -> int:
    files = glob.glob(f"{output}/{SELECTED_VIEW}/*.parquet")
    return sum(pq.read_metadata(f).num_rows for f in files)


def test_stored_columns_are_the_selection(tmp_path):
    run = build_run(str(tmp_path), num_clips=8, num_rejected=2, seed=3)
    truth = _truth(run.output)
    assert any(truth.values()) and not all(truth.values())
    assert _stored(run.output, "tracks", "selected") == truth
    frames = _stored(run.output, "frames", "track_selected")
    assert frames and all(frames[k] == truth[k] for k in frames)
    reasons = _stored(run.output, "tracks", "selection_reason")
    assert {reasons[k] for k, s in truth.items() if s} == {"selected"}
    assert "eligible" not in reasons.values()
    assert read_tracks(run.output).column("selected").to_pylist().count(True) == sum(truth.values())
    assert _view_rows(run.output) == read_frames(run.output, filter=FrameFilter(selected_only=True)).num_rows
    # a rewritten file keeps the run's row groups (build_run writes groups of 64 rows)
    sizes = {pq.read_metadata(f).row_group(0).num_rows for f in glob.glob(f"{run.output}/frames/*.parquet")
             if pq.read_metadata(f).num_rows > 64}
    assert sizes == {64}


def test_rerun_is_idempotent_and_another_setting_updates_the_files(tmp_path):
    run = build_run(str(tmp_path), num_clips=8, num_rejected=2, seed=4)
    storage = ArrowStorage()
    selection = pq.read_table(f"{run.output}/selection/tracks.parquet")
    before = {f: os.stat(f).st_mtime_ns for f in glob.glob(f"{run.output}/*/*.parquet")}
    counts = publish_selection(run.output, selection, storage)
    assert counts["files_rewritten"] == 0 and counts["view_files_deleted"] == 0  # already true: nothing written
    assert {f: os.stat(f).st_mtime_ns for f in glob.glob(f"{run.output}/*/*.parquet")} == before
    narrow = _view_rows(run.output)
    select_output(run.output, SelectionConfig(mode="fraction", keep_fraction=1.0, min_frames=8))  # keep every eligible track
    truth = _truth(run.output)
    assert _stored(run.output, "tracks", "selected") == truth
    wide = _view_rows(run.output)
    assert wide > narrow and wide == read_frames(run.output, filter=FrameFilter(selected_only=True)).num_rows
    select_output(run.output, SelectionConfig(mode="threshold", score="e_norm", e_norm_threshold=1e-6, min_frames=8))  # nothing passes
    assert not any(_stored(run.output, "tracks", "selected").values())
    assert _view_rows(run.output) == 0 and not glob.glob(f"{run.output}/{SELECTED_VIEW}/*.parquet")


def test_a_clip_committed_twice_is_selected_and_counted_in_its_owner_only(tmp_path):
    run = build_run(str(tmp_path), num_clips=4, num_rejected=0, seed=5, clips_per_shard=4)
    truth = _truth(run.output)
    # a second shard holding a copy of the clips (a retried bundle), under another shard name
    (manifest,) = read_manifests(run.output)
    copy = "shard-" + "f" * 20
    for dataset in ("frames", "tracks"):
        for name in manifest["files"][dataset]:
            src = f"{run.output}/{dataset}/{name}"
            dst = f"{run.output}/{dataset}/{copy}.{name.split('.', 1)[1]}"
            pq.write_table(pq.read_table(src), dst)
    copy_manifest = {**manifest, "shard": copy,
                     "files": {d: [f"{copy}.{n.split('.', 1)[1]}" for n in names] for d, names in manifest["files"].items()}}
    with open(f"{run.output}/_manifests/{copy}.json", "w") as handle:
        json.dump(copy_manifest, handle)
    for dataset in ("rejected",):
        for name in copy_manifest["files"].get(dataset, []):
            pq.write_table(pq.read_table(f"{run.output}/{dataset}/{manifest['shard']}.{name.split('.', 1)[1]}"),
                           f"{run.output}/{dataset}/{name}")
    select_output(run.output, SelectionConfig(mode="threshold", score="e_norm", e_norm_threshold=25.0, min_frames=8))
    owner_selected = pq.ParquetDataset(sorted(glob.glob(f"{run.output}/frames/{manifest['shard']}.*"))).read()
    copy_selected = pq.ParquetDataset(sorted(glob.glob(f"{run.output}/frames/{copy}.*"))).read()
    owner, other = sorted([(manifest["shard"], owner_selected), (copy, copy_selected)])
    assert any(other[1].column("track_selected").to_pylist()) is False
    assert owner[1].column("track_selected").to_pylist().count(True) > 0
    frames = pq.ParquetDataset(f"{run.output}/frames").read()
    assert frames.filter(frames.column("track_selected")).num_rows == \
        read_frames(run.output, filter=FrameFilter(selected_only=True)).num_rows == _view_rows(run.output)
    assert any(truth.values())
    # stats.json counts each clip once: the copy's rows are not counted
    stats = dataset_stats(run.output)
    assert stats["clips"] == run.stats["clips"] and stats["rows"] == run.stats["rows"]
    assert stats["frames_written"] == run.stats["frames_written"] and stats["shards"] == 2
