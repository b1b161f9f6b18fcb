"""StageTimer: seconds per named stage, summed over runs, also when a stage raises."""

from __future__ import annotations

import pytest

from pipeline.perception.stage_timer import StageTimer


def test_stages_accumulate_in_declared_order(monkeypatch):
    clock = iter([0.0, 1.5, 10.0, 10.25, 20.0, 20.125])
    cpu = iter([0.0, 3.0, 5.0, 5.5, 6.0, 6.25])
    monkeypatch.setattr("pipeline.perception.stage_timer.time.perf_counter", lambda: next(clock))
    monkeypatch.setattr("pipeline.perception.stage_timer.time.process_time", lambda: next(cpu))
    timer = StageTimer("decode", "detect", "track")
    with timer.stage("decode"):
        pass
    with timer.stage("detect"):
        pass
    with pytest.raises(RuntimeError), timer.stage("decode"):
        raise RuntimeError("decoder")
    assert timer.seconds == {"decode": 1.625, "detect": 0.25, "track": 0.0}
    assert timer.cpu_seconds == {"decode": 3.25, "detect": 0.5, "track": 0.0}
    assert list(timer.rounded(1)) == ["decode", "detect", "track"] and timer.rounded(1)["decode"] == 1.6
