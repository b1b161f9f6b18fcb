"""Schemas: columns, metadata round trip, HuggingFace features, docs/schema.md in sync."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import schema

ROOT = Path(__file__).resolve().parents[3]


def _run():
    body = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "ab" * 32)
    return schema.RunMetadata(body, {"selection": {"mode": "threshold", "e_norm_threshold": 25.0}}, "vid2mesh 0.1.0 git x")


@pytest.mark.parametrize("dataset", schema.DATASETS)
def test_schema_metadata_round_trip(dataset):
    s = schema.schema_for(dataset, _run())
    assert s.names == [c.name for c in schema.COLUMNS[dataset]]
    assert len(set(s.names)) == len(s.names)
    meta = schema.read_metadata(s)
    assert meta[schema.KEY_SCHEMA_VERSION] == schema.SCHEMA_VERSION
    assert meta[schema.KEY_DATASET] == dataset
    assert meta[schema.KEY_BODY_MODEL] == {"variant": "standin", "gender": "neutral",
                                           "file_name": "vid2mesh_standin_neutral.pkl", "sha256": "ab" * 32}
    assert meta[schema.KEY_CONFIG]["selection"]["e_norm_threshold"] == 25.0
    assert meta[schema.KEY_CODE_VERSION].startswith("vid2mesh")
    for column in schema.COLUMNS[dataset]:
        if column.joint_order:
            joints = len(meta[schema.KEY_JOINT_ORDERS][column.name])
            assert joints == column.shape[0] or (column.name in ("pose", "init_pose") and 3 * joints == column.shape[0])


def test_array_shapes_match_types():
    for columns in schema.COLUMNS.values():
        for c in columns:
            dims, t = [], c.type
            while isinstance(t, pa.FixedSizeListType):
                dims.append(t.list_size)
                t = t.value_type
            if c.shape != (-1,):
                assert tuple(dims) == c.shape, c.name
    frames = schema.schema_for("frames")
    assert frames.field("keypoints_2d").type == pa.list_(pa.list_(pa.float32(), 3), 17)
    assert frames.field("joints_3d").type == pa.list_(pa.list_(pa.float32(), 3), 24)
    assert frames.field("pose").type == pa.list_(pa.float32(), 72)


def test_joint_orders_come_from_models():
    from models.joint_names import COCO17_NAMES, SMPL24_NAMES

    orders = json.loads(schema.schema_for("frames").metadata[b"vid2mesh.joint_orders"])
    assert orders["keypoints_2d"] == list(COCO17_NAMES)
    assert orders["joints_3d"] == list(SMPL24_NAMES) == orders["pose"]


@pytest.mark.parametrize("dataset", schema.DATASETS)
def test_huggingface_features_match_arrow(dataset):
    datasets = pytest.importorskip("datasets")
    s = schema.schema_for(dataset)
    features = datasets.Features.from_dict(schema.hf_features(dataset))
    assert features.arrow_schema.remove_metadata() == s.remove_metadata()
    # datasets reads the features from the schema metadata (types equal, nothing inferred).
    assert datasets.Features.from_arrow_schema(s) == features


def test_foreign_or_future_schema_is_rejected():
    with pytest.raises(ValueError, match="not a vid2mesh dataset"):
        schema.read_metadata(pa.schema([("a", pa.int32())]))
    future = schema.schema_for("tracks").with_metadata({schema.KEY_SCHEMA_VERSION: "99.0.0"})
    with pytest.raises(ValueError, match="not readable"):
        schema.read_metadata(future)
    with pytest.raises(ValueError, match="unknown dataset"):
        schema.schema_for("vertices")


def test_docs_schema_md_has_every_table():
    text = (ROOT / "docs" / "schema.md").read_text()
    assert f"schema version {schema.SCHEMA_VERSION}" in text
    for dataset in schema.DATASETS:
        assert schema.markdown_table(dataset) in text, f"docs/schema.md is out of date for {dataset}/"


def test_body_model_info_hashes_file(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"abc")
    info = schema.BodyModelInfo.from_file(path, "smpl", "female")
    assert info.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert info.file_name == "model.pkl" and info.gender == "female"


def test_every_field_describes_itself():
    for dataset in schema.DATASETS:
        for column, field in zip(schema.columns_of(dataset, crops=True), schema.schema_for(dataset, crops=True)):
            meta = field.metadata
            assert meta[schema.FIELD_DESCRIPTION].decode() == column.description and column.description
            assert meta[schema.FIELD_UNIT].decode() == column.unit
            assert (meta.get(schema.FIELD_JOINT_ORDER, b"").decode() or None) == column.joint_order


def test_written_files_carry_the_field_metadata(tmp_path):
    from dataset_builders import build_run

    run = build_run(str(tmp_path), num_clips=3, num_rejected=1, seed=2)
    for dataset in schema.DATASETS:
        paths = sorted((tmp_path / dataset).glob("*.parquet")) + [tmp_path / dataset / "_common_metadata"]
        for path in paths:
            file_schema = pq.read_schema(path)
            for column in schema.columns_of(dataset):
                meta = file_schema.field(column.name).metadata
                assert meta[b"description"].decode() == column.description, (path, column.name)
                assert meta[b"unit"].decode() == column.unit
    joints = pq.read_schema(next((tmp_path / "frames").glob("*.parquet"))).field("joints_3d").metadata
    assert joints[b"unit"] == b"m" and joints[b"shape"] == b"24x3" and joints[b"joint_order"] == b"smpl24"
    assert run.stats["rows"]["frames"]


def test_docs_schema_md_is_generated():
    """docs/schema.md's tables are the generator's output (python -m pipeline.dataset.schema_doc)."""
    from pipeline.dataset import schema_doc

    text = (ROOT / "docs" / "schema.md").read_text()
    assert schema_doc.render(text) == text, "docs/schema.md is out of date: run python -m pipeline.dataset.schema_doc"
    for dataset in (*schema.DATASETS, "crops"):
        assert f"<!-- generated: columns {dataset} -->" in text
    assert schema_doc.main(["--check"]) == 0
