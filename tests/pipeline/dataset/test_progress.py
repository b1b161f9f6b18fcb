"""Progress lines, the BA heartbeat and the rate wording (no Beam, no pipeline)."""

from __future__ import annotations

import json
import logging
import time

from pipeline.dataset.progress import Counts, ManifestPoller, ProgressMonitor, ba_batch, format_rate, running_batches
from pipeline.dataset.fs import ArrowStorage


def test_rate_falls_back_to_frames_and_tracks_per_second():
    assert format_rate(30, 10.0) == "3.00 clips/s"
    slow = format_rate(1, 1000.0, frames=2500, tracks=3)
    assert slow == "0.001 clips/s (2.5 frames/s, 0.003 tracks/s)"


def test_heartbeat_lines_and_running_batch(caplog):
    caplog.set_level(logging.INFO, logger="vid2mesh.progress")
    with ba_batch(12, 3400, heartbeat_s=0.05):
        assert running_batches()[0]["tracks"] == 12
        time.sleep(0.18)
    assert running_batches() == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "BA batch started: 12 tracks, 3400 frames"
    assert sum(line.startswith("BA batch running: 12 tracks, 3400 frames, ") for line in lines) >= 2


def test_monitor_lines_from_committed_manifests(tmp_path):
    storage = ArrowStorage()
    (tmp_path / "_manifests").mkdir()
    (tmp_path / "_manifests" / "shard-old.json").write_text(json.dumps({"clips": {"x": {"outcome": "pending"}}}))
    poller = ManifestPoller.starting_now(str(tmp_path), storage)  # an earlier run's shard is not this run's progress
    emitted = []
    with ProgressMonitor(10, poller, interval_s=60, every_clips=2, poll_s=0.02, bar=False, emit=emitted.append):
        for i, outcome in enumerate(["pending", "rejected", "failed", "pending"]):
            (tmp_path / "_manifests" / f"shard-{i}.json").write_text(json.dumps(
                {"clips": {f"c{i}": {"outcome": outcome, "tracks": 2, "frames": 50}}}))
            time.sleep(0.1)
    assert emitted[-1].startswith("progress: 4/10 clips (40%): 2 with eligible tracks, 1 rejected, 1 failed; ")
    assert "ETA " in emitted[-1] and "clips/s" in emitted[-1]
    assert any(line.startswith("progress: 2/10 clips") for line in emitted)
    monitor = ProgressMonitor(5, lambda: Counts(done=1), bar=False)
    with ba_batch(3, 90, heartbeat_s=60):
        assert "; BA batch: 3 tracks, 90 frames, " in monitor.line(Counts(done=1))


def test_bar_on_a_terminal(capsys):
    monitor = ProgressMonitor(4, lambda: Counts(done=2, pending=1, rejected=1), interval_s=0.01, poll_s=0.01, bar=True)
    with monitor:
        time.sleep(0.1)
    err = capsys.readouterr().err
    assert "2/4" in err and "clip" in err  # tqdm's bar, not log lines
    assert monitor.lines and monitor.lines[-1].startswith("progress: 2/4 clips (50%)")
