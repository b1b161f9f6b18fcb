"""``vid2mesh select`` works on any output with committed shards, interrupted or finished."""

from __future__ import annotations

import glob
import os
import shutil

import pyarrow.parquet as pq

from dataset_builders import build_run
from beam_jobs.cli import main


def test_select_on_an_interrupted_output(tmp_path, capsys):
    """Shards committed (write_shard) but the run killed before its end: no
    ``_common_metadata``, no selection, no card."""
    run = build_run(str(tmp_path / "out"), num_clips=6, num_rejected=2, seed=7)
    for path in glob.glob(f"{run.output}/*/_common_metadata"):
        os.remove(path)
    shutil.rmtree(f"{run.output}/selection")
    shutil.rmtree(f"{run.output}/frames_selected")
    os.remove(f"{run.output}/README.md")
    os.remove(f"{run.output}/stats.json")
    assert main(["select", run.output, "--keep_fraction", "1.0"]) == 0
    assert "selection over 8 clips" in capsys.readouterr().out
    selection = pq.read_table(f"{run.output}/selection/tracks.parquet")
    assert any(selection.column("selected").to_pylist())
    assert os.path.exists(f"{run.output}/README.md") and glob.glob(f"{run.output}/frames_selected/*.parquet")
    # the card names the run's body model, read from a committed shard's schema
    assert "vid2mesh_standin_neutral.pkl" in open(f"{run.output}/README.md").read()


def test_select_without_a_committed_shard_says_so(tmp_path, capsys):
    (tmp_path / "out" / "_manifests").mkdir(parents=True)
    assert main(["select", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "no committed shard" in err and "first shard writes it" not in err
