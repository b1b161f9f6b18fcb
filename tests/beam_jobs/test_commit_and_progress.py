"""Commit as you go, a global selection across resumed runs, and progress a person can follow
(scripted stages, local runner)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset import schema
from pipeline.dataset.reader import FrameFilter, FramesDataset, read_clips, read_frames, read_tracks
from pipeline.dataset.manifests import completed_clips
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

ROOT = Path(__file__).resolve().parents[2]
BODY = schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "12" * 32)
NAMES = [f"c{i:02d}_{i:06d}_{i + 10:06d}" for i in range(12)] + ["crowded_000000_000010", "explode_000000_000010"]


def _corpus(root: Path) -> Path:
    folder = root / "train" / "walk"
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (folder / f"{name}.mp4").write_bytes(b"scripted")
    return root


class SlowBundleAdjust(ScriptedBundleAdjust):
    """Scripted fits that take ``seconds`` per batch (for heartbeats and progress)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def __call__(self, problems):
        time.sleep(self.seconds)
        return super().__call__(problems)


def _argv(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--input", str(corpus / "**" / "*.mp4"), "--output", str(out), "--keep_fraction", "0.3",
            "--min_inlier_fraction", "0", "--clips_per_shard", "2", "--ba_batch_frames", "60", *extra]


@pytest.mark.slow
def test_progress_lines_and_ba_heartbeat(tmp_path, caplog):
    corpus = _corpus(tmp_path / "corpus")
    caplog.set_level(logging.INFO)
    report = pseudo_gt.run(_argv(corpus, tmp_path / "out", "--progress_clips", "3", "--progress_seconds", "0.3",
                                 "--ba_heartbeat_seconds", "0.05"),
                           perception=ScriptedPerception(), bundle_adjust=SlowBundleAdjust(0.15), body_model=BODY)
    assert report.state == "DONE"
    lines = [r.getMessage() for r in caplog.records if r.name == "vid2mesh.progress"]
    progress = [line for line in lines if line.startswith("progress: ")]
    assert len(progress) >= 2, lines
    assert any(f"/{len(NAMES)} clips (" in line and "ETA" in line and "clips/s" in line for line in progress)
    assert progress[-1].startswith(f"progress: {len(NAMES)}/{len(NAMES)} clips (100%)")
    assert "1 failed" in progress[-1] and "1 rejected" in progress[-1]
    assert any(line.startswith("BA batch started: ") for line in lines)
    assert any(line.startswith("BA batch running: ") and "s elapsed" in line for line in lines)
    # One line per clip, rejected and failed clips with their reason.
    clip_lines = [r.getMessage() for r in caplog.records if r.name == "vid2mesh.clips" and r.getMessage().startswith("clip ")]
    assert len(clip_lines) == len(NAMES) == len({line.split(":")[0] for line in clip_lines})
    assert any("crowded_000000_000010: rejected (crowded" in line for line in clip_lines)
    assert any("explode_000000_000010: failed (failed" in line and "scripted failure" in line for line in clip_lines)
    summary = pseudo_gt.summary_lines(report)
    assert any("clips/s" in line for line in summary)


DRIVER = textwrap.dedent("""
    import sys, time
    from beam_jobs import pseudo_gt
    from pipeline.dataset import schema
    from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception

    class Slow(ScriptedBundleAdjust):
        def __call__(self, problems):
            time.sleep(0.4)
            return super().__call__(problems)

    pseudo_gt.run(sys.argv[1:], perception=ScriptedPerception(), bundle_adjust=Slow(),
                  body_model=schema.BodyModelInfo("standin", "neutral", "vid2mesh_standin_neutral.pkl", "12" * 32))
""")


def _selection_rows(out: Path) -> list[tuple]:
    table = pq.read_table(out / "selection" / "tracks.parquet")
    return sorted(zip(*(table.column(c).to_pylist() for c in ("clip_id", "track_id", "e_norm", "selected",
                                                                   "selection_reason", "e_norm_threshold"))))


@pytest.mark.slow
def test_killed_run_keeps_its_fits_and_resumed_selection_equals_a_clean_run(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "tests")))}
    process = subprocess.Popen([sys.executable, str(driver), *_argv(corpus, out)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((out / "_manifests").glob("*.json"))) < 2:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)  # the whole job, mid-run
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    done = completed_clips(str(out))
    assert 2 <= len(done) < len(NAMES), f"{len(done)} clips committed"
    assert not (out / "selection").exists()  # killed before its end

    # The committed fits are readable now: tracks/ and frames/ (nothing is selected yet).
    tracks = read_tracks(out)
    fitted = set(tracks.column("clip_id").to_pylist())
    assert fitted and fitted <= set(done)
    assert set(tracks.column("selection_reason").to_pylist()) <= {"eligible", "too_short", "not_moving", "too_few_inliers",
                                                                  "diverged", "failed"}
    rows = list(FramesDataset(out, FrameFilter(selected_only=False), columns=["clip_id", "pose"]))
    assert rows and {r["clip_id"] for r in rows} <= fitted and rows[0]["pose"].shape == (72,)

    # Resume, then compare the global selection with one clean run of the same clips.
    resumed = pseudo_gt.run(_argv(corpus, out), perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(),
                            body_model=BODY)
    assert resumed.clips_skipped == len(done) and resumed.clips_in == len(NAMES) - len(done)
    clean_out = tmp_path / "clean"
    pseudo_gt.run(_argv(corpus, clean_out), perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(),
                  body_model=BODY)
    assert _selection_rows(out) == _selection_rows(clean_out)
    ledger = lambda o: sorted(zip(*(read_clips(o).column(c).to_pylist() for c in ("clip_id", "outcome", "reason"))))  # noqa: E731
    assert ledger(out) == ledger(clean_out) and len(ledger(out)) == len(NAMES)
    kept = {r[0] for r in ledger(out) if r[1] == "kept"}
    selected = {r["clip_id"] for r in FramesDataset(out, columns=["clip_id"])}
    assert kept and selected == kept


def test_select_command_reselects_without_refit(tmp_path, capsys):
    from beam_jobs.cli import main

    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    pseudo_gt.run(_argv(corpus, out), perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
    fits = lambda: {p.name: repr(pq.read_table(p).drop_columns(["track_selected"]).to_pylist())  # noqa: E731
                    for p in (out / "frames").glob("shard-*.parquet")}
    before = fits()
    first = read_tracks(out)
    assert main(["select", str(out), "--keep_fraction", "1.0"]) == 0
    assert "selected" in capsys.readouterr().out
    after = read_tracks(out)
    eligible = [r for r in first.to_pylist() if r["selection_reason"] in ("selected", "below_best_fraction")]
    assert sum(after.column("selected").to_pylist()) == len(eligible) > sum(first.column("selected").to_pylist())
    assert fits() == before  # no refit: only the stored selection column changes
    frames = pq.ParquetDataset(str(out / "frames")).read(columns=["clip_id", "track_id", "track_selected"])
    assert frames.column("track_selected").to_pylist().count(True) == read_frames(out, filter=FrameFilter()).num_rows
    stats = __import__("json").loads((out / "stats.json").read_text())
    assert stats["tracks_selected"] == len(eligible)
