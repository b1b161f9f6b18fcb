"""Wall and process-CPU seconds per named stage, summed over every time the stage runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Accumulates wall-clock seconds (``seconds``) and process CPU seconds (``cpu_seconds``,
    every thread of the process: what a runtime that uses several cores costs) per stage.

    ::

        timer = StageTimer("decode", "detect")
        with timer.stage("decode"):
            batch = next(batches)
        timer.seconds  # {"decode": 0.12, "detect": 0.0}

    Args:
        *names: stages reported even when they never run (at 0.0 seconds), in this order.
    """

    def __init__(self, *names: str):
        self.seconds: dict[str, float] = dict.fromkeys(names, 0.0)
        self.cpu_seconds: dict[str, float] = dict.fromkeys(names, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the seconds spent in the ``with`` block to ``name`` (also when it raises)."""
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu_start

    def rounded(self, digits: int = 4) -> dict[str, float]:
        """The seconds per stage, rounded to ``digits`` decimals."""
        return {name: round(value, digits) for name, value in self.seconds.items()}
