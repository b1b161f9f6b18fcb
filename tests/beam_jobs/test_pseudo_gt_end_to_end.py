"""The real job end to end on the local runner: a generated corpus (clips with people, a
crowded clip, corrupt files, a truncated file, a clip without keypoints, one with nobody in
it, one with a broken keypoints file, a row without a video, bad CSV rows)
through perception (precomputed keypoints, keypoint init), bundle adjustment, selection
and the writers; all three datasets read back, counts, schema metadata and Beam metrics."""

from __future__ import annotations

import json
import logging
import math
import re

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.reader import FrameFilter, read_clips, read_frames, read_tracks
from pipeline.records import RejectReason
from transforms import commit

UNREADABLE = {RejectReason.UNREADABLE, RejectReason.ZERO_FRAMES, RejectReason.NO_VIDEO_STREAM}


@pytest.mark.slow
def test_job_end_to_end(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=commit.LOGGER.name)
    root, num_inputs = corpus
    out = tmp_path / "out"
    # the default selection score (predicted 3D error) and the default continuation: a lone
    # tau_R x 1 stage leaves every frame of the keypoint init above tau_R, so the capped
    # reprojection term holds nothing and the fits are undetermined; the default minimum
    # person height on the quick corpus' 160x120 frames is 20 px
    argv = ["--input", str(root / "all.csv"), "--video_root", str(root), "--output", str(out),
            "--keypoints", "precomputed", "--model_cache", str(tmp_path / "cache"),
            "--selection", "fraction", "--keep_fraction", "0.5", "--min_inlier_fraction", "0",
            "--ba_config", '{"max_iter": 10}', "--clips_per_shard", "3",
            "--perception_config", '{"decode": {"target_fps": 10}}']
    report = pseudo_gt.run(argv)
    c = report.counters
    assert report.state == "DONE" and report.clips_in == num_inputs
    kept, n_rejected, n_failed = c.get("clips_kept", 0), c.get("clips_rejected", 0), c.get("clips_failed", 0)
    assert c["clips_in"] == num_inputs == kept + n_rejected + n_failed
    assert kept >= 1 and c["clips_crowded"] == 1 and c["rejected_bad_input_row"] == 2
    assert c["rejected_missing_keypoints"] == 1 and c["rejected_missing_file"] == 1
    assert c["tracks_fitted"] >= 1 and c["frames_written"] >= 1
    assert report.distributions["ba_iterations"]["count"] == c["tracks_fitted"]
    assert report.distributions["ms_bundle_adjust"]["count"] == c["ba_batches"]

    committed = ds.dataset(out / "frames", format="parquet").to_table()
    frames = read_frames(out, filter=FrameFilter())  # the selected tracks' frames (selection/ joined)
    tracks = read_tracks(out)
    rejected = ds.dataset(out / "rejected", format="parquet").to_table()
    clips = read_clips(out)
    kept_ids = set(tracks.filter(tracks["selected"]).column("clip_id").to_pylist())
    rejected_ids = [r["clip_id"] for r in clips.to_pylist() if r["outcome"] != "kept"]
    assert len(kept_ids) == kept and len(rejected_ids) == n_rejected + n_failed == len(set(rejected_ids))
    assert not kept_ids & set(rejected_ids) and set(rejected.column("clip_id").to_pylist()) <= set(rejected_ids)
    assert committed.num_rows == c["frames_written"] and set(frames.column("clip_id").to_pylist()) == kept_ids
    reasons = {r["clip_id"]: r["reason"] for r in clips.to_pylist()}
    assert reasons["nokeypoints_000000_000001"] == RejectReason.MISSING_KEYPOINTS
    assert reasons["notthere_000000_000001"] == RejectReason.MISSING_FILE
    assert reasons["nobody_000000_000001"] == RejectReason.NO_PERSON and c["clips_no_person"] == 1
    assert reasons["badkeypoints_000000_000001"] == RejectReason.CORRUPT_KEYPOINTS
    # Keypoint-only runs do not decode the clip, but check that its last frame decodes.
    truncated = "trunc0000000_000000_000001"
    assert truncated not in kept_ids and reasons[truncated] in UNREADABLE
    corrupt = [r for r in rejected.to_pylist() if r["reason"] in UNREADABLE]
    assert len(corrupt) >= 2 and all(r["message"] for r in corrupt)

    # Schema metadata: the stand-in body model, its hash, joint orders, the config.
    standin = (tmp_path / "cache" / "standin")
    for dataset in schema.DATASETS:
        meta = schema.read_metadata(pq.read_schema(out / dataset / "_common_metadata"))
        assert meta["vid2mesh.body_model"]["variant"] == "standin"
        body_file = standin / meta["vid2mesh.body_model"]["file_name"]
        assert meta["vid2mesh.body_model"]["sha256"] == schema.file_sha256(body_file)
        assert meta["vid2mesh.config"]["bundle_adjust"]["config"]["max_iter"] == 10
        assert meta["vid2mesh.config"]["selection"]["mode"] == "fraction"
    frame_meta = schema.read_metadata(frames.schema)
    assert frame_meta["vid2mesh.joint_orders"]["keypoints_2d"][0] == "nose"
    assert frames.schema.field("joints_3d").type == schema.schema_for("frames").field("joints_3d").type
    # One set of track counts: the per-clip log lines, the run summary and stats.json.
    verdicts = report.books.track_verdicts
    assert verdicts.total == tracks.num_rows == report.books.tracks >= 1
    assert verdicts.kept == sum(tracks.column("selected").to_pylist()) == c["tracks_selected"]
    selected = tracks.filter(tracks["selected"])
    assert meta["vid2mesh.config"]["selection"]["score"] == "predicted_error"
    assert selected.column("selection_score").to_pylist() == pytest.approx(selected.column("pred_err_mm").to_pylist(), rel=1e-6)
    assert all(0 < v < math.inf for v in selected.column("selection_score").to_pylist())
    assert json.loads((out / "stats.json").read_text())["track_verdicts"] == verdicts.to_json()
    assert any(verdicts.line() in line for line in pseudo_gt.summary_lines(report))
    per_clip = [re.search(r"clip \S+: .*?(\d+) tracks: ", r.getMessage()) for r in caplog.records]
    assert sum(int(m.group(1)) for m in per_clip if m) == verdicts.total
    card = (out / "README.md").read_text()
    assert f"| clips in | {num_inputs} |" in card and "config_name: frames" in card

    # A rerun writes nothing new and duplicates nothing.
    before = sorted(p.name for p in out.rglob("*.parquet"))
    again = pseudo_gt.run(argv)
    assert again.state == "SKIPPED" and again.clips_skipped == num_inputs
    assert sorted(p.name for p in out.rglob("*.parquet")) == before


@pytest.mark.slow
def test_store_crops_adds_decodable_person_crops(corpus, tmp_path):
    """--store_crops: frames/ gains crop_jpeg, a JPEG of the tracked person per detected frame."""
    import numpy as np

    from pipeline.perception.crops import decode_crop

    root, _ = corpus
    normal = sorted(p for p in root.rglob("*.mp4") if p.stem.count("_") == 2 and "_000" in p.stem)[:1]
    out = tmp_path / "out"
    argv = ["--input", str(normal[0]), "--output", str(out), "--keypoints", "precomputed",
            "--model_cache", str(tmp_path / "cache"), "--selection", "fraction", "--keep_fraction", "1",
            "--min_inlier_fraction", "0", "--frames", "all", "--store_crops", "--crop_size", "48",
            "--ba_config", '{"max_iter": 5, "tau_r_schedule": [1.0]}',
            "--perception_config", '{"decode": {"target_fps": 10}}']
    report = pseudo_gt.run(argv)
    assert report.state == "DONE"
    table = ds.dataset(str(out / "frames"), format="parquet").to_table()
    assert "crop_jpeg" in table.column_names and table.num_rows > 0
    detected = table.column("has_detection").to_pylist()
    crops = table.column("crop_jpeg").to_pylist()
    for has, crop in zip(detected, crops):
        if has:
            image = np.asarray(decode_crop(crop))
            assert image.shape[:2] == (48, 48) and image.std() > 1.0  # a real picture, not a blank
        else:
            assert crop is None
