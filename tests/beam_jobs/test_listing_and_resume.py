"""The launcher with scripted stages: bad glob entries reach rejected/ and the summary,
a resume after a kill between the last manifest and the card writes the card
and the _common_metadata files, and a rerun with other settings says which clips keep
their old ones."""

from __future__ import annotations

import json
import os

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from helpers.scripted import SCRIPTED_DETECTOR, ScriptedBundleAdjust, ScriptedPerception

BODY = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "12" * 32)


def _run(argv):
    return pseudo_gt.run(argv, perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)


def _two_clip_run(tmp_path):
    """(output folder, job flags) of a run over two scripted clips."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a1_000001_000011", "a2_000002_000012"):
        (corpus / f"{name}.mp4").write_bytes(b"scripted")
    out = tmp_path / "out"
    return out, ["--input", str(corpus), "--output", str(out), "--selection_threshold", "30", "--min_inlier_fraction", "0"]


def test_bad_glob_entries_are_rejected_rows_and_counted(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "walk").mkdir(parents=True)
    (corpus / "walk" / "a1_000001_000011.mp4").write_bytes(b"scripted")
    os.symlink(corpus / "nowhere.mp4", corpus / "walk" / "dangling.mp4")
    (corpus / "walk" / "folder.mp4").mkdir()
    os.mkfifo(corpus / "walk" / "pipe.mp4")
    out = tmp_path / "out"
    report = _run(["--input", str(corpus / "**" / "*.mp4"), "--output", str(out), "--selection_threshold", "30",
                   "--min_inlier_fraction", "0"])
    assert report.clips_listed == 4
    c = report.counters
    assert c["clips_in"] == c.get("clips_kept", 0) + c.get("clips_rejected", 0) + c.get("clips_failed", 0) == 4
    rejected = ds.dataset(out / "rejected", format="parquet").to_table().to_pylist()
    reasons = {os.path.basename(r["source_uri"]): r["reason"] for r in rejected}
    assert reasons["dangling.mp4"] == "missing_file"
    assert reasons["folder.mp4"] == "not_a_file" and reasons["pipe.mp4"] == "not_a_file"
    assert report.stats["rejected_by_reason"]["not_a_file"] == 2
    summary = "\n".join(pseudo_gt.summary_lines(report))
    assert "4 clips in" in summary and "'not_a_file': 2" in summary


def test_resume_after_the_last_manifest_writes_the_card_and_common_metadata(tmp_path):
    out, argv = _two_clip_run(tmp_path)
    first = _run(argv)
    assert first.state == "DONE"
    finished = {p: p.read_bytes() for p in out.rglob("_common_metadata")}
    assert len(finished) == len(schema.DATASETS)
    stats_before = json.loads((out / "stats.json").read_text())
    # A kill after the last manifest but before the card: none of them are there.
    for path in [*finished, out / "README.md", out / "stats.json"]:
        path.unlink()
    again = _run(argv)
    assert again.state == "SKIPPED" and again.clips_skipped == 2
    for path in finished:
        assert path.exists(), path
        pq.read_schema(path)  # a readable schema-only Parquet file
    assert (out / "README.md").exists()
    assert json.loads((out / "stats.json").read_text())["clips"] == stats_before["clips"] == 2


def test_a_rerun_with_other_settings_names_the_clips_that_keep_theirs_and_overwrite(tmp_path, caplog):
    out, argv = _two_clip_run(tmp_path)
    first = _run(argv + ["--keypoints", "detect"])
    assert first.keypoint_sources == {SCRIPTED_DETECTOR: 2}
    assert f"keypoints by source (this run's clips): {{'{SCRIPTED_DETECTOR}': 2}}" in pseudo_gt.summary_lines(first)
    tracks = ds.dataset(out / "tracks", format="parquet").to_table()
    assert set(tracks.column("keypoint_source").to_pylist()) == {SCRIPTED_DETECTOR}
    written = schema.read_metadata(tracks.schema)["vid2mesh.settings_hash"]
    same = _run(argv + ["--keypoints", "detect"])
    assert same.state == "SKIPPED" and same.notes == ()
    changed = _run(argv + ["--keypoints", "auto"])  # other settings, same output
    assert changed.state == "SKIPPED" and changed.clips_skipped == 2
    (note,) = changed.notes
    assert note in pseudo_gt.summary_lines(changed) and note in caplog.text
    assert "2 of the 2 clips already written" in note and "--overwrite" in note and written not in note
    redone = _run(argv + ["--keypoints", "auto", "--overwrite"])
    assert redone.clips_in == 2 and redone.notes == ()
    tracks = ds.dataset(out / "tracks", format="parquet").to_table()
    assert schema.read_metadata(tracks.schema)["vid2mesh.settings_hash"] != written
