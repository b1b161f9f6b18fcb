"""One writer per output: a second run into a live output is refused at start, no row doubles."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from beam_jobs import pseudo_gt
from pipeline.dataset.lock import LOCK_FILE, OutputLock, OutputLocked
from test_runners import BODY, NAMES, _scripted_run
from helpers.scripted import ScriptedBundleAdjust, ScriptedPerception



def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _race(targets) -> list[object]:
    """Start the callables at once; each one's result or exception."""
    barrier = threading.Barrier(len(targets))
    results: list[object] = [None] * len(targets)

    def go(i, target):
        barrier.wait()
        try:
            results[i] = target()
        except Exception as exc:  # noqa: BLE001 (the test inspects it)
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_of_two_writers_started_at_once_one_is_refused(tmp_path):
    for attempt in range(20):
        out = tmp_path / f"out{attempt}"
        results = _race([lambda: OutputLock(str(out)).acquire()] * 2)
        taken = [r for r in results if isinstance(r, OutputLock)]
        refused = [r for r in results if isinstance(r, OutputLocked)]
        assert len(taken) == 1 and len(refused) == 1, results
        message = str(refused[0])
        assert str(out / LOCK_FILE) in message and "--force_unlock" in message and f"pid {taken[0].holder['pid']}" in message
        taken[0].release()
        assert not (out / LOCK_FILE).exists()


def test_a_stale_lock_is_taken_over_and_a_live_one_is_refused(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_FILE
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started": "2000-01-01T00:00:00Z"}))
    with caplog.at_level(logging.WARNING), OutputLock(str(out)) as held:
        assert "stale lock" in caplog.text and json.loads(lock.read_text())["token"] == held.holder["token"]
    assert not lock.exists()
    # a lock of another host cannot be checked: refused until --force_unlock
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "2000-01-01T00:00:00Z"}))
    with pytest.raises(OutputLocked, match="host elsewhere"):
        OutputLock(str(out)).acquire()
    with OutputLock(str(out), force=True):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()
    lock.write_text("{not json")
    with pytest.raises(OutputLocked, match="unreadable lock"):
        OutputLock(str(out)).acquire()


@pytest.mark.slow
def test_two_runs_into_one_output_one_is_refused_no_row_doubled(scripted_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--input", str(scripted_corpus), "--output", str(out), "--clips_per_shard", "1"]
    results = _race([lambda: _scripted_run(argv), lambda: _scripted_run(argv + ["--clips_per_shard", "2"])])
    refused = [r for r in results if isinstance(r, OutputLocked)]
    reports = [r for r in results if isinstance(r, pseudo_gt.JobReport)]
    assert len(refused) == 1 and len(reports) == 1, results
    assert not (out / LOCK_FILE).exists()  # released at the end
    frames = pq.ParquetDataset(str(out / "frames")).read(columns=["clip_id", "track_id", "frame_index"]).to_pylist()
    keys = [tuple(r.values()) for r in frames]
    assert keys and len(keys) == len(set(keys))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["clips"] == len(NAMES) and stats["rows"]["frames"] == len(keys)
    # main() reports the refusal in one line and exits 2
    (out / LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "2000-01-01T00:00:00Z"}))
    run = pseudo_gt.run
    try:
        pseudo_gt.run = lambda a: run(a, perception=ScriptedPerception(), bundle_adjust=ScriptedBundleAdjust(), body_model=BODY)
        assert pseudo_gt.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--force_unlock" in err[0] and LOCK_FILE in err[0]
        assert pseudo_gt.main(argv + ["--force_unlock"]) == 0
    finally:
        pseudo_gt.run = run
    assert not (out / LOCK_FILE).exists()
