"""HuggingFace ``datasets`` reads the shards with typed array features (schema metadata)."""

from __future__ import annotations

import glob

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dataset_builders import build_run
from pipeline.dataset import schema

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    datasets.disable_progress_bars()
    out = tmp_path_factory.mktemp("hf_run")
    return build_run(str(out), num_clips=6, num_rejected=4, seed=11, row_group_size=32, store_crops=True)


def _load(run, dataset, tmp_path):
    files = sorted(glob.glob(f"{run.output}/{dataset}/*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))


@pytest.mark.parametrize("dataset", schema.DATASETS)
def test_features_are_the_schema_features(run, dataset, tmp_path):
    loaded = _load(run, dataset, tmp_path)
    expected = schema.hf_features(dataset, crops=dataset == "frames")
    if dataset == "frames":
        assert expected["crop_jpeg"] == {"_type": "Value", "dtype": "binary"}
    assert loaded.features == datasets.Features.from_dict(expected)
    # The features datasets derives from a shard's schema (its `huggingface` metadata).
    file_schema = pq.read_schema(sorted(glob.glob(f"{run.output}/{dataset}/*.parquet"))[0])
    assert datasets.Features.from_arrow_schema(file_schema) == loaded.features
    assert len(loaded) == run.stats["rows"][dataset]


def test_array_columns_have_their_shapes(run, tmp_path):
    frames = _load(run, "frames", tmp_path)
    f = frames.features
    assert f["keypoints_2d"] == datasets.List(datasets.List(datasets.Value("float32"), length=3), length=17)
    assert f["pose"] == datasets.List(datasets.Value("float32"), length=schema.NUM_POSE)
    assert f["joints_3d"] == datasets.List(datasets.List(datasets.Value("float32"), length=3), length=24)
    assert f["reprojection_2d"] == datasets.List(datasets.List(datasets.Value("float32"), length=2), length=17)
    assert f["inlier"] == datasets.Value("bool") and f["frame_time"] == datasets.Value("float64")
    as_numpy = frames.with_format("numpy")[:10]
    assert as_numpy["keypoints_2d"].shape == (10, 17, 3) and as_numpy["keypoints_2d"].dtype == np.float32
    assert as_numpy["pose"].shape == (10, 72) and as_numpy["betas"].shape == (10, 10)
    table = pq.ParquetDataset(f"{run.output}/frames").read()
    by_key = {
        (c, t, i): p
        for c, t, i, p in zip(table.column("clip_id").to_pylist(), table.column("track_id").to_pylist(),
                              table.column("frame_index").to_pylist(), table.column("pose").to_pylist())
    }
    for row in frames.select(range(10)):
        np.testing.assert_array_equal(row["pose"], by_key[(row["clip_id"], row["track_id"], row["frame_index"])])
    torch_rows = frames.with_format("torch", columns=["keypoints_2d", "crop_jpeg"])[:4]
    assert tuple(torch_rows["keypoints_2d"].shape) == (4, 17, 3)
    tracks = _load(run, "tracks", tmp_path)
    assert tracks.features["energy_terms"] == datasets.List({"term": datasets.Value("string"), "value": datasets.Value("float64")})


def test_dataset_card_configs_load_the_output_folder(run, tmp_path):
    frames = datasets.load_dataset(run.output, "frames", cache_dir=str(tmp_path / "hf"))
    rejected = datasets.load_dataset(run.output, "rejected", cache_dir=str(tmp_path / "hf"))
    assert sum(map(len, frames.values())) == run.stats["rows"]["frames"]
    assert sum(map(len, rejected.values())) == run.stats["rows"]["rejected"]
    # HF splits follow the source (Kinetics) split column: no val row in train.
    hf_name = {"train": "train", "val": "validation", "test": "test", "": "unsplit"}
    for name, part in frames.items():
        assert {hf_name[s] for s in part.unique("split")} == {name}
    assert frames["train"].features["pose"] == datasets.List(datasets.Value("float32"), length=72)


def test_dataset_card_metadata_block(run):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(f"{run.output}/README.md")
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"].startswith("fill-in")
    assert data["task_categories"] and data["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in data["configs"]} == {"selected", *schema.DATASETS}
    assert [c["config_name"] for c in data["configs"] if c.get("default")] == ["selected"]
    infos = datasets.info.DatasetInfosDict.from_dataset_card_data(card.data)
    assert infos["selected"].features == infos["frames"].features
    for dataset in schema.DATASETS:
        assert infos[dataset].features == datasets.Features.from_dict(schema.hf_features(dataset, crops=dataset == "frames"))
    assert "@inproceedings{arnab2019" in card.text


HF_SPLIT = {"train": "train", "val": "validation", "test": "test", "": "unsplit"}
KEY = ("clip_id", "track_id", "frame_index")


def _keys(rows) -> list[tuple]:
    return sorted(zip(*(rows[k] for k in KEY)))


def test_card_recipe_returns_the_selected_frames_split_by_split(run, tmp_path):
    """The card's default config gives exactly ``read_frames(OUT, FrameFilter(selected_only=True))``
    per split: no unselected track, no split mixed into another."""
    from pipeline.dataset.reader import FrameFilter, read_frames

    selected = datasets.load_dataset(run.output, cache_dir=str(tmp_path / "hf"))  # the default config
    truth = read_frames(run.output, filter=FrameFilter(selected_only=True))
    assert 0 < truth.num_rows < run.stats["rows"]["frames"]  # some frames are not selected
    by_split: dict[str, pa.Table] = {}
    for source in set(truth.column("split").to_pylist()):
        by_split[HF_SPLIT[source]] = truth.filter(pc.equal(truth.column("split"), source))
    assert set(selected) == set(by_split)
    for name, part in selected.items():
        expected = by_split[name]
        assert _keys(part.to_dict()) == _keys(expected.to_pydict())
        assert all(part["track_selected"])
        got = {k: p for k, p in zip(zip(*(part[k] for k in KEY)), part["pose"])}
        for k, p in zip(zip(*(expected.column(k).to_pylist() for k in KEY)), expected.column("pose").to_pylist()):
            np.testing.assert_array_equal(got[k], p)
    # frames/ filtered on its own column gives the same rows (the columns are true)
    frames = datasets.load_dataset(run.output, "frames", cache_dir=str(tmp_path / "hf2"))
    for name, part in frames.items():
        assert _keys(part.filter(lambda r: r["track_selected"]).to_dict()) == _keys(by_split[name].to_pydict())
