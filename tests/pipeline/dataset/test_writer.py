"""Shard writing: read back with metadata, idempotent names, resume bookkeeping, card, HF load."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import schema
from pipeline.dataset.card import dataset_card, write_card
from pipeline.dataset.manifests import completed_clips
from pipeline.records import ClipRef, PerceptionResult, RejectReason
from pipeline.dataset.rows import outcome_from_rejection
from pipeline.dataset.selection.commit import commit_outcome
from pipeline.dataset.selection.rules import SelectionConfig
from pipeline.dataset.selection.table import select_output
from pipeline.dataset.writer import (
    WriterConfig,
    remove_orphan_shards,
    shard_bucket,
    shard_name,
    write_common_metadata,
    write_shard,
)
from helpers.scripted import make_fit, make_problem

RUN = schema.RunMetadata(schema.BodyModelInfo("standin", "neutral", "m.pkl", "cd" * 32), {"k": 1}, "vid2mesh test",
                         schema.settings_hash({"k": 1}))
CONFIG = SelectionConfig(mode="threshold", e_norm_threshold=10.0, min_inlier_fraction=0.0)


def _fitted(clip_id, label="walk", tracks=2):
    """A committed clip whose tracks are eligible (10 + t frames each); track 0 passes CONFIG's threshold."""
    clip = ClipRef(clip_id, f"/v/{clip_id}.mp4", label, "train")
    header = PerceptionResult(clip, num_frames=20, image_size=(320, 240), fps=10.0,
                              keypoint_source="detector:yolo11n-pose.pt@sha256:869e83fcdffd")
    problems = [make_problem(clip_id, t, 10 + t, seed=t) for t in range(tracks)]
    fits = [(p, make_fit(p, 2.0 if p.track_id == 0 else 50.0)) for p in problems]
    return commit_outcome(header, fits, CONFIG)


def _rejected(clip_id, reason=RejectReason.NO_PERSON):
    return outcome_from_rejection(PerceptionResult(ClipRef(clip_id, f"/v/{clip_id}.mp4", "jump"), reject_reason=reason,
                                                   keypoint_source=f"keypoints:/v/{clip_id}.coco.json"))


def test_write_and_read_back_with_metadata(tmp_path):
    config = WriterConfig(str(tmp_path), row_group_size=8)
    outcomes = [_fitted("b_000000_000010"), _rejected("c_000000_000010"), _fitted("a_000000_000010")]
    summary = write_shard(outcomes, config, RUN)
    assert summary.name == shard_name(["a_000000_000010", "b_000000_000010", "c_000000_000010"])
    assert summary.rows == {"frames": 42, "tracks": 4, "rejected": 1}
    frames_file = tmp_path / "frames" / f"{summary.name}.train.parquet"  # one file per source split
    meta = pq.read_metadata(frames_file)
    assert meta.num_row_groups == 6  # 42 rows in groups of 8
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(frames_file)
    assert table.column("clip_id").to_pylist() == sorted(table.column("clip_id").to_pylist())
    decoded = schema.read_metadata(table.schema)
    assert decoded["vid2mesh.body_model"]["variant"] == "standin" and decoded["vid2mesh.config"] == {"k": 1}
    assert decoded["vid2mesh.dataset"] == "frames"
    assert decoded["vid2mesh.settings_hash"] == RUN.settings_hash and len(RUN.settings_hash) == 16
    assert set(table.column("keypoint_source").to_pylist()) == {"detector:yolo11n-pose.pt@sha256:869e83fcdffd"}
    rejected = pq.read_table(tmp_path / "rejected" / f"{summary.name}.unsplit.parquet")
    assert rejected.column("keypoint_source").to_pylist() == ["keypoints:/v/c_000000_000010.coco.json"]
    for dataset in schema.DATASETS:
        dataset_schema = ds.dataset(tmp_path / dataset, format="parquet").schema
        assert dataset_schema.remove_metadata() == schema.schema_for(dataset).remove_metadata()
    manifest = json.loads((tmp_path / "_manifests" / f"{summary.name}.json").read_text())
    assert set(manifest["clips"]) == {"a_000000_000010", "b_000000_000010", "c_000000_000010"}
    assert manifest["clips"]["c_000000_000010"] == {
        "outcome": "rejected", "reason": "no_person", "stage": "perceive", "label": "jump",
        "tracks": 0, "selected_tracks": 0, "frames": 0, "inlier_frames": 0,
        "keypoint_source": "keypoints:/v/c_000000_000010.coco.json", "settings_hash": RUN.settings_hash,
    }
    assert manifest["clips"]["a_000000_000010"]["keypoint_source"].startswith("detector:yolo11n-pose.pt@sha256:")


def test_rewriting_a_shard_is_byte_identical(tmp_path):
    config = WriterConfig(str(tmp_path))
    outcomes = [_fitted("a_000000_000010"), _rejected("c_000000_000010")]
    first = write_shard(outcomes, config, RUN)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    second = write_shard(list(reversed(outcomes)), config, RUN)  # a retried bundle, other order
    assert first == second
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
    assert ds.dataset(tmp_path / "tracks", format="parquet").count_rows() == 2


def test_duplicate_clip_in_a_shard_is_refused(tmp_path):
    with pytest.raises(ValueError, match="several outcomes"):
        write_shard([_rejected("a"), _rejected("a")], WriterConfig(str(tmp_path)), RUN)


def test_resume_bookkeeping_and_orphans(tmp_path):
    config = WriterConfig(str(tmp_path))
    write_shard([_fitted("a_000000_000010")], config, RUN)
    assert set(completed_clips(str(tmp_path))) == {"a_000000_000010"}
    orphan = tmp_path / "frames" / "shard-0000.parquet"
    orphan.write_bytes(b"half-written")
    (tmp_path / "frames" / "_common_metadata").write_bytes(b"kept")
    removed = remove_orphan_shards(str(tmp_path))
    assert removed == [str(orphan)] and not orphan.exists()
    assert (tmp_path / "frames" / "_common_metadata").exists()


def test_buckets_are_stable_and_spread():
    buckets = [shard_bucket(f"clip{i}", 8) for i in range(400)]
    assert buckets == [shard_bucket(f"clip{i}", 8) for i in range(400)]
    assert set(buckets) == set(range(8))
    assert shard_bucket("x", 0) == 0


def test_card_and_stats(tmp_path):
    config = WriterConfig(str(tmp_path))
    write_shard([_fitted("a_000000_000010"), _rejected("c_000000_000010", RejectReason.CROWDED)], config, RUN)
    write_shard([_rejected("d_000000_000010", RejectReason.FAILED)], config, RUN)
    write_common_metadata(config, RUN)
    select_output(str(tmp_path), CONFIG)  # the card counts the selection's verdicts
    stats = write_card(str(tmp_path), RUN, extra={"input": "test"})
    assert stats["clips"] == 3 == stats["clips_kept"] + stats["clips_rejected"] + stats["clips_failed"]
    assert stats["rejected_by_reason"] == {"crowded": 1, "failed": 1}
    assert stats["files"] == {"frames": 1, "tracks": 1, "rejected": 2} and stats["input"] == "test"
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n") and "configs:\n- config_name: selected" in card
    assert "path: tracks/*.train.parquet" in card and "size_categories:\n- n<1K" in card and "@inproceedings{arnab2019" in card and "| clips kept | 1 |" in card and "stand-in" in card
    assert schema.read_metadata(pq.read_schema(tmp_path / "rejected" / "_common_metadata"))["vid2mesh.dataset"] == "rejected"
    # Datasets without files get no config (load_dataset would fail on an empty glob).
    no_frames = dataset_card({**stats, "files": {"frames": 0, "tracks": 1, "rejected": 1}}, RUN)
    assert "config_name: frames" not in no_frames


def test_huggingface_loads_typed_arrays(tmp_path):
    datasets = pytest.importorskip("datasets")
    config = WriterConfig(str(tmp_path))
    write_shard([_fitted("a_000000_000010"), _fitted("b_000000_000010"), _rejected("c_000000_000010")], config, RUN)
    select_output(str(tmp_path), CONFIG)
    write_card(str(tmp_path), RUN)
    frames = datasets.load_dataset(str(tmp_path), "frames", split="train", cache_dir=str(tmp_path / ".hf"))
    assert frames.num_rows == 42
    assert frames.features["keypoints_2d"] == datasets.List(datasets.List(datasets.Value("float32"), length=3), length=17)
    row = frames.with_format("numpy")[0]
    assert row["keypoints_2d"].shape == (17, 3) and row["joints_3d"].shape == (24, 3) and row["pose"].shape == (72,)
    tracks = datasets.load_dataset("parquet", data_files=str(tmp_path / "tracks" / "*.parquet"), split="train",
                                   cache_dir=str(tmp_path / ".hf"))
    assert tracks.num_rows == 4 and tracks.features["betas"].length == 10


def test_store_crops_adds_a_nullable_jpeg_column(tmp_path):
    clip = ClipRef("a_000000_000010", "/v/a.mp4", "walk", "train")
    with_crops = make_problem(clip.clip_id, 0, 10, seed=0)
    object.__setattr__(with_crops, "crops", tuple(b"" if t == 5 else b"\xff\xd8jpeg%d" % t for t in range(10)))
    without = make_problem(clip.clip_id, 1, 10, seed=1)
    header = PerceptionResult(clip, num_frames=10, image_size=(320, 240), fps=10.0)
    kept = commit_outcome(header, [(with_crops, make_fit(with_crops, 1.0)), (without, make_fit(without, 2.0))], CONFIG)
    config = WriterConfig(str(tmp_path), store_crops=True)
    summary = write_shard([kept, _fitted("b_000000_000010")], config, RUN)
    table = pq.read_table(tmp_path / "frames" / f"{summary.name}.train.parquet")
    assert table.schema.field("crop_jpeg").type == schema.CROP_COLUMN.type
    crops = [c for c, clip_id in zip(table.column("crop_jpeg").to_pylist(), table.column("clip_id").to_pylist())
             if clip_id == "a_000000_000010"]
    assert crops[0] == b"\xff\xd8jpeg0" and crops[5] is None and crops[10:] == [None] * 10
    # A run without crops drops nothing else and has no crop column.
    plain = write_shard([kept], WriterConfig(str(tmp_path / "plain")), RUN)
    assert "crop_jpeg" not in pq.read_schema(tmp_path / "plain" / "frames" / f"{plain.name}.train.parquet").names


def test_card_has_fields_limitations_and_licence(tmp_path):
    config = WriterConfig(str(tmp_path))
    write_shard([_fitted("a_000000_000010")], config, RUN)
    select_output(str(tmp_path), CONFIG)
    write_card(str(tmp_path), RUN)
    card = (tmp_path / "README.md").read_text()
    for heading in ("## Fields", "## Limitations", "## Licence"):
        assert heading in card
    assert "| `joints_3d` | m |" in card and "SMPL model licence" in card and "non-commercial" in card
