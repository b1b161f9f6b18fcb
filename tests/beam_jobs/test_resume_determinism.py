"""A resumed run writes the same rows as a clean one.

A clean run, then the same output with one committed shard's manifest removed and the job
rerun: the rerun fits that shard's clips in other bundle-adjustment batches than the clean
run did, and must still write every row bit for bit the same.
"""

from __future__ import annotations

import csv
import math
import shutil

import pyarrow.dataset as ds
import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset.manifests import MANIFESTS


def _comparable(value):
    """Row values with NaN as a marker (NaN != NaN would fail equal rows)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    return value


def _rows(out, dataset: str) -> list[dict]:
    table = ds.dataset(out / dataset, format="parquet").to_table()
    keys = [k for k in ("clip_id", "track_id", "frame_index") if k in table.column_names]
    return [_comparable(row) for row in sorted(table.to_pylist(), key=lambda row: tuple(row[k] for k in keys))]


@pytest.mark.slow
def test_resume_with_a_shard_removed_equals_the_clean_run(tmp_path):
    from pipeline.synth.corpus import SynthConfig, generate_corpus

    root = tmp_path / "corpus"
    generate_corpus(root, 2, 7, SynthConfig.quick())
    rows = []
    for split_csv in sorted(root.glob("*.csv")):
        with open(split_csv) as handle:
            rows += list(csv.DictReader(handle))
    with open(root / "all.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def argv(out):
        return ["--input", str(root / "all.csv"), "--video_root", str(root), "--output", str(out),
                "--keypoints", "precomputed", "--model_cache", str(tmp_path / "cache"),
                "--selection", "threshold", "--selection_threshold", "1e9", "--min_inlier_fraction", "0",
                "--ba_config", '{"max_iter": 15}', "--clips_per_shard", "1",
                "--perception_config", '{"decode": {"target_fps": 10}}']

    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    report = pseudo_gt.run(argv(clean))
    assert report.state == "DONE" and report.counters.get("tracks_fitted", 0) >= 1
    shutil.copytree(clean, resumed)
    manifests = sorted((resumed / MANIFESTS).glob("*.json"))
    assert len(manifests) >= 2
    manifests[0].unlink()
    again = pseudo_gt.run(argv(resumed))
    assert again.state == "DONE" and 0 < again.clips_in < report.clips_in
    for dataset in ("tracks", "frames", "rejected"):
        assert _rows(resumed, dataset) == _rows(clean, dataset), dataset
