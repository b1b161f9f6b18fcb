"""pipeline.dataset.reader: sharding over ranks x DataLoader workers, filters, sequence windows, crops."""

from __future__ import annotations

import glob
import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataset_builders import build_run, read_with_verdicts
from pipeline.perception.crops import decode_crop
from pipeline.dataset.reader import FrameFilter, FramesDataset, SequenceConfig, Unit, assign_units, read_frames

ALL = FrameFilter(selected_only=False)


@pytest.fixture(scope="module")
def run_all(tmp_path_factory):
    """Every fitted track's frames (--frames all), small row groups so tracks span groups."""
    out = tmp_path_factory.mktemp("frames_all")
    return build_run(str(out), num_clips=14, seed=3, row_group_size=16, clips_per_shard=3, frames_mode="all",
                     store_crops=True)


def _table(run):
    return read_with_verdicts(run.output, "frames").to_pandas()


def _keys(samples):
    return [(s["clip_id"], int(s["track_id"]), int(s["frame_index"])) for s in samples]


def _read_sharded(dataset_args: dict, world_size: int, num_workers: int, **loader) -> list[list]:
    """Samples of each rank, each read through a DataLoader with ``num_workers`` workers."""
    per_rank = []
    for rank in range(world_size):
        dataset = FramesDataset(**dataset_args, rank=rank, world_size=world_size)
        per_rank.append(list(DataLoader(dataset, batch_size=None, num_workers=num_workers, **loader)))
    return per_rank


@pytest.mark.slow
def test_two_ranks_two_workers_read_every_row_once(run_all):
    table = _table(run_all)
    expected = set(zip(table.clip_id, table.track_id, table.frame_index))
    assert len(expected) == len(table) > 300
    per_rank = _read_sharded({"path": run_all.output, "filter": ALL, "columns": ["clip_id", "track_id", "frame_index"]}, 2, 2)
    keys = [k for samples in per_rank for k in _keys(samples)]
    duplicated = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicated, f"rows read twice: {duplicated[:5]}"
    assert set(keys) == expected, f"missing rows: {sorted(expected - set(keys))[:5]}"
    # Both ranks do real work.
    assert all(len(samples) > 0.25 * len(table) for samples in per_rank)


def test_shuffled_epochs_stay_a_partition(run_all):
    table = _table(run_all)
    expected = set(zip(table.clip_id, table.track_id, table.frame_index))
    columns = ["clip_id", "track_id", "frame_index"]
    every_unit = Counter((u.path, u.row_group) for u in FramesDataset(run_all.output, filter=ALL).units)
    orders = []
    for epoch in (0, 1):
        dealt = []
        for rank in range(2):
            dataset = FramesDataset(run_all.output, filter=ALL, columns=columns, rank=rank, world_size=2, shuffle=True, seed=7)
            dataset.set_epoch(epoch)
            for worker in range(2):
                dealt += [(u.path, u.row_group) for u in dataset.units_for(rank * 2 + worker, 4)]
        assert Counter(dealt) == every_unit
        whole = FramesDataset(run_all.output, filter=ALL, columns=columns, shuffle=True, seed=7)
        whole.set_epoch(epoch)
        orders.append(_keys(whole))
        assert len(orders[-1]) == len(expected) and set(orders[-1]) == expected
    assert orders[0] != orders[1]


def test_torch_distributed_rank_is_used(run_all, monkeypatch):
    table = _table(run_all)
    keys = []
    for rank in range(2):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
        part = _keys(FramesDataset(run_all.output, filter=ALL, columns=["clip_id", "track_id", "frame_index"]))
        assert 0 < len(part) < len(table)
        keys += part
    assert sorted(keys) == sorted(zip(table.clip_id, table.track_id, table.frame_index))


def test_assign_units_balances_rows_and_covers_every_unit():
    units = [Unit("f", i, n, 10) for i, n in enumerate([100, 100, 100, 40, 100, 100, 60, 100, 5, 100])]
    shards = assign_units(units, 4)
    assert sorted(i for s in shards for i in s) == list(range(len(units)))
    loads = [sum(units[i].num_rows for i in s) for s in shards]
    assert max(loads) - min(loads) <= 100
    assert assign_units(units, 1) == [list(range(len(units)))]
    with pytest.raises(ValueError):
        assign_units(units, 0)


def test_filters_match_pyarrow(run_all):
    table = _table(run_all)
    assert not table.track_selected.all() and table.track_selected.any()

    def read(**kwargs):
        return sorted(_keys(FramesDataset(run_all.output, filter=FrameFilter(**kwargs), columns=["clip_id", "track_id", "frame_index"])))

    def expect(mask):
        sub = table[mask]
        return sorted(zip(sub.clip_id, sub.track_id, sub.frame_index))

    assert read() == expect(table.track_selected)
    assert read(selected_only=False, inliers_only=True) == expect(table.inlier)
    assert read(inliers_only=True, labels=("dancing", "running")) == expect(
        table.track_selected & table.inlier & table.label.isin(["dancing", "running"]))
    assert read(selected_only=False, splits=("val",), detected_only=True) == expect((table.split == "val") & table.has_detection)
    assert read(selected_only=False, max_e_norm=20.0) == expect(table.e_norm <= 20.0)
    with pytest.raises(ValueError, match="not in the dataset"):
        FramesDataset(run_all.output, filter=FrameFilter(labels=("dancnig",)))
    with pytest.raises(ValueError, match="tuple of strings"):
        FrameFilter(labels="dancing")


@pytest.mark.parametrize("column", ["pred_err_mm", "frame_score_mm"])
def test_max_predicted_error_keeps_determined_frames_under_the_bound(run_all, column):
    """FrameFilter.max_pred_err_mm / max_frame_score_mm: frames at most the bound, never an inf one."""
    table = _table(run_all)
    values = table[column]
    finite = np.isfinite(values)
    assert finite.any() and (~finite & ~table.has_detection).any()  # frames without a detection are undetermined
    assert np.isinf(values[~table.has_detection]).all()
    bound = float(np.median(values[finite]))
    option = "max_" + column
    got = sorted(_keys(FramesDataset(run_all.output, filter=FrameFilter(selected_only=False, **{option: bound}),
                                     columns=["clip_id", "track_id", "frame_index"])))
    sub = table[values <= bound]
    assert got == sorted(zip(sub.clip_id, sub.track_id, sub.frame_index)) and 0 < len(got) < finite.sum()
    with pytest.raises(ValueError, match=option):
        FrameFilter(**{option: 0.0})


@pytest.mark.parametrize("quantile", [0.25, 0.5, 1.0])
def test_e_norm_quantile_over_tracks(run_all, quantile):
    table = _table(run_all)
    tracks = table[table.track_selected].groupby(["clip_id", "track_id"]).e_norm.first()
    dataset = FramesDataset(run_all.output, filter=FrameFilter(e_norm_quantile=quantile), columns=["clip_id", "track_id", "e_norm"])
    assert dataset.e_norm_threshold == pytest.approx(np.quantile(tracks.values, quantile, method="inverted_cdf"))
    kept = {(s["clip_id"], int(s["track_id"])) for s in dataset}
    assert len(kept) == math.ceil(quantile * len(tracks))
    assert kept == set(tracks[tracks <= dataset.e_norm_threshold].index)


def _reference_windows(table, length, stride, inliers_only):
    """Windows of consecutive (inlier) frames computed directly from the whole table."""
    windows = []
    for (clip, track), group in table[table.track_selected].groupby(["clip_id", "track_id"]):
        group = group.sort_values("frame_index")
        frames = group.frame_index.to_numpy()
        usable = group.inlier.to_numpy() if inliers_only else np.ones(len(frames), bool)
        run = []
        for i, f in enumerate(list(frames) + [None]):
            if f is not None and usable[i] and run and f == run[-1] + 1:
                run.append(f)
                continue
            for s in range(0, len(run) - length + 1, stride):
                windows.append((clip, track, tuple(run[s:s + length])))
            run = [f] if f is not None and usable[i] else []
    return windows


@pytest.mark.slow
@pytest.mark.parametrize("inliers_only", [False, True])
def test_sequence_windows_sharded(run_all, inliers_only):
    table = _table(run_all)
    length, stride = 6, 3
    expected = _reference_windows(table, length, stride, inliers_only)
    assert len(expected) > 20
    args = {"path": run_all.output, "filter": FrameFilter(inliers_only=inliers_only),
            "sequence": SequenceConfig(length, stride)}
    per_rank = _read_sharded(args, 2, 2)
    got = [(w["clip_id"], int(w["track_id"][0]), tuple(w["frame_index"].tolist())) for s in per_rank for w in s]
    assert len(got) == len(set(got)), "a window was produced twice"
    assert sorted(got) == sorted(expected)
    window = per_rank[0][0]
    assert window["pose"].shape == (length, 72) and window["keypoints_2d"].shape == (length, 17, 3)
    assert window["crop"].shape[:2] == (length, 3) and window["crop"].dtype == torch.uint8
    assert isinstance(window["label"], str)
    if inliers_only:
        assert all(bool(w["inlier"].all()) for s in per_rank for w in s)


def test_crops_decoded_and_batched(run_all):
    dataset = FramesDataset(run_all.output, filter=ALL, columns=["clip_id", "track_id", "frame_index", "has_detection", "crop_jpeg", "keypoints_2d"])
    batch = next(iter(DataLoader(dataset, batch_size=16)))
    assert batch["keypoints_2d"].shape == (16, 17, 3) and batch["keypoints_2d"].dtype == torch.float32
    assert batch["crop"].shape == (16, 3, 32, 32) and batch["crop"].dtype == torch.uint8
    assert len(batch["clip_id"]) == 16
    samples = list(FramesDataset(run_all.output, filter=ALL, columns=["clip_id", "track_id", "frame_index", "has_detection", "crop_jpeg"]))
    assert torch.equal(torch.stack([s["crop_valid"] for s in samples]), torch.stack([s["has_detection"] for s in samples]))
    raw = read_frames(run_all.output, columns=["clip_id", "track_id", "frame_index", "crop_jpeg"]).to_pylist()
    stored = {(r["clip_id"], r["track_id"], r["frame_index"]): r["crop_jpeg"] for r in raw}
    for sample in samples[:40]:
        data = stored[_keys([sample])[0]]
        if data is None:
            assert not sample["crop"].any()
        else:
            assert torch.equal(sample["crop"], torch.from_numpy(decode_crop(data)).permute(2, 0, 1))
    undecoded = next(iter(FramesDataset(run_all.output, filter=ALL, columns=["crop_jpeg"], decode_crops=False)))
    assert isinstance(undecoded["crop_jpeg"], (bytes, type(None))) and "crop" not in undecoded


def test_bad_input_is_named(tmp_path, run_all):
    with pytest.raises(FileNotFoundError, match="no frames"):
        FramesDataset(str(tmp_path))
    tracks_file = sorted(glob.glob(f"{run_all.output}/tracks/*.parquet"))[:1]
    with pytest.raises(ValueError, match="not frames"):
        FramesDataset(tracks_file)
    with pytest.raises(ValueError, match="unknown frames columns"):
        FramesDataset(run_all.output, columns=["keypoints"])
    with pytest.raises(ValueError, match="rank"):
        FramesDataset(run_all.output, rank=2, world_size=2)
