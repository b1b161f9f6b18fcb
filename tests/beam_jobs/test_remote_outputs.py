"""Outputs on a non-local filesystem: the reader, report, evaluate's loader and `vid2mesh
select` through one filesystem layer (fsspec's memory filesystem, and a pyarrow
SubTreeFileSystem), with the same rows as the local copy."""

from __future__ import annotations

import uuid

import fsspec
import pyarrow.fs as pafs
import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.reader import FrameFilter, FramesDataset, read_clips, read_frames, read_tracks
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

BODY = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "12" * 32)
NAMES = [f"r{i:02d}_{i:06d}_{i + 10:06d}" for i in range(6)] + ["crowded_000000_000010"]


@pytest.fixture(scope="module")
def local_output(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    folder = root / "corpus" / "train" / "walk"
    folder.mkdir(parents=True)
    for name in NAMES:
        (folder / f"{name}.mp4").write_bytes(b"scripted")
    out = root / "out"
    pseudo_gt.run(["--input", str(root / "corpus"), "--output", str(out), "--keep_fraction", "0.5",
                   "--min_inlier_fraction", "0", "--clips_per_shard", "2", "--ba_batch_frames", "60"],
                  perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
    return out


@pytest.fixture
def memory_output(local_output):
    memory = fsspec.filesystem("memory")
    name = f"/vid2mesh-{uuid.uuid4().hex[:8]}"
    memory.put(str(local_output), name, recursive=True)
    yield f"memory://{name}"
    memory.rm(name, recursive=True)


def _same(a, b) -> bool:
    """Tables equal row for row, NaN equal to NaN (pyarrow's equals says NaN != NaN)."""
    return a.schema.equals(b.schema) and repr(a.to_pylist()) == repr(b.to_pylist())


def _keys(rows):
    return sorted((r["clip_id"], int(r["track_id"]), int(r["frame_index"])) for r in rows)


def test_reader_on_fsspec_memory_and_subtree_filesystems(local_output, memory_output):
    columns = ["clip_id", "track_id", "frame_index", "pose"]
    local = list(FramesDataset(local_output, columns=columns))
    assert local
    remote = list(FramesDataset(memory_output, columns=columns))
    assert _keys(remote) == _keys(local)
    subtree = pafs.SubTreeFileSystem(str(local_output.parent), pafs.LocalFileSystem())
    assert _keys(FramesDataset("out", columns=columns, filesystem=subtree)) == _keys(local)
    # Sequence mode and the analysis helpers too.
    assert read_frames(memory_output, filter=FrameFilter()).num_rows == len(local)
    assert _same(read_tracks(memory_output), read_tracks(local_output))
    assert _same(read_clips(memory_output), read_clips(local_output))


@pytest.mark.slow
def test_report_evaluate_and_select_on_a_memory_filesystem(local_output, memory_output):
    from beam_jobs.cli import main
    from pipeline.qa.evaluate import load_predictions
    from pipeline.qa.report import ReportConfig, load_summary, table3, write_report

    assert table3(load_summary(memory_output)) == table3(load_summary(str(local_output)))
    path = write_report(memory_output, ReportConfig(thumbnails=0))
    memory = fsspec.filesystem("memory")
    assert memory.exists(memory_output[len("memory://"):] + "/report.html") and path.startswith("memory://")
    local_tracks = load_predictions(str(local_output), selected_only=True)
    remote_tracks = load_predictions(memory_output, selected_only=True)
    assert [(t.clip_id, t.track_id, len(t.frame_index)) for t in remote_tracks] == \
        [(t.clip_id, t.track_id, len(t.frame_index)) for t in local_tracks]
    assert main(["select", memory_output, "--keep_fraction", "1"]) == 0
    tracks = read_tracks(memory_output)
    assert sum(tracks.column("selected").to_pylist()) == sum(r == "eligible" or r in ("selected", "below_best_fraction")
                                                             for r in read_tracks(local_output).column("selection_reason").to_pylist())

