"""Taking failed clips out of committed shards (the retry of issue 11.2), crash-safely."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from pipeline.dataset import schema
from pipeline.dataset.rows import failed_outcome
from pipeline.dataset.fs import ArrowStorage
from pipeline.dataset.manifests import completed_clips, failed_clips, read_manifests
from pipeline.dataset.writer import (
    WriterConfig,
    remove_orphan_shards,
    retire_clips,
    shard_name,
    write_shard,
)
from pipeline.records import ClipRef

from test_writer import RUN, _fitted, _rejected


def _failed(clip_id):
    return failed_outcome(ClipRef(clip_id, f"/v/{clip_id}.mp4", "walk"), "perceive", "RuntimeError: CUDA lost")


def _shard(tmp_path):
    config = WriterConfig(str(tmp_path))
    write_shard([_fitted("a_000000_000010"), _failed("f_000000_000010"), _rejected("r_000000_000010")], config, RUN)
    write_shard([_failed("g_000000_000010")], config, RUN)
    return config


def _clip_ids(tmp_path, dataset):
    return sorted(ds.dataset(str(tmp_path / dataset), format="parquet").to_table().column("clip_id").to_pylist())


def test_retire_rewrites_shards_without_the_clips(tmp_path):
    config = _shard(tmp_path)
    assert failed_clips(str(tmp_path)) == ["f_000000_000010", "g_000000_000010"]
    assert retire_clips(str(tmp_path), ["f_000000_000010", "g_000000_000010", "unknown"], config) == 2
    manifests = read_manifests(str(tmp_path))
    assert [m["shard"] for m in manifests] == [shard_name(["a_000000_000010", "r_000000_000010"])]
    assert sorted(completed_clips(str(tmp_path))) == ["a_000000_000010", "r_000000_000010"]
    assert _clip_ids(tmp_path, "rejected") == ["r_000000_000010"]
    assert set(_clip_ids(tmp_path, "tracks")) == {"a_000000_000010"}
    assert manifests[0]["rows"]["rejected"] == 1 and manifests[0]["rows"]["frames"] > 0
    for dataset in schema.DATASETS:  # only the new shard's files are left
        assert {p.name.split(".")[0] for p in (tmp_path / dataset).glob("shard-*")} <= {manifests[0]["shard"]}
    table = ds.dataset(str(tmp_path / "frames"), format="parquet").to_table()
    assert schema.read_metadata(table.schema)["vid2mesh.dataset"] == "frames"  # metadata kept


@pytest.mark.parametrize("crash_at", ["new_manifest", "old_files"])
def test_a_crash_while_retiring_never_commits_a_clip_twice(tmp_path, crash_at):
    config = _shard(tmp_path)

    class Crashing(ArrowStorage):
        def write_bytes(self, path, data):
            if crash_at == "new_manifest" and "_manifests" in path:
                raise OSError("killed")
            super().write_bytes(path, data)

        def delete(self, path):
            if crash_at == "old_files" and path.endswith(".parquet") and "_manifests" not in path:
                raise OSError("killed")
            super().delete(path)

    with pytest.raises(OSError):
        retire_clips(str(tmp_path), ["f_000000_000010"], config, Crashing())
    remove_orphan_shards(str(tmp_path))
    ids = [c for m in read_manifests(str(tmp_path)) for c in m["clips"]]
    assert len(ids) == len(set(ids)) and "f_000000_000010" not in ids
    committed = {m["shard"] for m in read_manifests(str(tmp_path))}
    for dataset in schema.DATASETS:
        assert {p.name.split(".")[0] for p in (tmp_path / dataset).glob("shard-*")} <= committed
    rows = _clip_ids(tmp_path, "rejected") if any((tmp_path / "rejected").glob("shard-*")) else []
    assert len(rows) == len(set(rows))
